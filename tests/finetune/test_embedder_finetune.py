"""Embedder fine-tuning: FlagEmbedding's loss and optimizer step on the same batch, data sampling, collation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from _finetune_support import assert_same_parameters, one_step, training_rows, without_dropout

from bge_core.errors import ConfigError, InvalidInputError
from bge_rag.finetune.data import group_rng, read_train_data, sample_group
from bge_rag.finetune.embedder import EmbedderCollator
from bge_rag.finetune.losses import FlagEmbedderLoss
from bge_rag.finetune.training import build_embedder_model

GROUP = 4


@pytest.fixture(scope="module")
def folder(models, tmp_path_factory) -> Path:
    return without_dropout(models.minilm, tmp_path_factory.mktemp("ft") / "minilm-nodrop")


def _rows(paragraphs: list[str]) -> list[dict]:
    rows = training_rows(paragraphs, n=6, negatives=GROUP - 1)
    for i, row in enumerate(rows):
        row.update(row=i, prompt=None, query_prompt=None, passage_prompt=None)
    return rows


def _pair(flag, folder: Path, *, pooling: str, normalize: bool, **options):
    from FlagEmbedding.finetune.embedder.encoder_only.base.modeling import BiEncoderOnlyEmbedderModel
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    ours = build_embedder_model(str(folder), pooling=pooling, normalize=normalize)
    theirs = BiEncoderOnlyEmbedderModel(
        AutoModel.from_pretrained(folder),
        tokenizer=AutoTokenizer.from_pretrained(folder),
        sentence_pooling_method=pooling,
        normalize_embeddings=normalize,
        temperature=options.get("temperature", 0.02),
        kd_loss_type=options.get("kd_loss_type", "kl_div"),
        use_mrl=bool(options.get("mrl_dims")),
        mrl_dims=list(options.get("mrl_dims", [])),
        sub_batch_size=options.get("sub_batch_size") or -1,
    )
    loss = FlagEmbedderLoss(ours, group_size=GROUP, normalize_embeddings=normalize, **options)
    ours.train()
    theirs.train()
    return ours, theirs, loss


def _batch(collator: EmbedderCollator, rows: list[dict], teacher: bool) -> dict:
    if not teacher:
        rows = [{**r, "pos_scores": None, "neg_scores": None} for r in rows]
    return collator(rows)


def _split(batch: dict) -> tuple[dict, dict]:
    q = {k[len("query_") :]: v for k, v in batch.items() if k.startswith("query_")}
    p = {k[len("passage_") :]: v for k, v in batch.items() if k.startswith("passage_")}
    return q, p


CASES = {
    "in-batch": {"pooling": "cls", "normalize": True, "options": {}, "teacher": False},
    "kl_div": {"pooling": "cls", "normalize": True, "options": {"kd_loss_type": "kl_div"}, "teacher": True},
    "m3_kd_loss": {"pooling": "cls", "normalize": True, "options": {"kd_loss_type": "m3_kd_loss"}, "teacher": True},
    "mrl+mean": {"pooling": "mean", "normalize": True, "options": {"mrl_dims": [64, 128, 384]}, "teacher": True},
    "unnormalized": {"pooling": "mean", "normalize": False, "options": {"temperature": 1.0}, "teacher": False},
    "sub-batch": {"pooling": "cls", "normalize": True, "options": {"sub_batch_size": 8}, "teacher": False},
}


@pytest.mark.parity
@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_one_step_equal_flagembedding(flag, folder, paragraphs, case):
    """The same batch: FlagEmbedding's BiEncoderOnlyEmbedderModel loss to 1e-5, one SGD step to 1e-6 (see one_step)."""
    spec = CASES[case]
    ours, theirs, loss = _pair(flag, folder, pooling=spec["pooling"], normalize=spec["normalize"], **spec["options"])
    collator = EmbedderCollator(ours.tokenizer, GROUP, query_max_len=16, passage_max_len=48)
    batch = _batch(collator, _rows(paragraphs), spec["teacher"])
    q, p = _split(batch)
    labels = batch.get("label")

    our_loss = loss([q, p], labels)
    their_loss = theirs(q, p, teacher_scores=labels.flatten().tolist() if labels is not None else None).loss
    assert abs(our_loss.item() - their_loss.item()) <= 1e-5, (our_loss.item(), their_loss.item())
    assert our_loss.item() > 0

    our_params = dict(ours[0].auto_model.named_parameters())
    their_params = dict(theirs.model.named_parameters())
    before = {k: v.detach().clone() for k, v in our_params.items()}
    our_loss.backward()
    their_loss.backward()
    one_step(our_params, their_params)
    assert_same_parameters(
        {k: v.detach() for k, v in our_params.items()}, {k: v.detach() for k, v in their_params.items()}, 1e-6
    )
    moved = max((our_params[k].detach() - before[k]).abs().max().item() for k in before)
    assert moved > 1e-4  # the step did change the weights


@pytest.mark.parity
def test_collation_equals_flagembedding(flag, models, paragraphs):
    """Queries and passages tokenized, truncated and padded as FlagEmbedding's AbsEmbedderCollator does."""
    from FlagEmbedding.abc.finetune.embedder.AbsDataset import AbsEmbedderCollator
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models.minilm)
    ours = EmbedderCollator(tokenizer, GROUP, query_max_len=8, passage_max_len=40, pad_to_multiple_of=8)
    theirs = AbsEmbedderCollator(
        tokenizer=tokenizer,
        query_max_len=8,
        passage_max_len=40,
        pad_to_multiple_of=8,
        padding=True,
        return_tensors="pt",
    )
    groups = [ours.group(row) for row in _rows(paragraphs)]
    batch = ours.collate(groups)
    expected = theirs([(g.query, g.passages, g.teacher_scores) for g in groups])
    q, p = _split(batch)
    for key in expected["queries"]:
        assert torch.equal(q[key], expected["queries"][key])
        assert torch.equal(p[key], expected["passages"][key])
    assert q["input_ids"].shape[1] == 8 and p["input_ids"].shape[1] == 40  # truncated, padded to a multiple of 8
    assert torch.equal(batch["label"].flatten(), torch.tensor(expected["teacher_scores"], dtype=torch.float32))


def test_group_sampling_follows_flagembedding(paragraphs):
    """One positive, group-1 negatives: without replacement when enough, from the repeated list when not."""
    row = {"row": 0, "query": "q", "pos": ["p0", "p1"], "neg": ["n0", "n1"], "pos_scores": [1.0, 2.0],
           "neg_scores": [3.0, 4.0], "prompt": "Use: "}  # fmt: skip
    group = sample_group(row, train_group_size=6, rng=random.Random(1), query_instruction="I: ")
    assert group.query == "Use: q"  # the line's own prompt wins over the instruction
    assert group.passages[0] in ("p0", "p1") and len(group.passages) == 6
    negatives = group.passages[1:]
    assert sorted(set(negatives)) == ["n0", "n1"]
    assert max(negatives.count(n) for n in ("n0", "n1")) <= 3  # ceil(5 / 2) copies at most of each
    scores = {"p0": 1.0, "p1": 2.0, "n0": 3.0, "n1": 4.0}
    assert group.teacher_scores == [scores[p] for p in group.passages]
    plain = sample_group(row, train_group_size=2, rng=random.Random(1))
    assert plain.query == "q"  # no instruction unless one is given (FlagEmbedding's rule)
    # Reproducible, and different between epochs.
    draws = {tuple(sample_group(row, train_group_size=3, rng=group_rng(42, 0, 0)).passages) for _ in range(3)}
    assert len(draws) == 1
    epochs = {tuple(sample_group(row, train_group_size=3, rng=group_rng(42, e, 0)).passages) for e in range(8)}
    assert len(epochs) > 1


def test_train_data_errors_name_file_and_line(tmp_path):
    good = '{"query": "q", "pos": ["p"], "neg": ["n"]}\n'
    cases = {
        '{"query": "q", "pos": [], "neg": ["n"]}': "'pos' is empty",
        '{"query": "q", "pos": ["p"], "neg": []}': "'neg' is empty",
        '{"query": "q", "pos": ["p"]}': "no 'neg' field",
        '{"query": 3, "pos": ["p"], "neg": ["n"]}': "'query' that is not a string",
        '{"query": "q", "pos": ["p"], "neg": ["n"], "prompt": 1}': "'prompt' must be a string",
    }
    for i, (line, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.jsonl"
        path.write_text(good + "\n" + line + "\n")
        with pytest.raises(InvalidInputError, match=rf"bad{i}.jsonl:3: .*{message}"):
            read_train_data([path], train_group_size=2)
    kd = tmp_path / "kd.jsonl"
    kd.write_text('{"query": "q", "pos": ["p"], "neg": ["n", "m"], "pos_scores": [1], "neg_scores": [2]}\n')
    with pytest.raises(InvalidInputError, match="kd.jsonl:1: 'neg_scores' has 1 scores for 2 texts"):
        read_train_data([kd], train_group_size=2, knowledge_distillation=True)
    kd.write_text(good)
    with pytest.raises(InvalidInputError, match="needs 'pos_scores'"):
        read_train_data([kd], train_group_size=2, knowledge_distillation=True)
    with pytest.raises(ConfigError, match="does not exist"):
        read_train_data([tmp_path / "missing.jsonl"], train_group_size=2)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a .json / .jsonl file"):
        read_train_data([tmp_path / "notes.txt"], train_group_size=2)
    # One negative is enough for any group size (sampled with replacement), and a folder is read in name order.
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.jsonl").write_text(good.replace('"q"', '"second"'))
    (folder / "a.jsonl").write_text(good)
    rows = read_train_data([folder], train_group_size=8)
    assert [r["query"] for r in rows] == ["q", "second"] and [r["row"] for r in rows] == [0, 1]

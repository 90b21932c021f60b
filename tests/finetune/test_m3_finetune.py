"""BGE-M3 fine-tuning (bge_rag.finetune.m3) equals FlagEmbedding's EncoderOnlyEmbedderM3Model.

Both sides load the same folder (the fixture models with dropout off: FlagEmbedding computes its
loss only in training mode) and get the same tokenized batch; the loss values agree to 1e-5 and
one AdamW step leaves the same backbone and heads to 1e-6, on the BERT (MiniLM) and the XLM-R
fixture (their tokenizers' special ids differ, and BERT has no eos token).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bge_core import Embedder
from bge_core.errors import ConfigError
from bge_rag.finetune.m3 import M3Heads, M3HeadsCallback, M3UnifiedLoss, sync_head_gradients
from sentence_transformers_bge.export import build_sentence_transformer

pytestmark = pytest.mark.parity

FIXTURES = ["m3", "xlmr_m3"]
BATCH, GROUP = 3, 3
MAX_LENGTH = 40
ATOL_LOSS = 1e-5
ATOL_WEIGHTS = 1e-6


@pytest.fixture(scope="module")
def no_dropout(models, tmp_path_factory):
    """The M3 fixture folders with dropout 0 (FlagEmbedding's loss exists only in training mode)."""
    root = tmp_path_factory.mktemp("m3-no-dropout")
    folders = {}
    for name in FIXTURES:
        folder = root / name
        shutil.copytree(getattr(models, name), folder)
        config = json.loads((folder / "config.json").read_text())
        config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        (folder / "config.json").write_text(json.dumps(config))
        folders[name] = folder
    return folders


@pytest.fixture(scope="module")
def m3_module(flag):
    return importlib.import_module("FlagEmbedding.finetune.embedder.encoder_only.m3")


@pytest.fixture(scope="module")
def texts(paragraphs):
    queries = [p[:60] for p in paragraphs[:BATCH]]
    queries[1] = "the the cat cat sat"  # repeated tokens: the sparse max per token id
    passages = [paragraphs[10 + i][: 40 + 37 * i] for i in range(BATCH * GROUP)]  # lengths differ: padding
    return queries, passages


def _tokenize(tokenizer, texts):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    return dict(batch)


def _flag_tokenizer(tokenizer):
    """FlagEmbedding's M3 training zeroes ``[cls, eos, pad, unk]`` ids and fails on a ``None``
    (BERT has no eos token: "Could not infer dtype of NoneType"); the pad id stands in for it,
    giving the same set of ids (ours and BGEM3FlagModel's inference rule)."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    return types.SimpleNamespace(
        cls_token_id=tokenizer.cls_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        unk_token_id=tokenizer.unk_token_id,
        padding_side=tokenizer.padding_side,
    )


def _pair(m3_module, folder, **options):
    """FlagEmbedding's M3 model and ours, from the same folder, with the same options."""
    flag_options = {k: v for k, v in options.items() if k != "group_size"}
    st = build_sentence_transformer(folder, device="cpu")
    base = m3_module.EncoderOnlyEmbedderM3Runner.get_model(str(folder))
    theirs = m3_module.EncoderOnlyEmbedderM3Model(
        base,
        tokenizer=_flag_tokenizer(st.tokenizer),
        temperature=0.02,
        normalize_embeddings=True,
        sentence_pooling_method="cls",
        **flag_options,
    ).train()
    st.train()
    ours = M3UnifiedLoss(st, M3Heads.from_pretrained(folder), temperature=0.02, **options)
    return theirs, ours


def _batch(st, texts, teacher):
    queries, passages = texts
    q = _tokenize(st.tokenizer, queries)
    p = _tokenize(st.tokenizer, passages)
    labels = None
    if teacher:
        labels = torch.linspace(-2.0, 3.0, BATCH * GROUP).view(BATCH, GROUP).flip(0) * torch.tensor([1.0, 0.5, 2.0])
    return q, p, labels


def _flag_loss(theirs, q, p, labels):
    teacher = None if labels is None else labels.flatten().tolist()
    return theirs(queries=q, passages=p, teacher_scores=teacher).loss


CASES = {
    "dense": ({"unified_finetuning": False}, False),
    "dense_m3_kd_loss": ({"unified_finetuning": False, "kd_loss_type": "m3_kd_loss"}, True),
    "unified": ({"unified_finetuning": True}, False),
    "unified_self_distill": ({"unified_finetuning": True, "use_self_distill": True}, False),
    "unified_kl_div": ({"unified_finetuning": True, "use_self_distill": True, "kd_loss_type": "kl_div"}, True),
    "unified_m3_kd_loss": ({"unified_finetuning": True, "kd_loss_type": "m3_kd_loss"}, True),
    "unified_sub_batches": ({"unified_finetuning": True, "use_self_distill": True, "sub_batch_size": 2}, False),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fixture", FIXTURES)
def test_loss_equals_flagembedding(m3_module, no_dropout, texts, fixture, case):
    options, teacher = CASES[case]
    theirs, ours = _pair(m3_module, no_dropout[fixture], group_size=GROUP, **options)
    q, p, labels = _batch(ours.model, texts, teacher)
    expected = _flag_loss(theirs, q, p, labels)
    got = ours([q, p], labels)
    assert got.item() == pytest.approx(expected.item(), abs=ATOL_LOSS, rel=0)
    assert ours.step == theirs.step == 1


def test_flagembedding_unified_needs_an_eos_token(m3_module, no_dropout, texts):
    """The FlagEmbedding quirk _flag_tokenizer works around: BERT's tokenizer has no eos token."""
    folder = no_dropout["m3"]
    st = build_sentence_transformer(folder, device="cpu")
    assert st.tokenizer.eos_token_id is None
    base = m3_module.EncoderOnlyEmbedderM3Runner.get_model(str(folder))
    theirs = m3_module.EncoderOnlyEmbedderM3Model(base, tokenizer=st.tokenizer, unified_finetuning=True).train()
    q, p, labels = _batch(st, texts, teacher=False)
    with pytest.raises((RuntimeError, TypeError), match="NoneType"):
        _flag_loss(theirs, q, p, labels)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_self_distill_starts_after_start_step(m3_module, no_dropout, texts, fixture):
    options = {"unified_finetuning": True, "use_self_distill": True, "self_distill_start_step": 0}
    theirs, ours = _pair(m3_module, no_dropout[fixture], group_size=GROUP, **options)
    q, p, labels = _batch(ours.model, texts, teacher=False)
    first, second = ours([q, p], labels), ours([q, p], labels)  # steps 0 and 1: only the second distills
    assert first.item() == pytest.approx(_flag_loss(theirs, q, p, labels).item(), abs=ATOL_LOSS, rel=0)
    assert second.item() == pytest.approx(_flag_loss(theirs, q, p, labels).item(), abs=ATOL_LOSS, rel=0)
    assert abs(first.item() - second.item()) > 1e-3
    ours.model.eval()  # evaluation passes do not count
    ours([q, p], labels)
    assert ours.step == 2


def _backbone(module):
    return {name: param for name, param in module.named_parameters()}


@pytest.mark.parametrize("fixture", FIXTURES)
def test_one_adamw_step_equals_flagembedding(m3_module, no_dropout, texts, fixture):
    options = {"unified_finetuning": True, "use_self_distill": True, "kd_loss_type": "kl_div"}
    theirs, ours = _pair(m3_module, no_dropout[fixture], group_size=GROUP, **options)
    q, p, labels = _batch(ours.model, texts, teacher=True)
    for module, loss in ((theirs, _flag_loss(theirs, q, p, labels)), (ours, ours([q, p], labels))):
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
        loss.backward()
        optimizer.step()
    their_backbone, our_backbone = _backbone(theirs.model), _backbone(ours.model[0].auto_model)
    assert their_backbone.keys() == our_backbone.keys()
    for name, param in their_backbone.items():
        torch.testing.assert_close(our_backbone[name], param, atol=ATOL_WEIGHTS, rtol=0, msg=name)
    for name in ("colbert_linear", "sparse_linear"):
        for key, param in getattr(theirs, name).state_dict().items():
            ours_param = getattr(ours.heads, name).state_dict()[key]
            torch.testing.assert_close(ours_param, param, atol=ATOL_WEIGHTS, rtol=0, msg=f"{name}.{key}")
    moved = (ours.heads.sparse_linear.weight - M3Heads.from_pretrained(no_dropout[fixture]).sparse_linear.weight).abs()
    assert moved.max() > 1e-4  # the heads were trained


@pytest.mark.parametrize("fixture", FIXTURES)
def test_saved_heads_load_in_bge_core_and_flagembedding(flag, no_dropout, texts, paragraphs, tmp_path, fixture):
    folder = no_dropout[fixture]
    st = build_sentence_transformer(folder, device="cpu")
    heads = M3Heads.from_pretrained(folder)
    loss = M3UnifiedLoss(st, heads, group_size=GROUP, unified_finetuning=True)
    q, p, labels = _batch(st, texts, teacher=False)
    optimizer = torch.optim.AdamW(loss.parameters(), lr=1e-3)
    loss([q, p], labels).backward()
    optimizer.step()

    out = tmp_path / "trained"
    st.save(str(out), create_model_card=False)
    heads.save(out)
    for name, layer in (("colbert_linear", heads.colbert_linear), ("sparse_linear", heads.sparse_linear)):
        state = torch.load(out / f"{name}.pt", map_location="cpu", weights_only=True)
        assert set(state) == {"weight", "bias"}
        for key, value in layer.state_dict().items():
            assert torch.equal(state[key], value)
    reloaded = M3Heads.from_pretrained(out)
    assert torch.equal(reloaded.colbert_linear.weight, heads.colbert_linear.weight)

    sample = [*paragraphs[:6], "the the cat cat sat"]
    expected = flag.BGEM3FlagModel(str(out), use_fp16=False, devices="cpu", batch_size=8).encode(
        sample, return_dense=True, return_sparse=True, return_colbert_vecs=True
    )
    got = Embedder(out, precision="fp32").encode(sample, dense=True, sparse=True, colbert=True)
    np.testing.assert_allclose(got.dense, expected["dense_vecs"], atol=1e-5, rtol=0)
    for ref, ours in zip(expected["lexical_weights"], got.sparse):
        ref = {int(k): float(v) for k, v in ref.items()}
        assert set(ours.indices.tolist()) == set(ref)
        np.testing.assert_allclose(ours.values, [ref[i] for i in ours.indices.tolist()], atol=1e-5, rtol=0)
    for ref, ours in zip(expected["colbert_vecs"], got.colbert):
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    # The trained model's own vectors: the saved folder gives what the trained modules give.
    st.eval()
    with torch.no_grad():
        dense = st.encode(sample, convert_to_numpy=True)
    np.testing.assert_allclose(got.dense, dense, atol=1e-5, rtol=0)


def test_heads_shapes_and_new_heads(models, tmp_path):
    heads = M3Heads(16, colbert_dim=8)
    assert heads.colbert_linear.weight.shape == (8, 16) and heads.sparse_linear.weight.shape == (1, 16)
    assert M3Heads(16).colbert_linear.weight.shape == (16, 16)
    # A folder without head files: new heads of the configured hidden size.
    new = M3Heads.from_pretrained(models.dense)
    hidden = json.loads((models.dense / "config.json").read_text())["hidden_size"]
    assert new.colbert_linear.weight.shape == (hidden, hidden)
    # One head file alone is an error (FlagEmbedding would silently start both afresh).
    folder = tmp_path / "one-head"
    folder.mkdir()
    shutil.copy(models.m3 / "config.json", folder / "config.json")
    shutil.copy(models.m3 / "sparse_linear.pt", folder / "sparse_linear.pt")
    with pytest.raises(ConfigError, match="colbert_linear.pt"):
        M3Heads.from_pretrained(folder)
    with pytest.raises(ConfigError, match="colbert_dim"):
        M3Heads.from_pretrained(models.m3, colbert_dim=8)


def test_invalid_options(models):
    st = build_sentence_transformer(models.m3, device="cpu")
    heads = M3Heads.from_pretrained(models.m3)
    with pytest.raises(ConfigError, match="M3Heads"):
        M3UnifiedLoss(st, None, group_size=2, unified_finetuning=True)
    with pytest.raises(ConfigError, match="unified_finetuning"):
        M3UnifiedLoss(st, heads, group_size=2, use_self_distill=True)
    with pytest.raises(ConfigError, match="kd_loss_type"):
        M3UnifiedLoss(st, heads, group_size=2, kd_loss_type="mse")
    with pytest.raises(ConfigError, match="Normalize"):
        M3UnifiedLoss(st, heads, group_size=2, normalize_embeddings=False)
    loss = M3UnifiedLoss(st, heads, group_size=2, unified_finetuning=True, fix_encoder=True)
    assert not any(p.requires_grad for p in st.parameters())
    assert all(p.requires_grad for p in loss.heads.parameters())


def test_trainer_optimizes_heads_and_calls_the_callback(models, tmp_path):
    """sentence-transformers' trainer puts the loss's heads in its optimizer; the callback's hooks exist."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    assert "on_pre_optimizer_step" in vars(TrainerCallback)
    st = build_sentence_transformer(models.m3, device="cpu")
    loss = M3UnifiedLoss(st, M3Heads.from_pretrained(models.m3), group_size=2, unified_finetuning=True)
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    data = Dataset.from_dict({"query": ["a"], "positive": ["b"]})
    trainer = SentenceTransformerTrainer(
        model=st, args=args, train_dataset=data, loss=loss, callbacks=[M3HeadsCallback(loss)]
    )
    optimizer = trainer.create_optimizer()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in loss.heads.parameters())
    state = types.SimpleNamespace(global_step=5)
    callback = M3HeadsCallback(loss)
    callback.on_train_begin(types.SimpleNamespace(gradient_accumulation_steps=4), state, None)
    assert loss.step == 20
    sync_head_gradients(loss.heads)  # one process: nothing to average, no error


def _import_test_conftest():
    """tests/conftest.py under its own name (a spawned process has no pytest to import it)."""
    spec = importlib.util.spec_from_file_location("_m3_test_conftest", Path(__file__).parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cross_device_worker(rank, world_size, folder, init_file, out_dir, kd_loss_type):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        _import_test_conftest().import_flag_embedding()
        from bge_rag.sample_data import python_docs_paragraphs

        m3_module = importlib.import_module("FlagEmbedding.finetune.embedder.encoder_only.m3")
        options = {"unified_finetuning": True, "use_self_distill": True, "kd_loss_type": kd_loss_type}
        theirs, ours = _pair(m3_module, folder, group_size=GROUP, negatives_cross_device=True, **options)
        paragraphs = python_docs_paragraphs()
        per_rank = 2
        queries = [p[:50] for p in paragraphs[rank * per_rank : (rank + 1) * per_rank]]
        start = 20 + rank * per_rank * GROUP
        passages = [paragraphs[start + i][: 30 + 23 * i] for i in range(per_rank * GROUP)]
        q, p = _tokenize(ours.model.tokenizer, queries), _tokenize(ours.model.tokenizer, passages)
        labels = torch.arange(per_rank * GROUP, dtype=torch.float).view(per_rank, GROUP).flip(1) + rank
        expected = _flag_loss(theirs, q, p, labels).detach()
        got = ours([q, p], labels)
        got.backward()
        before = [param.grad.clone() for param in ours.heads.parameters()]
        gathered = []
        for grad in before:
            parts = [torch.empty_like(grad) for _ in range(world_size)]
            torch.distributed.all_gather(parts, grad)
            gathered.append(torch.stack(parts).mean(0))
        sync_head_gradients(ours.heads)
        synced = [param.grad for param in ours.heads.parameters()]
        values = torch.stack([expected, got.detach()])
        torch.distributed.all_reduce(values)
        result = {
            "flag_mean": values[0].item() / world_size,
            "ours_mean": values[1].item() / world_size,
            "ours_local": got.item(),
            "grads_synced": all(torch.allclose(s, g, atol=1e-7, rtol=1e-6) for s, g in zip(synced, gathered)),
            "grads_differed": any(not torch.allclose(b, g) for b, g in zip(before, gathered)),
        }
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("kd_loss_type", ["kl_div", "m3_kd_loss"])
def test_cross_device_two_processes(no_dropout, tmp_path, kd_loss_type):
    """Two gloo processes: the mean over processes of our loss equals FlagEmbedding's (dense negatives
    from every process, the other losses local), and the heads' gradients are averaged."""
    import torch.multiprocessing as mp

    args = (2, str(no_dropout["xlmr_m3"]), str(tmp_path / "init"), str(tmp_path), kd_loss_type)
    mp.spawn(_cross_device_worker, args=args, nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for result in results:
        assert result["ours_mean"] == pytest.approx(result["flag_mean"], abs=ATOL_LOSS, rel=0)
        assert result["grads_synced"] and result["grads_differed"]
    assert results[0]["ours_local"] != pytest.approx(results[1]["ours_local"], abs=1e-3)


class _GroupCollator:
    """Queries and their groups as the loss expects them (the real collator is bge_rag.finetune's)."""

    valid_label_columns = ["scores"]

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, rows):
        queries = _tokenize(self.tokenizer, [row["query"] for row in rows])
        passages = _tokenize(self.tokenizer, [text for row in rows for text in row["passages"]])
        batch = {f"query_{key}": value for key, value in queries.items()}
        batch.update({f"passage_{key}": value for key, value in passages.items()})
        batch["label"] = torch.tensor([row["scores"] for row in rows], dtype=torch.float)
        return batch


@pytest.mark.slow
def test_trainer_runs_the_loss_with_step_and_head_updates(no_dropout, paragraphs, tmp_path):
    """Two optimizer steps of two micro-batches each in SentenceTransformerTrainer: the heads are
    trained, their gradients cleared after each step, and the step counter counts micro-batches."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    folder = no_dropout["m3"]
    st = build_sentence_transformer(folder, device="cpu")
    heads = M3Heads.from_pretrained(folder)
    start = heads.sparse_linear.weight.detach().clone()
    loss = M3UnifiedLoss(
        st, heads, group_size=2, unified_finetuning=True, use_self_distill=True, self_distill_start_step=1
    )
    seen = []

    class Recording(M3HeadsCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            seen.append((self.loss.step, all(p.grad is not None for p in self.loss.heads.parameters())))
            super().on_pre_optimizer_step(args, state, control, **kwargs)

    rows = {
        "query": [p[:40] for p in paragraphs[:8]],
        "passages": [[paragraphs[20 + 2 * i][:60], paragraphs[21 + 2 * i][:80]] for i in range(8)],
        "scores": [[1.0, 0.0]] * 8,
    }
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=2,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=1,
        remove_unused_columns=False,
    )
    trainer = SentenceTransformerTrainer(
        model=st,
        args=args,
        train_dataset=Dataset.from_dict(rows),
        loss=loss,
        data_collator=_GroupCollator(st.tokenizer),
        callbacks=[Recording(loss)],
    )
    trainer.train()
    assert seen == [(2, True), (4, True)]
    assert loss.step == 4
    assert (heads.sparse_linear.weight - start).abs().max() > 1e-4
    assert all(p.grad is None or not p.grad.any() for p in heads.parameters())
    # Each checkpoint is a complete BGE-M3 folder: the model and the heads of that step.
    assert (tmp_path / "checkpoint-1" / "sparse_linear.pt").is_file()
    saved = M3Heads.from_pretrained(tmp_path / "checkpoint-2")
    assert torch.equal(saved.sparse_linear.weight, heads.sparse_linear.weight)
    assert torch.equal(saved.colbert_linear.bias, heads.colbert_linear.bias)

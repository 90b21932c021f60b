"""Reranker fine-tuning (bge_rag.finetune.reranker) against FlagEmbedding's reranker training, computed in the test."""

from __future__ import annotations

import copy
import math
import random
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from _mining_support import write_lines
from sentence_transformers import CrossEncoder
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from bge_core.errors import InvalidInputError
from bge_rag.finetune.data import group_rng, read_train_data
from bge_rag.finetune.reranker import GroupCrossEntropyLoss, RerankerCollator, build_reranker
from bge_rag.testing import FixtureModels

pytestmark = pytest.mark.slow

GROUP = 4
SEED = 42


@pytest.fixture(scope="module")
def lines(paragraphs: list[str]) -> list[dict]:
    """Training lines of real paragraphs: long passages, one long query, one line short of negatives."""
    docs = [p for p in paragraphs if len(p.split()) > 12]
    scores = random.Random(0)
    out = []
    for i in range(6):
        negs = docs[20 + 5 * i : 20 + 5 * i + (2 if i == 3 else 5)]
        pos = [docs[i], docs[10 + i]]
        out.append(
            {
                "query": docs[60] if i == 1 else " ".join(docs[i].split()[:8]),
                "pos": pos,
                "neg": negs,
                "pos_scores": [scores.uniform(-5, 5) for _ in pos],
                "neg_scores": [scores.uniform(-5, 5) for _ in negs],
            }
        )
    return out


def hf_model(model: CrossEncoder) -> PreTrainedModel:
    """The transformers sequence-classification model inside the CrossEncoder."""
    assert model.model is not None
    return model.model


def flag_batch(
    tokenizer: Any, train_file: Path, rows: list[dict], monkeypatch: pytest.MonkeyPatch, **data_args: Any
) -> dict:
    """FlagEmbedding's batch of ``rows``: its dataset's ``__getitem__`` drawing what our collator draws."""
    from FlagEmbedding.abc.finetune.reranker import AbsDataset  # type: ignore[import-untyped]

    args = AbsDataset.AbsRerankerDataArguments(
        train_data=[str(train_file)], cache_path=str(train_file.parent / "hf-cache"), **data_args
    )
    dataset = AbsDataset.AbsRerankerTrainDataset(args, tokenizer)
    collator = AbsDataset.AbsRerankerCollator(
        tokenizer=tokenizer,
        query_max_len=args.query_max_len,
        passage_max_len=args.passage_max_len,
        pad_to_multiple_of=args.pad_to_multiple_of,
        padding=True,
        return_tensors="pt",
    )
    items = []
    for row in rows:
        # FlagEmbedding draws from the global `random`; ours from group_rng: the same draws, the same groups.
        monkeypatch.setattr(AbsDataset, "random", group_rng(SEED, 0, row["row"]))
        items.append(dataset[row["row"]])
    return collator(items)


def our_collator(tokenizer: Any, **data_args: Any) -> RerankerCollator:
    return RerankerCollator(
        tokenizer=tokenizer,
        train_group_size=data_args["train_group_size"],
        query_max_len=data_args["query_max_len"],
        passage_max_len=data_args["passage_max_len"],
        pad_to_multiple_of=data_args.get("pad_to_multiple_of"),
        query_instruction=data_args.get("query_instruction_for_rerank"),
        query_instruction_format=data_args.get("query_instruction_format", "{}{}"),
        passage_instruction=data_args.get("passage_instruction_for_rerank"),
        passage_instruction_format=data_args.get("passage_instruction_format", "{}{}"),
        seed=SEED,
    )


def assert_same_pairs(ours: dict, theirs: dict) -> None:
    assert set(ours["pair"]) == set(theirs["pair"])
    for key, value in theirs["pair"].items():
        assert torch.equal(ours["pair"][key], value), key
    if theirs["teacher_scores"] is None:
        assert "label" not in ours
    else:
        assert ours["label"].shape == (len(theirs["teacher_scores"]) // GROUP, GROUP)
        assert ours["label"].flatten().tolist() == pytest.approx(theirs["teacher_scores"], abs=1e-6)


DATA_CASES: dict[str, dict[str, Any]] = {
    "truncated": {"query_max_len": 16, "passage_max_len": 40},
    "defaults-kd": {"query_max_len": 32, "passage_max_len": 128, "knowledge_distillation": True},
    "instructions": {
        "query_max_len": 24,
        "passage_max_len": 64,
        "query_instruction_for_rerank": "Find the passage that answers: ",
        "passage_instruction_for_rerank": "Passage: ",
        "passage_instruction_format": "{}\n{}",
        "pad_to_multiple_of": 8,
    },
    "row-prompts": {
        "query_max_len": 24,
        "passage_max_len": 64,
        "query_instruction_for_rerank": "unused",
        "query_instruction_format": "<{}> {}",
        "passage_instruction_for_rerank": "unused",
        "prompts": True,
    },
}


@pytest.mark.parity
@pytest.mark.parametrize("model_name", ["reranker", "xlmr_reranker"])
@pytest.mark.parametrize("case", list(DATA_CASES))
def test_collator_equals_flag_embedding_dataset_and_collator(
    flag: types.ModuleType,
    models: FixtureModels,
    lines: list[dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model_name: str,
    case: str,
) -> None:
    data_args = {"train_group_size": GROUP, **DATA_CASES[case]}
    if data_args.pop("prompts", False):
        lines = [{**line, "query_prompt": f"q{i}", "passage_prompt": f"p{i}: "} for i, line in enumerate(lines)]
    tokenizer = AutoTokenizer.from_pretrained(str(getattr(models, model_name)))
    train_file = write_lines(tmp_path / "train.jsonl", lines)
    kd = data_args.get("knowledge_distillation", False)
    rows = read_train_data([train_file], train_group_size=GROUP, knowledge_distillation=kd)
    theirs = flag_batch(tokenizer, train_file, rows, monkeypatch, **data_args)
    ours = our_collator(tokenizer, **data_args)(rows)
    assert_same_pairs(ours, theirs)
    if case == "truncated":  # the pairs were cut at query_max_len + passage_max_len
        assert ours["pair"]["input_ids"].shape[1] == 16 + 40


def flag_reranker(folder: Path, batch_size: int) -> Any:
    """FlagEmbedding's training model (its runner's loading), training mode with dropout off."""
    from FlagEmbedding.finetune.reranker.encoder_only.base.modeling import (  # type: ignore[import-untyped]
        CrossEncoderModel,
    )

    base = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1, dtype=torch.float32)
    model = CrossEncoderModel(base, tokenizer=AutoTokenizer.from_pretrained(str(folder)), train_batch_size=batch_size)
    model.train()  # FlagEmbedding computes its loss only in training mode...
    model.model.eval()  # ...and with the transformer's dropout off both sides compute the same thing.
    return model


@pytest.fixture(scope="module")
def reranker_rows(lines: list[dict], tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    train_file = write_lines(tmp_path_factory.mktemp("data") / "train.jsonl", lines)
    return read_train_data([train_file], train_group_size=GROUP, knowledge_distillation=True)


def step_both(
    models: FixtureModels, rows: list[dict], *, distill: bool
) -> tuple[tuple[float, float], tuple[PreTrainedModel, PreTrainedModel]]:
    """One loss and one AdamW step on each side from the same weights; returns (losses, models)."""
    rows = rows[:3]
    ours_model = build_reranker(models.reranker, device="cpu")
    ours_model.eval()
    theirs_model = flag_reranker(models.reranker, batch_size=len(rows))
    collator = our_collator(ours_model.tokenizer, train_group_size=GROUP, query_max_len=32, passage_max_len=96)
    batch = collator(rows)
    labels = batch["label"] if distill else None
    loss = GroupCrossEntropyLoss(ours_model, GROUP)([batch["pair"]], labels)
    out = theirs_model(pair=batch["pair"], teacher_scores=None if labels is None else labels.flatten().tolist())
    for model, value in ((ours_model, loss), (theirs_model, out.loss)):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        value.backward()
        optimizer.step()
    return (loss.item(), out.loss.item()), (hf_model(ours_model), theirs_model.model)


@pytest.mark.parity
@pytest.mark.parametrize("distill", [False, True], ids=["plain", "distill"])
def test_loss_and_one_step_equal_flag_embedding(
    flag: types.ModuleType, models: FixtureModels, reranker_rows: list[dict], distill: bool
) -> None:
    start = AutoModelForSequenceClassification.from_pretrained(str(models.reranker), num_labels=1)
    (ours, theirs), (ours_model, theirs_model) = step_both(models, reranker_rows, distill=distill)
    assert math.isfinite(ours) and ours == pytest.approx(theirs, abs=1e-5)
    theirs_params = dict(theirs_model.named_parameters())
    start_params = dict(start.named_parameters())
    moved = 0
    for name, param in ours_model.named_parameters():
        torch.testing.assert_close(param, theirs_params[name], atol=1e-6, rtol=0, msg=name)
        moved += not torch.equal(param, start_params[name])
    assert moved > 0


def test_logits_are_what_the_cross_encoder_predicts(models: FixtureModels, reranker_rows: list[dict]) -> None:
    """The loss scores pairs as the saved CrossEncoder does (raw logits), given the same tokens."""
    model = build_reranker(models.reranker, device="cpu")
    model.eval()
    pairs = [(row["query"], row["pos"][0]) for row in reranker_rows]
    features = model.preprocess(pairs)
    with torch.no_grad():
        scores = model(features)["scores"].view(-1)
        direct = hf_model(model)(**features).logits.view(-1)
    torch.testing.assert_close(scores, direct)
    torch.testing.assert_close(torch.as_tensor(model.predict(pairs)), direct, atol=1e-5, rtol=1e-5)


def test_crossencoder_trainer_runs_with_collator_and_loss(
    models: FixtureModels, reranker_rows: list[dict], tmp_path: Path
) -> None:
    from datasets import Dataset  # type: ignore[import-untyped]
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = build_reranker(models.reranker, device="cpu")
    before = copy.deepcopy(hf_model(model).state_dict())
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_pin_memory=False,
        seed=SEED,
    )
    collator = RerankerCollator(model.tokenizer, train_group_size=3, query_max_len=16, passage_max_len=48, seed=SEED)
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(reranker_rows),
        loss=GroupCrossEntropyLoss(model, group_size=3),
        data_collator=collator,  # type: ignore[arg-type]  # any callable collator works
    )
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    after = hf_model(model).state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_batch_without_teacher_scores_has_no_label(models: FixtureModels, lines: list[dict], tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(models.reranker))
    rows = read_train_data([write_lines(tmp_path / "t.jsonl", lines)], train_group_size=GROUP)
    batch = RerankerCollator(tokenizer, train_group_size=GROUP)(rows[:2])
    assert set(batch) == {"pair"} and batch["pair"]["input_ids"].shape[0] == 2 * GROUP
    # Each epoch draws new groups; the same epoch draws the same ones.
    again = RerankerCollator(tokenizer, train_group_size=GROUP)(rows[:2])
    other = RerankerCollator(tokenizer, train_group_size=GROUP, epoch=1)(rows[:2])
    assert torch.equal(batch["pair"]["input_ids"], again["pair"]["input_ids"])
    assert not torch.equal(batch["pair"]["input_ids"], other["pair"]["input_ids"])


def test_distillation_without_scores_is_refused(lines: list[dict], tmp_path: Path) -> None:
    unscored = [{k: v for k, v in line.items() if not k.endswith("_scores")} for line in lines]
    with pytest.raises(InvalidInputError, match="pos_scores"):
        read_train_data(
            [write_lines(tmp_path / "t.jsonl", unscored)], train_group_size=GROUP, knowledge_distillation=True
        )


def test_backbone_without_head_gets_one_logit_and_raw_scores(models: FixtureModels, tmp_path: Path) -> None:
    """FlagEmbedding's runner: a new one-label head on any checkpoint; scores stay raw logits once saved."""
    model = build_reranker(models.dense, device="cpu")
    assert model.num_labels == 1 and isinstance(model.activation_fn, torch.nn.Identity)
    model.save(str(tmp_path / "saved"))
    assert isinstance(CrossEncoder(str(tmp_path / "saved"), device="cpu").activation_fn, torch.nn.Identity)

"""``bge-rag finetune``: the command line end to end, and output folders that serve exactly.

Each fine-tuned folder is loaded by bge_core, sentence-transformers and FlagEmbedding, whose fp32
outputs must agree; evaluation runs before, during (best checkpoint kept) and after training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _eval_support import build_dataset
from _finetune_support import training_rows
from _mining_support import write_lines

from bge_core import Embedder, Reranker
from bge_rag.cli import main

INSTRUCTION = "Find the passage: "
FAST = ["--report_to", "none", "--disable_tqdm", "True", "--dataloader_pin_memory", "False", "--seed", "3"]


@pytest.fixture(scope="module")
def data(paragraphs, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ft-cli")
    train = write_lines(root / "train.jsonl", training_rows(paragraphs, n=12, negatives=3))
    dataset = build_dataset(root / "eval", paragraphs, n=30)
    for part in ("queries", "qrels"):
        shutil.copy(dataset / f"test_{part}.jsonl", dataset / f"dev_{part}.jsonl")
    return train, dataset


def _texts(paragraphs: list[str]) -> tuple[list[str], list[str]]:
    return [" ".join(p.split()[:6]) for p in paragraphs[:5]], paragraphs[5:10]


@pytest.mark.slow
@pytest.mark.parity
def test_embedder_folder_serves_exactly_and_keeps_the_best_checkpoint(flag, models, data, paragraphs, tmp_path, capsys):
    train, dataset = data
    out = tmp_path / "minilm-tuned"
    code = main([
        "finetune", "embedder", "--model_name_or_path", str(models.minilm), "--train_data", str(train),
        "--output_dir", str(out), "--train_group_size", "3", "--per_device_train_batch_size", "4",
        "--query_max_len", "24", "--passage_max_len", "64", "--max_steps", "3", "--learning_rate", "1e-4",
        "--sentence_pooling_method", "mean", "--query_instruction_for_retrieval", INSTRUCTION,
        "--eval_data", str(dataset), "--eval_strategy", "steps", "--eval_steps", "1", "--save_steps", "1",
        "--load_best_model_at_end", "--metric_for_best_model", "eval_dev_ndcg_at_10", *FAST,
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| before | NoReranker |" in printed and "| after | NoReranker |" in printed

    queries, docs = _texts(paragraphs)
    ours = Embedder(out, precision="fp32")
    assert ours.query_instruction == INSTRUCTION  # recorded in the folder, read back
    st = pytest.importorskip("sentence_transformers").SentenceTransformer(str(out), device="cpu")
    reference = flag.FlagModel(
        str(out), pooling_method="mean", query_instruction_for_retrieval=INSTRUCTION, use_fp16=False, devices="cpu"
    )
    for got, st_out, flag_out in (
        (ours.encode_queries(queries), st.encode_query(queries), reference.encode_queries(queries)),
        (ours.encode_documents(docs), st.encode_document(docs), reference.encode_corpus(docs)),
    ):
        np.testing.assert_allclose(got, st_out, atol=1e-5)
        np.testing.assert_allclose(got, flag_out, atol=1e-5)
    base = Embedder(models.minilm, precision="fp32", query_instruction=INSTRUCTION)
    assert np.abs(base.encode_documents(docs) - ours.encode_documents(docs)).max() > 1e-4  # it did train

    results = json.loads((out / "finetune_results.json").read_text())
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    evals = [entry["eval_dev_ndcg_at_10"] for entry in state["log_history"] if "eval_dev_ndcg_at_10" in entry]
    assert len(evals) == 3 and state["best_metric"] == max(evals)
    after = results["evaluation"]["after"]["NoReranker"]["dev"]["ndcg_at_10"]
    assert after == pytest.approx(max(evals), abs=1e-4)  # the best checkpoint is the folder served
    card = (out / "README.md").read_text()
    assert "--sentence_pooling_method" in card and "| after | NoReranker |" in card
    assert results["arguments"]["model_name_or_path"] == str(models.minilm)


@pytest.mark.slow
@pytest.mark.parity
def test_m3_folder_serves_exactly(flag, models, data, paragraphs, tmp_path):
    train, _ = data
    out = tmp_path / "m3-tuned"
    assert main([
        "finetune", "m3", "--model_name_or_path", str(models.xlmr_m3), "--train_data", str(train),
        "--output_dir", str(out), "--train_group_size", "2", "--per_device_train_batch_size", "2",
        "--max_steps", "2", "--unified_finetuning", "--use_self_distill", "--learning_rate", "1e-3", *FAST,
    ]) == 0  # fmt: skip
    queries, docs = _texts(paragraphs)
    ours = Embedder(out, precision="fp32").encode(docs, dense=True, sparse=True, colbert=True)
    theirs = flag.BGEM3FlagModel(str(out), use_fp16=False, devices="cpu").encode(
        docs, return_dense=True, return_sparse=True, return_colbert_vecs=True
    )
    np.testing.assert_allclose(ours.dense, theirs["dense_vecs"], atol=1e-5)
    for sparse, weights in zip(ours.sparse, theirs["lexical_weights"]):
        expected = {int(k): float(v) for k, v in weights.items()}
        assert sparse.to_dict().keys() == expected.keys()
        got = sparse.to_dict()
        np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), atol=1e-5)
    for mine, reference in zip(ours.colbert, theirs["colbert_vecs"]):
        np.testing.assert_allclose(mine, reference, atol=1e-5)
    heads = Embedder(models.xlmr_m3, precision="fp32").encode(docs[:1], sparse=True).sparse[0].to_dict()
    assert heads != Embedder(out, precision="fp32").encode(docs[:1], sparse=True).sparse[0].to_dict()  # heads trained


@pytest.mark.slow
@pytest.mark.parity
def test_reranker_folder_serves_exactly(flag, models, data, paragraphs, tmp_path):
    train, dataset = data
    out = tmp_path / "reranker-tuned"
    assert main([
        "finetune", "reranker", "--model_name_or_path", str(models.reranker), "--train_data", str(train),
        "--output_dir", str(out), "--train_group_size", "3", "--per_device_train_batch_size", "2",
        "--max_steps", "2", "--knowledge_distillation", "--eval_data", str(dataset), "--eval_split", "test",
        "--eval_retriever", str(models.minilm), "--eval_rerank_top_k", "5", *FAST,
    ]) == 0  # fmt: skip
    queries, docs = _texts(paragraphs)
    pairs = list(zip(queries, docs))
    ours = Reranker(out, precision="fp32").score(pairs)
    ce = pytest.importorskip("sentence_transformers").CrossEncoder(str(out), device="cpu").predict(pairs)
    theirs = flag.FlagReranker(str(out), use_fp16=False, devices="cpu").compute_score(pairs)
    np.testing.assert_allclose(ours, ce, atol=1e-5)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert ours != Reranker(models.reranker, precision="fp32").score(pairs)
    results = json.loads((out / "finetune_results.json").read_text())
    assert set(
        results["evaluation"]["minilm"]
        if "minilm" in results["evaluation"]
        else next(iter(results["evaluation"].values()))
    ) == {"NoReranker", "before", "after"}


def _fails(capsys, *argv: str) -> str:
    assert main(["finetune", *argv]) == 2
    return capsys.readouterr().err


def test_refusals(capsys, models, data, tmp_path):
    train, dataset = data
    base = ["--model_name_or_path", str(models.minilm), "--train_data", str(train)]
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    assert "exists and is not empty" in _fails(capsys, "embedder", *base, "--output_dir", str(tmp_path / "used"))
    out = ["--output_dir", str(tmp_path / "o")]
    assert "--same_dataset_within_batch is not supported" in _fails(
        capsys, "embedder", *base, *out, "--same_dataset_within_batch"
    )
    assert "BGE-M3 option" in _fails(capsys, "embedder", *base, *out, "--unified_finetuning")
    assert "--use_mrl needs --mrl_dims" in _fails(capsys, "embedder", *base, *out, "--use_mrl")
    assert "named like the registered model" in _fails(
        capsys,
        "embedder",
        *base,
        "--output_dir",
        str(tmp_path / "bge-small-en-v1.5"),
        "--sentence_pooling_method",
        "mean",
    )
    assert "needs --eval_retriever" in _fails(capsys, "reranker", *base, *out, "--eval_data", str(dataset))
    assert "decoder-only" in _fails(capsys, "reranker", *base, *out, "--model_type", "decoder")
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_usage_and_help(capsys):
    assert main(["finetune"]) == 2
    assert "embedder" in capsys.readouterr().out
    assert main(["finetune", "llm"]) == 2
    assert "unknown kind 'llm'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "m3", "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--train_group_size", "--unified_finetuning", "--negatives_cross_device", "--eval_data", "--bf16"):
        assert option in shown


@pytest.mark.slow
def test_an_interrupted_m3_run_resumed_from_its_checkpoint_ends_where_the_whole_run_does(models, data, tmp_path):
    """--resume_from_checkpoint restores the model, the optimizer, the data order and the M3 heads."""
    import torch
    from safetensors.torch import load_file

    train, _ = data
    args = [
        "finetune", "m3", "--model_name_or_path", str(models.xlmr_m3), "--train_data", str(train),
        "--train_group_size", "2", "--per_device_train_batch_size", "2", "--max_steps", "3", "--save_steps", "1",
        "--unified_finetuning", "--learning_rate", "1e-3", *FAST,
    ]  # fmt: skip
    whole = tmp_path / "whole"
    assert main([*args, "--output_dir", str(whole)]) == 0
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    for later in ("checkpoint-2", "checkpoint-3"):
        shutil.rmtree(resumed / later)
    for name in ("model.safetensors", "colbert_linear.pt", "sparse_linear.pt", "finetune_results.json"):
        (resumed / name).unlink()
    assert main([*args, "--output_dir", str(resumed)]) == 2  # not empty and not resuming: refused
    assert main([*args, "--output_dir", str(resumed), "--resume_from_checkpoint", str(resumed / "checkpoint-1")]) == 0
    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0
    for head in ("colbert_linear.pt", "sparse_linear.pt"):
        x, y = torch.load(whole / head, weights_only=True), torch.load(resumed / head, weights_only=True)
        assert all(torch.equal(x[k], y[k]) for k in x)
    first = torch.load(resumed / "checkpoint-1" / "sparse_linear.pt", weights_only=True)
    assert not torch.equal(first["weight"], y["weight"])  # the heads went on training after the checkpoint


@pytest.mark.slow
@pytest.mark.parity
def test_a_reranker_trained_from_an_embedder_checkpoint_gets_a_head_and_serves(
    flag, models, data, paragraphs, tmp_path
):
    train, dataset = data
    out = tmp_path / "minilm-reranker"
    assert main([
        "finetune", "reranker", "--model_name_or_path", str(models.minilm), "--train_data", str(train),
        "--output_dir", str(out), "--train_group_size", "3", "--per_device_train_batch_size", "2",
        "--max_steps", "1", "--eval_data", str(dataset), "--eval_split", "test",
        "--eval_retriever", str(models.minilm), "--eval_rerank_top_k", "3", *FAST,
    ]) == 0  # fmt: skip
    pairs = list(zip(*_texts(paragraphs)))
    theirs = flag.FlagReranker(str(out), use_fp16=False, devices="cpu").compute_score(pairs)
    np.testing.assert_allclose(Reranker(out, precision="fp32").score(pairs), theirs, atol=1e-5)
    (first_stage,) = json.loads((out / "finetune_results.json").read_text())["evaluation"].values()
    assert set(first_stage) == {"NoReranker", "after"}  # the embedder had no reranker head to measure before

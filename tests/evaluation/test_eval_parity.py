"""bge-rag eval against FlagEmbedding's own evaluation runner, on the same dataset and models.

FlagEmbedding runs as users run it (``python -m FlagEmbedding.evaluation.custom``, in a
subprocess); bge-rag eval gets the same command line. At fp32 the summary files are equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _eval_support import run_flagembedding

from bge_rag.cli import main
from bge_rag.testing import FixtureModels

pytestmark = [pytest.mark.slow, pytest.mark.parity]


def _args(data: Path, out: Path, models: FixtureModels, method: str = "json") -> list[str]:
    suffix = "json" if method == "json" else "md"
    return [
        "--eval_name", "paragraphs",
        "--dataset_dir", str(data),
        "--splits", "test",
        "--output_dir", str(out / "search_results"),
        "--eval_output_method", method,
        "--eval_output_path", str(out / f"summary.{suffix}"),
        "--eval_metrics", "ndcg_at_10", "recall_at_10", "mrr_at_10",
        "--embedder_name_or_path", str(models.dense),
        "--embedder_model_class", "encoder-only-base",
        "--pooling_method", "mean",
        "--query_instruction_for_retrieval", "Represent this sentence for searching relevant passages: ",
        "--reranker_name_or_path", str(models.reranker),
        "--reranker_model_class", "encoder-only-base",
        "--k_values", "1", "3", "10", "50",
        "--search_top_k", "50",
        "--rerank_top_k", "12",
        "--embedder_query_max_length", "32",
        "--embedder_passage_max_length", "96",
        "--devices", "cpu",
        # FlagEmbedding's 3000 pads every pair to the longest one: slow, and no part of what is compared
        "--embedder_batch_size", "32",
        "--reranker_batch_size", "32",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def flag_run(tmp_path_factory: pytest.TempPathFactory, eval_dir: Path, models: FixtureModels, flag) -> Path:
    out = tmp_path_factory.mktemp("flag")
    run_flagembedding(*_args(eval_dir, out, models), "--use_fp16", "False", cwd=out)
    # Its markdown summary of the same search results, written by its own runner's last step.
    from FlagEmbedding.abc.evaluation import AbsEvalRunner

    AbsEvalRunner.evaluate_metrics(
        str(out / "search_results"), "markdown", str(out / "summary.md"), ["ndcg_at_10", "recall_at_10", "mrr_at_10"]
    )
    return out


def test_metrics_equal_flagembedding_with_and_without_reranker(
    flag_run: Path, eval_dir: Path, models: FixtureModels, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Unchanged command line (FlagEmbedding's --use_fp16 default): on CPU both compute fp32.
    assert main(["eval", *_args(eval_dir, tmp_path, models)]) == 0
    theirs = json.loads((flag_run / "summary.json").read_text())
    ours = json.loads((tmp_path / "summary.json").read_text())
    assert list(ours) == list(theirs) == [models.dense.name]
    assert set(ours[models.dense.name]) == {"NoReranker", models.reranker.name}
    for reranker, by_split in theirs[models.dense.name].items():
        expected, got = by_split["test"], ours[models.dense.name][reranker]["test"]
        assert list(got) == list(expected)  # same metrics, same order
        assert got == pytest.approx(expected, abs=1e-4), reranker
        assert 0 < got["ndcg_at_10"] < 1
    # the table on the terminal has a row per stage
    printed = capsys.readouterr().out
    assert f"| {models.dense.name} | NoReranker |" in printed and f"| {models.reranker.name} |" in printed

    # FlagEmbedding's search result files: same layout, same metadata, same documents per query
    for reranker in ("NoReranker", models.reranker.name):
        mine = json.loads((tmp_path / "search_results" / models.dense.name / reranker / "test.json").read_text())
        ref = json.loads((flag_run / "search_results" / models.dense.name / reranker / "test.json").read_text())
        # FlagEmbedding's metadata, and bge-rag's dataset_digest beside it (its loader ignores extra keys)
        assert {k: v for k, v in mine.items() if k not in ("search_results", "dataset_digest")} == {
            k: v for k, v in ref.items() if k != "search_results"
        }
        assert len(mine["dataset_digest"]) == 64
        assert mine["search_results"].keys() == ref["search_results"].keys()
        for qid, docs in ref["search_results"].items():
            assert mine["search_results"][qid].keys() == docs.keys()
            np.testing.assert_allclose([mine["search_results"][qid][d] for d in docs], list(docs.values()), atol=2e-5)
        assert (tmp_path / "search_results" / models.dense.name / reranker / "EVAL" / "eval_results.json").is_file()


def test_markdown_summary_equals_flagembedding(
    flag_run: Path, eval_dir: Path, models: FixtureModels, tmp_path: Path
) -> None:
    assert main(["eval", *_args(eval_dir, tmp_path, models, "markdown"), "--use_fp16", "False"]) == 0
    theirs = (flag_run / "summary.md").read_text().splitlines()
    ours = (tmp_path / "summary.md").read_text().splitlines()
    # FlagEmbedding orders the rows of a table by iterating a set; compare each table's rows as sets
    assert [line for line in ours if not line.startswith("| ") or "Model" in line] == [
        line for line in theirs if not line.startswith("| ") or "Model" in line
    ]
    assert sorted(ours) == sorted(theirs)

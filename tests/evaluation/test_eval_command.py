"""bge-rag eval's command line: FlagEmbedding's options, parsed as FlagEmbedding parses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bge_core.errors import ConfigError, MissingHeadError
from bge_rag.cli import main
from bge_rag.evaluation.command import build, flag_markdown, parse
from bge_rag.flag_cli import flag_precision
from bge_rag.testing import FixtureModels

BASE = ["--dataset_dir", "data", "--embedder_name_or_path", "BAAI/bge-base-en-v1.5"]


def test_flagembedding_syntax_and_defaults() -> None:
    eval_args, model_args = parse(BASE)
    assert eval_args.splits == ["test"] and eval_args.k_values == [1, 3, 5, 10, 100, 1000]
    assert eval_args.search_top_k == 1000 and eval_args.rerank_top_k == 100
    assert eval_args.eval_output_method == "markdown" and eval_args.eval_metrics == ["ndcg_at_10", "recall_at_10"]
    assert model_args.use_fp16 is True and model_args.normalize_embeddings is True
    assert model_args.embedder_batch_size == 3000 and model_args.embedder_passage_max_length == 512
    assert model_args.embedder_name_or_path == ["BAAI/bge-base-en-v1.5"]
    # HfArgumentParser's bool forms: --flag, --flag False, --no_flag
    _, m = parse([*BASE, "--use_fp16", "False", "--no_normalize_embeddings", "--trust_remote_code"])
    assert (m.use_fp16, m.normalize_embeddings, m.trust_remote_code) == (False, False, True)
    e, m = parse([*BASE, "--overwrite", "--k_values", "1", "10", "--splits", "dev", "test", "--use_fp16", "false"])
    assert e.overwrite is True and e.k_values == [1, 10] and e.splits == ["dev", "test"] and m.use_fp16 is False
    # a literal backslash-n in a format is a newline, as in FlagEmbedding
    _, m = parse([*BASE, "--query_instruction_format_for_retrieval", "{}\\n{}"])
    assert m.query_instruction_format_for_retrieval == "{}\n{}"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--examples_for_task", "x.json"], "--examples_for_task is not supported"),
        (["--dataset_names", "a"], "--dataset_names is not supported"),
        (["--force_redownload"], "--force_redownload is not supported"),
        (["--reranker_peft_path", "p"], "--reranker_peft_path is not supported by bge-rag eval: merge"),
        (["--domain_for_pseudo_moe", "general"], "--domain_for_pseudo_moe is not supported"),
        (["--embedder_model_class", "decoder-only-pseudo_moe"], "decoder-only-pseudo_moe is not supported"),
        (["--devices", "cuda:0", "cuda:1"], "runs on one device"),
        (["--retrieval_modes", "bm25"], "invalid mode 'bm25'"),
        (["--hybrid_weights", "1", "2"], "three numbers"),
    ],
)
def test_options_it_cannot_honour_are_errors(extra: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse([*BASE, *extra])


def test_errors_reach_the_terminal(capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", *BASE, "--examples_for_task", "x"]) == 2
    assert "bge-rag: error: --examples_for_task is not supported" in capsys.readouterr().err
    assert main(["eval", "--embedder_name_or_path", "m"]) == 2
    assert "--dataset_dir is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", *BASE, "--no_such_option", "1"])
    assert "unrecognized arguments: --no_such_option" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--eval_name", "--corpus_embd_save_dir", "--embedder_query_max_length", "--retrieval_modes"):
        assert option in help_text


def test_precision_follows_flagembedding() -> None:
    assert flag_precision("cpu", use_fp16=True) == "fp32"  # FlagEmbedding calls model.float() on the CPU
    assert flag_precision("cpu", use_fp16=True, override="bf16") == "bf16"
    with pytest.raises(ConfigError, match="Invalid precision"):
        flag_precision("cpu", True, override="int4")


def test_build_models_and_modes(models: FixtureModels, caplog: pytest.LogCaptureFixture) -> None:
    e, m = parse(
        [
            "--dataset_dir", "d",
            "--embedder_name_or_path", str(models.xlmr_m3), str(models.dense) + "/",
            "--retrieval_modes", "dense", "hybrid", "dense",
            "--embedder_query_max_length", "64",
            "--reranker_name_or_path", str(models.reranker),
            "--query_instruction_for_rerank", "Q: ",
        ]
    )  # fmt: skip
    m.embedder_name_or_path = m.embedder_name_or_path[:1]
    retrievers, stages = build(e, m)
    names = [r.name for r in retrievers]
    assert names == [models.xlmr_m3.name, f"{models.xlmr_m3.name}-hybrid"]  # a repeated mode counts once
    assert retrievers[0].embedder is retrievers[1].embedder  # one model loaded for both modes
    assert retrievers[0].query_embedder is not None and retrievers[0].query_embedder.max_length == 64
    assert retrievers[0].embedder.max_length == 512 and retrievers[0].embedder.dtype.is_floating_point
    assert stages[0] is None and stages[1] is not None and stages[1].name == models.reranker.name
    assert stages[1].query_instruction == "Q: "
    # a model without BGE-M3 heads asked for hybrid: said before anything is encoded
    m.embedder_name_or_path = [str(models.dense) + "/"]
    with pytest.raises(MissingHeadError):
        build(e, m)


def test_flag_markdown_layout() -> None:
    results = {"m": {"NoReranker": {"test": {"ndcg_at_10": 0.5}}, "r": {"test": {"ndcg_at_10": 0.25}}}}
    text = flag_markdown(results, ["ndcg_at_10"])
    assert text.splitlines()[:4] == [
        "## ndcg_at_10",
        "",
        "| Model | Reranker | average | test |",
        "| :---- | :---- | :---: | :---: |",
    ]
    assert "| m | NoReranker | **50.000** | **50.000** | " in text and "| m | r | 25.000 | 25.000 | " in text


@pytest.mark.slow
def test_side_by_side_run_and_beir_layout(models: FixtureModels, eval_dir: Path, tmp_path: Path, capsys) -> None:
    # the same dataset in BEIR's layout
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    corpus = [json.loads(line) for line in (eval_dir / "corpus.jsonl").read_text().splitlines()]
    (beir / "corpus.jsonl").write_text("".join(json.dumps({**c, "_id": c.pop("id")}) + "\n" for c in corpus))
    queries = [json.loads(line) for line in (eval_dir / "test_queries.jsonl").read_text().splitlines()]
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q["id"], "text": q["text"]}) + "\n" for q in queries)
    )
    qrels = [json.loads(line) for line in (eval_dir / "test_qrels.jsonl").read_text().splitlines()]
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{r['qid']}\t{r['docid']}\t{r['relevance']}\n" for r in qrels)
    )
    outputs = {}
    for name, folder in (("custom", eval_dir), ("beir", beir)):
        out = tmp_path / name
        args = [
            "eval", "--dataset_dir", str(folder), "--output_dir", str(out / "results"),
            "--eval_output_method", "json", "--eval_output_path", str(out / "summary.json"),
            "--embedder_name_or_path", str(models.dense), str(models.xlmr_m3),
            "--retrieval_modes", "dense", "--k_values", "1", "10",
            "--reranker_name_or_path", str(models.reranker), "--rerank_top_k", "5",
        ]  # fmt: skip
        assert main(args) == 0
        outputs[name] = json.loads((out / "summary.json").read_text())
    assert outputs["custom"] == outputs["beir"]
    table = capsys.readouterr().out
    rows = [
        line
        for line in table.splitlines()
        if line.startswith(f"| {models.dense.name}") or line.startswith(f"| {models.xlmr_m3.name}")
    ]
    assert len(rows) == 4 * 2  # two runs, each: two models x (no reranker, reranker)
    assert set(outputs["custom"]) == {models.dense.name, models.xlmr_m3.name}


def test_metric_names_are_checked(models: FixtureModels, eval_dir: Path, tmp_path: Path, capsys) -> None:
    from bge_rag.evaluation import Report, Run, compute_metrics

    metrics = compute_metrics({"q": {"d": 1}}, {"q": {"d": 1.0}}, [1, 3])
    report = Report("d", [1, 3], [Run("r", "NoReranker", "test", metrics, {"q": {"d": 1.0}})])
    assert report.table().splitlines()[0] == "| Retriever | Reranker | ndcg_at_3 | recall_at_3 |"
    with pytest.raises(
        ConfigError, match=r"Unknown metric 'ndcg@10' for k values \[1, 3\]. Valid: ndcg_at_1, ndcg_at_3"
    ):
        report.table(["ndcg@10"])
    args = [
        "eval",
        "--dataset_dir",
        str(eval_dir),
        "--embedder_name_or_path",
        str(models.dense),
        "--k_values",
        "1",
        "5",
    ]
    assert main([*args, "--eval_metrics", "ndcg_at_10"]) == 2  # before any model loads
    assert "Unknown metric 'ndcg_at_10'" in capsys.readouterr().err


def test_two_models_with_one_name_are_refused(models: FixtureModels, tmp_path: Path) -> None:
    import shutil

    twin = tmp_path / "copy" / models.dense.name
    shutil.copytree(models.dense, twin)
    e, m = parse(["--dataset_dir", "d", "--embedder_name_or_path", str(models.dense), str(twin)])
    with pytest.raises(ConfigError, match="both named .*rename one folder, or evaluate them in separate runs"):
        build(e, m)


@pytest.mark.slow
def test_summary_leaves_out_results_of_another_dataset(
    models: FixtureModels, eval_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(eval_dir, other)
    rows = [json.loads(line) for line in (other / "test_qrels.jsonl").read_text().splitlines()]
    rows[-1]["relevance"] += 1  # one judgement graded otherwise
    (other / "test_qrels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--output_dir", str(tmp_path / "out"), "--eval_output_method", "json", "--k_values", "1", "10",
              "--embedder_name_or_path", str(models.dense)]  # fmt: skip
    summary = tmp_path / "summary.json"
    assert main(["eval", "--dataset_dir", str(eval_dir), *common, "--reranker_name_or_path", str(models.reranker),
                 "--rerank_top_k", "3", "--eval_output_path", str(summary)]) == 0  # fmt: skip
    assert set(json.loads(summary.read_text())[models.dense.name]) == {"NoReranker", models.reranker.name}
    assert main(["eval", "--dataset_dir", str(other), *common, "--eval_output_path", str(summary)]) == 0
    # the reranked results of the first dataset stay on disk but not in this dataset's summary
    assert set(json.loads(summary.read_text())[models.dense.name]) == {"NoReranker"}
    assert "holds results of another dataset" in caplog.text

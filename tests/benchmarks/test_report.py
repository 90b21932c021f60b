"""benchmarks/report.py: the docs' benchmark page, rendered from the results files."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RESULT_FILES = sorted(RESULTS.glob("*.json"))


def _section(page: str, name: str) -> str:
    """The part of the page under the heading of results file ``name``."""
    for part in page.split("\n### ")[1:]:
        part = part.split("\n## ")[0]
        if re.search(rf"- \*\*Results file:\*\* `[^`]*/{re.escape(name)}`", part):
            return part
    raise AssertionError(f"no section for {name}")


def _copy(tmp_path: Path, name: str, change=None) -> Path:  # type: ignore[no-untyped-def]
    data = json.loads((RESULTS / name).read_text())
    if change is not None:
        change(data)
    (tmp_path / name).write_text(json.dumps(data))
    return tmp_path


def test_the_results_folder_is_not_empty():
    assert RESULT_FILES


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.name)
def test_every_results_file_gets_a_table_with_its_cpu_date_and_command(path):
    page = report.render()
    data = json.loads(path.read_text())
    section = _section(page, path.name)
    assert f"- **Results file:** `benchmarks/results/{path.name}`" in section
    assert f"- **CPU:** {data['cpu']}" in section
    assert "native bf16: " in section
    assert f"- **Date:** {data.get('date', report.NOT_RECORDED)}" in section
    assert f"- **Command:** `{data['command'].strip()}`" in section
    assert "- **Versions:** python " in section
    assert "\n| --- |" in section or "\n| --- | " in section


def test_page_starts_with_its_title_and_says_how_to_reproduce():
    page = report.render()
    assert page.startswith("# Benchmarks\n")
    assert "./dev.sh bench --focused" in page
    assert "## Summary" in page


def test_summary_links_point_at_headings_of_the_page():
    page = report.render()
    headings = {report._anchor(line[4:]) for line in page.splitlines() if line.startswith("### ")}
    links = [part.split(")")[0] for part in page.split("](#")[1:]]
    assert links and all(link in headings for link in links)


def test_the_bench_headline_is_ours_over_each_peer(tmp_path):
    page = report.render(_copy(tmp_path, "focused-amx.json"))
    data = json.loads((RESULTS / "focused-amx.json").read_text())
    rows = {(r["system"], r["shape"], r["busy"]): r["throughput"] for r in data["rows"]}
    ratio = rows[("ours", "minilm", False)] / rows[("st-openvino", "minilm", False)]
    assert "÷ ST + OpenVINO" in page
    assert f"| {ratio:.2f}x |" in page


def test_missing_date_and_versions_are_shown_as_not_recorded(tmp_path):
    def drop(data):
        data.pop("date", None)
        data.pop("versions", None)

    page = report.render(_copy(tmp_path, "latest.json", drop))
    assert "- **Date:** not recorded" in page
    assert "- **Versions:** not recorded" in page
    assert "date not recorded" in page  # the heading


@pytest.mark.parametrize("field", ["cpu", "command", "rows"])
def test_a_file_lacking_a_required_field_fails_naming_the_file(tmp_path, field):
    folder = _copy(tmp_path, "focused.json", lambda data: data.pop(field))
    shutil.copy(RESULTS / "latest.json", folder / "latest.json")
    with pytest.raises(report.ResultsError, match=rf"^focused\.json: .*{field}"):
        report.render(folder)


def test_a_row_lacking_a_field_fails_naming_the_file_and_the_row(tmp_path):
    folder = _copy(tmp_path, "latest.json", lambda data: data["rows"][3].pop("throughput"))
    with pytest.raises(report.ResultsError, match=r"^latest\.json: .*throughput in rows\[3\]"):
        report.render(folder)


def test_a_file_naming_no_known_script_fails_naming_the_file(tmp_path):
    (tmp_path / "mystery.json").write_text(json.dumps({"command": "python somewhere/else.py", "cpu": "x"}))
    with pytest.raises(report.ResultsError, match=r"^mystery\.json: .*names none of the scripts"):
        report.render(tmp_path)


def test_a_file_that_is_not_json_fails_naming_the_file(tmp_path):
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(report.ResultsError, match=r"^broken\.json: not valid JSON"):
        report.render(tmp_path)


def test_an_empty_folder_fails(tmp_path):
    with pytest.raises(report.ResultsError, match="no results files"):
        report.render(tmp_path)


def _deltas(rows: list[dict]) -> list[dict]:
    return [{**r, **{f"{m}_delta": round(r[m] - rows[0][m], 5) for m in ("ndcg_at_10", "recall_at_10")}} for r in rows]


PROVENANCE = {
    "date": "2026-12-07 15:00 UTC",
    "cpu": "Test CPU",
    "cpu_features": {"native_bf16": True, "flags": ["avx2", "avx512_bf16"]},
    "cores": 2,
    "versions": {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.0.0", "bge-rag": "0.1.0"},
}
SYNTHETIC = {
    "gpu.json": {
        **PROVENANCE,
        "command": "python benchmarks/gpu.py",
        "device": "Test GPU",
        "mode": "GPU run",
        "checks": [{"check": "fp32 parity", "shape": "bge-base", "max_abs_diff": 1e-6, "ok": True}],
        "throughput": [
            {"task": "dense", "shape": "bge-base", "system": "bge_core (defaults)", "texts_per_s": 900.0},
            {"task": "dense", "shape": "bge-base", "system": "FlagModel", "texts_per_s": 300.0, "ours_over_this": 3.0},
        ],
    },
    "llm.json": {
        **PROVENANCE,
        "command": "python benchmarks/llm_rerank.py --out x.json",
        "pairs": 8,
        "rounds": 2,
        "flag_best_batch": 2,
        "rows": [
            {"system": s, "pairs_per_s": v, "over_flag_default": v / 0.25, "over_flag_best": v / 0.5}
            for s, v in (("bge_core", 5.0), ("bge_core-fp32", 2.0), ("flag-default", 0.25), ("flag-best", 0.5))
        ],
    },
    "serve.json": {
        **PROVENANCE,
        "command": "python benchmarks/serve_load.py --out x.json",
        "rows": [
            {
                "server": "bge-rag serve (bf16)",
                "load": "query traffic",
                "requests_per_s": 300.0,
                "texts_per_s": 300.0,
                "p50_ms": 90.0,
                "p95_ms": 110.0,
                "wrong": 0,
            }
        ],
        "ratios": [{"load": "query traffic", "peer": "infinity-emb --dtype bfloat16", "ours_over_peer": 2.1}],
    },
    "streaming.json": {
        **PROVENANCE,
        "command": "python benchmarks/streaming_throughput.py --out x.json",
        "texts": 2000,
        "rows": [{"path": "one in-memory Embedder.encode call", "texts_per_s": 170.0, "over_in_memory": 1.0}],
    },
    "eval-speed.json": {
        **PROVENANCE,
        "command": "python benchmarks/eval_speed.py --out x.json",
        "dataset": {"label": "stdlib docstrings", "queries": 661, "corpus": 706, "python_version": "3.11.7"},
        "k_values": [1, 10, 100],
        "rows": [
            {
                "system": system,
                "label": label,
                "precision": precision,
                "median_seconds": seconds,
                "min_seconds": seconds - 1,
                "max_seconds": seconds + 1,
                "runs": 3,
                "ndcg_at_10": 0.49106,
                **({} if system == "flag" else {"speedup_over_flag": 90.0 / seconds}),
            }
            for system, label, precision, seconds in (
                ("flag", "python -m FlagEmbedding.evaluation.custom", "fp32", 90.0),
                ("bge-fp32", "bge-rag eval --precision fp32", "fp32", 30.0),
            )
        ],
    },
    "finetune-speed.json": {
        **PROVENANCE,
        "command": "python benchmarks/finetune_speed.py --out x.json",
        "settings": {"steps": 6, "batch_size": 8, "group_size": 4, "pairs_per_run": 192},
        "repeat": 2,
        "rows": [
            {
                "kind": "embedder",
                "system": system,
                "label": label,
                "precision": precision,
                "pairs_per_second": rate,
                "min_pairs_per_second": rate - 1,
                "max_pairs_per_second": rate + 1,
                "runs": 2,
                "command": f"python -m {label.split()[-1]} --max_steps 6",
                **({} if system == "flag" else {"over_flag": rate / 20.0}),
            }
            for system, label, precision, rate in (
                ("flag", "python -m FlagEmbedding.finetune.embedder.encoder_only.base", "fp32", 20.0),
                ("bge-fp32", "bge-rag finetune embedder", "fp32", 25.0),
            )
        ],
    },
    "finetune-quality.json": {
        **PROVENANCE,
        "command": "python benchmarks/finetune_quality.py --out x.json",
        "dataset": {
            "label": "stdlib docstrings",
            "corpus": 706,
            "split_sizes": {"train": 388, "dev": 133, "test": 140},
        },
        "settings": {"epochs": 1, "batch_size": 16, "group_size": 4},
        "commands": [{"step": "mine", "command": "python -m bge_rag mine-negatives --seed 42", "seconds": 16.0}],
        "rows": _deltas(
            [
                {"variant": "zero-shot", "ndcg_at_10": 0.5, "recall_at_10": 0.7, "mrr_at_10": 0.45},
                {
                    "variant": "fine-tuned, 3 mined negatives",
                    "ndcg_at_10": 0.55,
                    "recall_at_10": 0.74,
                    "mrr_at_10": 0.5,
                },
            ]
        ),
    },
    "bf16.json": {
        **PROVENANCE,
        "command": "python benchmarks/bf16_deviation.py --out x.json",
        "rows": [{"fixture": "MiniLM", "precision": "bfloat16", "dense_min_cosine": 0.9999}],
    },
    "storage.json": {
        **PROVENANCE,
        "command": "python benchmarks/storage_accuracy.py --out x.json",
        "docs": 300,
        "rows": [
            {
                "storage": "int8",
                "bytes_per_value": 1,
                "dense_max_abs_error": 3e-3,
                "dense_min_cosine": 0.999,
                "dense_score_change": 5e-3,
                "colbert_score_change": 7e-4,
            }
        ],
    },
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_each_script_kind_renders_with_its_provenance(tmp_path, name):
    (tmp_path / name).write_text(json.dumps(SYNTHETIC[name]))
    section = _section(report.render(tmp_path), name)
    assert "- **CPU:** Test CPU, 2 cores, native bf16: yes (avx2, avx512_bf16)" in section
    assert "- **Date:** 2026-12-07 15:00 UTC" in section
    assert "- **Versions:** python 3.11.7, torch 2.13.0, transformers 5.0.0, bge-rag 0.1.0" in section
    assert "\n| --- |" in section


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_each_script_kind_names_the_file_when_a_field_is_missing(tmp_path, name):
    data = dict(SYNTHETIC[name])
    data.pop("cpu")
    (tmp_path / name).write_text(json.dumps(data))
    with pytest.raises(report.ResultsError, match="^" + re.escape(name) + ": .*cpu"):
        report.render(tmp_path)


def test_cli_prints_the_page_or_writes_it(tmp_path, capsys):
    assert report.main([]) == 0
    assert capsys.readouterr().out == report.render()
    out = tmp_path / "docs" / "benchmarks.md"
    assert report.main(["--out", str(out)]) == 0
    assert out.read_text() == report.render()


def test_a_gpu_dry_run_is_marked_and_kept_out_of_the_summary(tmp_path):
    (tmp_path / "gpu.json").write_text(json.dumps({**SYNTHETIC["gpu.json"], "mode": "dry run (CPU, tiny models)"}))
    page = report.render(tmp_path)
    assert "not a measurement" in _section(page, "gpu.json")
    assert "## Summary" not in page
    assert "- **Reranker:**" not in page


def test_render_works_when_loaded_as_the_mkdocs_hook_loads_it():
    # hooks/generated_pages.py loads the file by path, without registering it in sys.modules.
    spec = importlib.util.spec_from_file_location("report_by_path", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == report.render()


def test_cli_refuses_to_write_the_page_into_docs():
    with pytest.raises(SystemExit):
        report.main(["--out", str(ROOT / "docs" / "benchmarks.md")])
    assert not (ROOT / "docs" / "benchmarks.md").exists()


def test_the_eval_speed_headline_is_flag_time_over_bge_rag_time(tmp_path):
    (tmp_path / "eval-speed.json").write_text(json.dumps(SYNTHETIC["eval-speed.json"]))
    page = report.render(tmp_path)
    section = _section(page, "eval-speed.json")
    assert "661 queries, 706 documents (stdlib docstrings, Python 3.11.7); k 1 10 100" in section
    assert "| `bge-rag eval --precision fp32` | fp32 | 30.0 | 29.0-31.0 | 3 | 0.4911 | 3.00x |" in section
    assert "| `python -m FlagEmbedding.evaluation.custom` | fp32 | 90.0 | 89.0-91.0 | 3 | 0.4911 |  |" in section
    assert "| `bge-rag eval` fp32 ÷ FlagEmbedding's evaluation, wall time | 3.00x |" in page


def test_an_eval_speed_run_of_flag_embedding_alone_renders_without_a_summary(tmp_path):
    data = json.loads(json.dumps(SYNTHETIC["eval-speed.json"]))
    data["rows"] = data["rows"][:1]
    (tmp_path / "eval-speed.json").write_text(json.dumps(data))
    page = report.render(tmp_path)
    assert "## Summary" not in page
    assert "- **Reranker:**" not in page
    assert "| `python -m FlagEmbedding.evaluation.custom` | fp32 | 90.0 |" in _section(page, "eval-speed.json")


def test_an_eval_speed_run_with_a_reranker_names_it(tmp_path):
    data = {**SYNTHETIC["eval-speed.json"], "reranker": "/models/reranker", "rerank_top_k": 100}
    (tmp_path / "eval-speed.json").write_text(json.dumps(data))
    section = _section(report.render(tmp_path), "eval-speed.json")
    assert "- **Reranker:** /models/reranker, reranking each query's top 100" in section


def test_the_finetune_speed_headline_is_bge_rag_over_flag_embedding(tmp_path):
    (tmp_path / "finetune-speed.json").write_text(json.dumps(SYNTHETIC["finetune-speed.json"]))
    page = report.render(tmp_path)
    section = _section(page, "finetune-speed.json")
    assert "6 steps x 8 queries x group size 4 = 192 (query, passage) pairs a run" in section
    assert "| embedder | `bge-rag finetune embedder` | fp32 | 25.0 | 24.0-26.0 | 2 | 1.25x |" in section
    assert "| embedder | `python -m FlagEmbedding.finetune.embedder.encoder_only.base` | fp32 | 20.0 |" in section
    assert "| fine-tuning, embedder, `bge-rag finetune embedder` ÷ FlagEmbedding's runner | 1.25x |" in page
    assert "    python -m FlagEmbedding.finetune.embedder.encoder_only.base --max_steps 6" in section


def test_the_finetune_quality_table_gives_each_variant_and_its_change_from_zero_shot(tmp_path):
    (tmp_path / "finetune-quality.json").write_text(json.dumps(SYNTHETIC["finetune-quality.json"]))
    page = report.render(tmp_path)
    section = _section(page, "finetune-quality.json")
    assert "(train 388, dev 133, test 140)" in section
    assert "| zero-shot | 0.5000 | 0.7000 | 0.4500 |  |  |" in section
    assert "| fine-tuned, 3 mined negatives | 0.5500 | 0.7400 | 0.5000 | +0.0500 | +0.0400 |" in section
    assert "python -m bge_rag mine-negatives --seed 42  # 16.0 s" in section
    assert "## Summary" not in page

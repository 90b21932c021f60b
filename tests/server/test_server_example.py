"""examples/server_client.py runs offline (its own server on fixture models) and prints what it promises."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "server_client.py"


@pytest.mark.slow
def test_server_client_example_runs_offline(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("server_client_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--offline-fixture", "--docs", "40"])
    assert module.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Server: m3-fixture + reranker reranker-fixture"
    assert lines[1].startswith("OpenAI client: 3 vectors of 256 dims (dimensions=256)")
    assert "top 10 of 40 by dense similarity" in lines[4]
    assert [line.split(".")[0].strip() for line in lines[5:8]] == ["1", "2", "3"]
    assert all("rerank" in line for line in lines[5:8])
    assert lines[-1].startswith("Sparse top tokens of the query: exception")


def test_no_server_gives_a_one_line_hint(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("server_client_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--url", f"http://127.0.0.1:{port}"])
    assert module.main() == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "No bge-rag server answers there" in captured.err
    assert "Traceback" not in captured.err and "--offline-fixture" in captured.err

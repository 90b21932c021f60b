"""examples/server_client.py runs offline (its own server on fixture models) and prints what it promises."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "server_client.py"


def test_server_client_example_runs_offline(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("server_client_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--offline-fixture", "--docs", "40"])
    module.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Server: m3-fixture + reranker reranker-fixture"
    assert lines[1].startswith("OpenAI client: 3 vectors of 256 dims (dimensions=256)")
    assert "top 10 of 40 by dense similarity" in lines[4]
    assert [line.split(".")[0].strip() for line in lines[5:8]] == ["1", "2", "3"]
    assert all("rerank" in line for line in lines[5:8])
    assert lines[-1].startswith("Sparse top tokens of the query: exception")

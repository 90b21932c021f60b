"""benchmarks/gpu.py --dry-run: the GPU script runs end to end (tiny models, CPU), so it cannot rot.

No timing is asserted: the dry run's throughput figures are not measurements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu  # noqa: E402


@pytest.mark.parity
@pytest.mark.slow
def test_gpu_dry_run_end_to_end(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"].startswith("dry run")
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["fp32 parity vs FlagModel"]["ok"] and checks["fp32 parity vs FlagModel"]["max_abs_diff"] <= 1e-4
    assert any(name.startswith("default precision") and c["ok"] for name, c in checks.items())
    assert checks["OOM back-off"]["splits"] > 0 and checks["OOM back-off"]["ok"]
    rows = [r for r in report["throughput"] if "sweep" not in r]
    systems = {r["system"] for r in rows}
    for expected in (
        "bge_core (defaults)",
        "bge_core, prefetch off",
        "FlagModel (defaults, batch 256)",
        "sentence-transformers fp32",
        "bge_core Reranker (defaults)",
        "FlagReranker (defaults)",
    ):
        assert expected in systems, systems
    assert any(s.startswith("FlagModel best batch (") for s in systems)
    for row in rows:  # every system ran (no peer failed silently)
        assert row.get("texts_per_s", 0) > 0, row
    assert "| check |" in result.stdout and "| task |" in result.stdout


def test_padding_waste_of_fixed_and_budget_batches():
    from bge_core.batching import plan_batches

    lengths = [100, 10, 10, 10]
    fixed = gpu.fixed_batches(lengths, 4)
    assert [b.tolist() for b in fixed] == [[0, 1, 2, 3]]
    assert gpu.padding_waste(lengths, fixed) == 1 - 130 / 400
    budget = plan_batches(lengths, 256, 100)  # the long text alone, the short ones together
    assert gpu.padding_waste(lengths, budget) == 0.0
    assert gpu.padding_waste([], []) == 0.0


def test_cosines():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert gpu.cosines(a, a * 3).tolist() == [1.0, 1.0]

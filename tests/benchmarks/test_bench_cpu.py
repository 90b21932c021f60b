"""benchmarks/bench.py helpers: model shapes from the real configurations, FLOP counts, the table."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench  # noqa: E402


def test_shapes_are_the_real_bge_configurations():
    base, large = bench.SHAPES["bge-base"], bench.SHAPES["bge-large"]
    assert (base["num_hidden_layers"], base["hidden_size"], base["intermediate_size"]) == (12, 768, 3072)
    assert (large["num_hidden_layers"], large["hidden_size"], large["intermediate_size"]) == (24, 1024, 4096)
    few = bench.SHAPES["bge-large-4l"]
    assert few["hidden_size"] == 1024 and few["intermediate_size"] == 4096 and few["num_hidden_layers"] == 4


def test_model_flops_counts_linear_layers_and_attention():
    config = SimpleNamespace(hidden_size=8, intermediate_size=32, num_hidden_layers=2)
    per_token = 2 * 2 * (4 * 64 + 2 * 8 * 32)
    assert bench.model_flops(config, [3]) == per_token * 3 + 2 * 4 * 9 * 8


def test_table_shows_busy_rows_and_drop():
    row = {
        "task": "dense",
        "shape": "bge-base",
        "corpus": "realistic",
        "busy": True,
        "label": "bge_core",
        "throughput": 50.0,
        "ours_over_this": 1.0,
        "quiet_over_busy": 1.6,
        "peak_rss_mb": 900.0,
        "mfu": 0.3,
        "mfu_peak": "bf16",
    }
    report = {
        "machine": {"cores": 2, "available_cpus": 2, "native_bf16": True},
        "matmul_peak_gflops": {"fp32": 100.0, "bf16": 400.0},
        "cpu": "x",
        "rows": [row],
    }
    table = bench.render_table(report)
    assert (
        "| dense | bge-base | realistic | 1 core busy | bge_core | 50.0 | 1.00x | 1.60x | 900 | 30% (bf16) |" in table
    )


def test_busy_process_starts_and_stops():
    spinner = bench.start_busy()
    assert spinner.poll() is None
    bench.stop_busy(spinner)
    assert spinner.poll() is not None

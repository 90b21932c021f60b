"""benchmarks/finetune_quality.py and finetune_speed.py helpers: the split, the negatives, the timings (no training)."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import finetune_quality  # noqa: E402
import finetune_speed  # noqa: E402

IDS = [
    f"{p}.f{i}" for p, n in (("logging", 30), ("json", 10), ("email", 20), ("csv", 5), ("ast", 35)) for i in range(n)
]
IDS += [f"logging.handlers.H{i}" for i in range(10)]


def test_the_split_keeps_each_top_level_package_on_one_side():
    splits = finetune_quality.split_by_package(IDS)
    assert set(splits) == set(IDS)
    for package in {finetune_quality.package(i) for i in IDS}:
        assert len({splits[i] for i in IDS if finetune_quality.package(i) == package}) == 1
    assert splits["logging.handlers.H0"] == splits["logging.f0"]


def test_the_split_is_deterministic_and_fills_test_and_dev_first():
    splits = finetune_quality.split_by_package(IDS)
    assert splits == finetune_quality.split_by_package(list(reversed(IDS)))
    counts = {s: sum(1 for v in splits.values() if v == s) for s in ("train", "dev", "test")}
    assert counts["test"] >= 0.2 * len(IDS) and counts["dev"] >= 0.2 * len(IDS) and counts["train"] > 0


def test_random_negatives_are_distinct_and_never_the_positive():
    pool = [f"d{i}" for i in range(10)]
    negatives = finetune_quality.random_negatives("d3", pool, 7, random.Random(0))
    assert len(set(negatives)) == 7 and "d3" not in negatives
    assert negatives == finetune_quality.random_negatives("d3", pool, 7, random.Random(0))


def test_train_runtime_is_the_last_one_the_trainer_logged():
    log = "{'loss': '2.1'}\n{'train_runtime': '12.5', 'train_samples_per_second': '3.2'}\n"
    assert finetune_speed.train_runtime(log) == 12.5
    assert finetune_speed.train_runtime("{'train_runtime': 7.25, 'epoch': 1.0}") == 7.25


def test_both_runners_get_the_same_arguments_and_bf16_only_adds_the_flag():
    args = SimpleNamespace(group_size=4, batch_size=8, steps=6, seed=42, passage_max_len=128)
    options = finetune_speed.options("embedder", args, "/m", "out")
    runner = Path("/tmp/flag_runner.py")
    flag = finetune_speed.command("flag", "embedder", runner, options)
    ours = finetune_speed.command("bge-fp32", "embedder", runner, options)
    bf16 = finetune_speed.command("bge-bf16", "embedder", runner, options)
    assert flag[2] == "FlagEmbedding.finetune.embedder.encoder_only.base" and flag[3:] == options
    assert ours[1:5] == ["-m", "bge_rag", "finetune", "embedder"] and ours[5:] == options
    assert bf16 == [*ours, "--bf16", "--use_cpu", "True"]
    assert finetune_speed._shown(flag, "/m", runner).startswith(
        "python -m FlagEmbedding.finetune.embedder.encoder_only.base --model_name_or_path '<minilm>'"
    )


def test_rows_take_medians_and_divide_by_flag_embedding():
    runs = [
        {
            "kind": "embedder",
            "system": s,
            "pairs_per_second": v,
            "train_seconds": 1.0,
            "wall_seconds": 2.0,
            "command": "c",
        }
        for s, v in (("flag", 10.0), ("flag", 12.0), ("bge-fp32", 15.0), ("bge-fp32", 9.0))
    ]
    rows = finetune_speed.rows_of(runs, ["embedder"], ["flag", "bge-fp32", "bge-bf16"])
    assert [r["system"] for r in rows] == ["flag", "bge-fp32"]
    assert rows[0]["pairs_per_second"] == 11.0 and "over_flag" not in rows[0]
    assert rows[1]["over_flag"] == 12.0 / 11.0

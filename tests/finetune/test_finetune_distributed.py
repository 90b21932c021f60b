"""Data parallelism through torchrun: two gloo processes on this CPU against one process.

- ``--negatives_cross_device``: two processes of batch B give the loss and the weights of one
  process with batch 2B (every passage of both ranks is a negative of every query, as
  FlagEmbedding gathers them).
- without it: two processes of batch B equal one process of batch B accumulating two batches
  (``--gradient_accumulation_steps 2``).

SGD (see ``_finetune_support.one_step``) and a dropout-free copy of the real MiniLM weights;
``--logging_steps 1`` so the loss reported is averaged over the processes at every step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _finetune_support import training_rows, without_dropout
from _mining_support import write_lines
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(models, paragraphs, tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("ddp")
    folder = without_dropout(models.minilm, root / "minilm-nodrop")
    data = write_lines(root / "train.jsonl", training_rows(paragraphs, n=8, negatives=2))
    common = (
        f"--model_name_or_path {folder} --train_data {data} --train_group_size 3 --query_max_len 16 "
        "--passage_max_len 48 --max_steps 2 --optim sgd --learning_rate 0.01 --lr_scheduler_type constant "
        "--save_strategy no --report_to none --seed 7 --use_cpu --disable_tqdm True --dataloader_pin_memory False "
        "--logging_steps 1"
    ).split()
    return root, common


_RUNS: dict[str, tuple[dict, dict]] = {}


def _run(root: Path, name: str, args: list[str], processes: int = 1) -> tuple[dict, dict]:
    if name not in _RUNS:
        _RUNS[name] = _train(root / name, args, processes)
    return _RUNS[name]


def _train(out: Path, args: list[str], processes: int) -> tuple[dict, dict]:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [sys.executable, "-m", "bge_rag"]
    if processes > 1:
        launcher = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "bge_rag",
        ]  # fmt: skip
        args = [*args, "--ddp_backend", "gloo"]
    done = subprocess.run(
        [*launcher, "finetune", "embedder", *args, "--output_dir", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "finetune_results.json").read_text())
    return results, load_file(out / "model.safetensors")


def _close(a: dict, b: dict, atol: float) -> float:
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, worst
    return worst


def test_cross_device_negatives_equal_one_process_on_the_combined_batch(setup, models):
    root, common = setup
    one, one_weights = _run(root, "one-b4", [*common, "--per_device_train_batch_size", "4"])
    two, two_weights = _run(
        root, "two-b2-xdev", [*common, "--per_device_train_batch_size", "2", "--negatives_cross_device"], processes=2
    )
    assert abs(one["train"]["train_loss"] - two["train"]["train_loss"]) <= 1e-5
    _close(one_weights, two_weights, 1e-6)
    base = load_file(Path(models.minilm) / "model.safetensors")
    assert max((one_weights[k] - base[k]).abs().max().item() for k in one_weights) > 1e-4  # it trained
    # Without the gathering, each rank sees its own passages only: a different (smaller) loss.
    local, _ = _run(root, "two-b2", [*common, "--per_device_train_batch_size", "2"], processes=2)
    assert abs(local["train"]["train_loss"] - one["train"]["train_loss"]) > 1e-3


def test_two_processes_equal_gradient_accumulation(setup):
    root, common = setup
    accumulated, acc_weights = _run(
        root, "one-b2-acc2", [*common, "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2"]
    )
    two, two_weights = _run(root, "two-b2", [*common, "--per_device_train_batch_size", "2"], processes=2)
    assert abs(accumulated["train"]["train_loss"] - two["train"]["train_loss"]) <= 1e-5
    _close(acc_weights, two_weights, 1e-6)

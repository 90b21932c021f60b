"""Training throughput of ``bge-rag finetune`` against FlagEmbedding's own fine-tuning runners.

Both get the same command-line arguments (FlagEmbedding's names), the same training file, the same
checkpoint and seed, on the same machine: ``python -m FlagEmbedding.finetune.embedder.encoder_only.base
ARGS`` against ``python -m bge_rag finetune embedder ARGS`` (and, for rerankers,
``FlagEmbedding.finetune.reranker.encoder_only.base`` against ``bge_rag finetune reranker``). Each
run is a fresh process with a fresh output folder; systems alternate within each round (the order
rotates from round to round) and the median over rounds is reported.

Throughput is (query, passage) pairs per second of training: ``max_steps * batch * group size``
divided by the ``train_runtime`` the Hugging Face ``Trainer`` logs at the end of ``train()`` (both
runners train with it), so loading the model and the data, and saving it, count for neither.

Systems:

- ``flag``: FlagEmbedding's runner; fp32 on the CPU,
- ``bge-fp32``: ``bge-rag finetune`` with the identical argument list (fp32),
- ``bge-bf16``: the same plus ``--bf16 --use_cpu True`` (Hugging Face refuses ``--bf16`` on a
  machine without a GPU unless ``--use_cpu`` is given; autocast to bf16 on the CPU; fast only where the CPU
  computes bf16 natively: ``avx512_bf16`` / ``amx_bf16``, recorded with the CPU).

The data are the standard-library docstrings of :mod:`bge_rag.evaluation.stdlib_docs` (query: a
docstring's first sentence, positive: the rest of it) with random other documents as negatives;
the checkpoint is all-MiniLM-L6-v2 with its real weights (mean pooling).

    python benchmarks/finetune_speed.py [--steps 8] [--batch-size 8] [--group-size 4] [--passage-max-len 128]
        [--repeat 3]
        [--kinds embedder,reranker] [--systems flag,bge-fp32,bge-bf16]
        [--out benchmarks/results/finetune-speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL_LABEL = "<minilm>"

#: kind -> FlagEmbedding's module (bge-rag: ``python -m bge_rag finetune KIND``).
FLAG_MODULES = {
    "embedder": "FlagEmbedding.finetune.embedder.encoder_only.base",
    "reranker": "FlagEmbedding.finetune.reranker.encoder_only.base",
}
#: system -> (label, precision).
SYSTEMS: dict[str, tuple[str, str]] = {
    "flag": ("python -m FlagEmbedding.finetune.{kind}.encoder_only.base", "fp32"),
    "bge-fp32": ("bge-rag finetune {kind}", "fp32"),
    "bge-bf16": ("bge-rag finetune {kind} --bf16 --use_cpu True", "bf16 autocast"),
}
BASELINE = "flag"

#: Starts FlagEmbedding's runner (installs the import stand-in transformers 5 needs, then runs the module).
FLAG_RUNNER = ROOT / "benchmarks" / "flag_runner.py"

_RUNTIME = re.compile(r"""['"]train_runtime['"]:\s*['"]?([0-9.]+)""")


def train_runtime(log: str) -> float:
    """The last ``train_runtime`` the Trainer logged (seconds), from a run's output."""
    found = _RUNTIME.findall(log)
    if not found:
        raise ValueError("no train_runtime in the run's output")
    return float(found[-1])


def options(kind: str, args: argparse.Namespace, model: str, out: str) -> list[str]:
    """The argument list both runners get (FlagEmbedding's names)."""
    shared = [
        *("--model_name_or_path", model, "--train_data", "train.jsonl", "--output_dir", out),
        *("--train_group_size", str(args.group_size), "--query_max_len", "64"),
        *("--passage_max_len", str(args.passage_max_len)),
        *("--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(args.steps)),
        *("--learning_rate", "3e-5", "--seed", str(args.seed), "--save_strategy", "no"),
        *("--logging_steps", str(args.steps), "--report_to", "none", "--disable_tqdm", "True"),
        *("--dataloader_num_workers", "0", "--cache_path", f"{out}-cache"),
    ]
    if kind == "embedder":
        shared += ["--sentence_pooling_method", "mean", "--temperature", "0.02"]
    return shared


def command(system: str, kind: str, runner: Path, arguments: list[str]) -> list[str]:
    if system == "flag":
        return [sys.executable, str(runner), FLAG_MODULES[kind], *arguments]
    # Hugging Face refuses --bf16 without a GPU unless --use_cpu says the CPU is meant.
    bf16 = ["--bf16", "--use_cpu", "True"] if system == "bge-bf16" else []
    return [sys.executable, "-m", "bge_rag", "finetune", kind, *arguments, *bf16]


def _shown(cmd: list[str], model: str, runner: Path) -> str:
    words = ["python", *cmd[1:]]
    if words[1] == str(runner):
        words[1:3] = ["-m", words[2]]  # the launcher only installs the import stand-in
    return shlex.join(MODEL_LABEL if w == model else w for w in words)


def _run(system: str, kind: str, runner: Path, args: argparse.Namespace, model: str, work: Path) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix=f"{kind}-{system}-", dir=work)
    os.rmdir(out)  # both runners want a new folder
    cmd = command(system, kind, runner, options(kind, args, model, Path(out).name))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_CACHE": f"{out}-cache",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    log = done.stdout + done.stderr
    Path(f"{out}.log").write_text(log, encoding="utf-8")
    if done.returncode != 0:
        raise SystemExit(f"{kind} {system} failed (exit {done.returncode}): {shlex.join(cmd)}\n{log[-4000:]}")
    seconds = train_runtime(log)
    pairs = args.steps * args.batch_size * args.group_size
    return {
        "kind": kind,
        "system": system,
        "train_seconds": seconds,
        "wall_seconds": round(wall, 2),
        "pairs_per_second": pairs / seconds,
        "command": _shown(cmd, model, runner),
    }


def rows_of(runs: list[dict[str, Any]], kinds: list[str], systems: list[str]) -> list[dict[str, Any]]:
    """One row per (kind, system): medians over rounds, and the ratio to FlagEmbedding's."""
    rows = []
    for kind in kinds:
        mine = []
        for system in systems:
            these = [r for r in runs if r["kind"] == kind and r["system"] == system]
            if not these:
                continue
            rate = [r["pairs_per_second"] for r in these]
            label, precision = SYSTEMS[system]
            mine.append(
                {
                    "kind": kind,
                    "system": system,
                    "label": label.format(kind=kind),
                    "precision": precision,
                    "pairs_per_second": statistics.median(rate),
                    "min_pairs_per_second": min(rate),
                    "max_pairs_per_second": max(rate),
                    "train_seconds": statistics.median(r["train_seconds"] for r in these),
                    "wall_seconds": statistics.median(r["wall_seconds"] for r in these),
                    "runs": len(these),
                    "command": these[-1]["command"],
                }
            )
        base = next((r for r in mine if r["system"] == BASELINE), None)
        for row in mine:
            if base is not None and row is not base:
                row["over_flag"] = row["pairs_per_second"] / base["pairs_per_second"]
        rows += mine
    return rows


def _train_file(path: Path, negatives: int, seed: int) -> int:
    from bge_rag.evaluation.stdlib_docs import build_stdlib_docs

    corpus, queries, _ = build_stdlib_docs()
    rng = random.Random(seed)
    ids = list(corpus)
    lines = []
    for qid, text in queries.items():
        neg = rng.sample([d for d in ids if d != qid], negatives)
        lines.append({"query": text, "pos": [corpus[qid]["text"]], "neg": [corpus[d]["text"] for d in neg]})
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="--max_steps of every run")
    parser.add_argument("--batch-size", type=int, default=8, help="--per_device_train_batch_size")
    parser.add_argument("--group-size", type=int, default=4, help="--train_group_size")
    parser.add_argument("--passage-max-len", type=int, default=128, help="--passage_max_len")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each system once a round)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--kinds", default="embedder,reranker", help="comma-separated: embedder, reranker")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of: " + ", ".join(SYSTEMS))
    parser.add_argument("--out", help="also write the results as JSON here (for benchmarks/report.py)")
    args = parser.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not systems or any(s not in SYSTEMS for s in systems):
        parser.error(f"--systems: valid names are {', '.join(SYSTEMS)}")
    if not kinds or any(k not in FLAG_MODULES for k in kinds):
        parser.error(f"--kinds: valid names are {', '.join(FLAG_MODULES)}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance

    from bge_rag.testing import minilm_folder

    recorded = (
        provenance("benchmarks/finetune_speed.py", peers=("FlagEmbedding", "sentence-transformers", "accelerate"))
        if args.out
        else None
    )
    wall_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bge-finetune-speed-"))
    runner = FLAG_RUNNER
    model = str(minilm_folder())
    lines = _train_file(work / "train.jsonl", args.group_size - 1, args.seed)
    pairs = args.steps * args.batch_size * args.group_size
    print(f"{lines} training lines; {args.steps} steps x {args.batch_size} queries x {args.group_size} = {pairs} pairs")

    runs: list[dict[str, Any]] = []
    for round_ in range(args.repeat):
        for kind in kinds:
            shift = round_ % len(systems)
            for system in systems[shift:] + systems[:shift]:
                run = _run(system, kind, runner, args, model, work)
                runs.append({**run, "round": round_})
                print(
                    f"round {round_ + 1} {kind:8s} {system:9s} train {run['train_seconds']:7.2f} s "
                    f"({run['pairs_per_second']:6.1f} pairs/s), process {run['wall_seconds']:6.1f} s",
                    flush=True,
                )
    rows = rows_of(runs, kinds, systems)
    for row in rows:
        ratio = f"  ÷ FlagEmbedding {row['over_flag']:.2f}x" if "over_flag" in row else ""
        print(f"{row['kind']:8s} {row['label']:58s} {row['pairs_per_second']:7.1f} pairs/s{ratio}")
    wall = time.perf_counter() - wall_start
    print(f"{wall / 60:.1f} min")
    if recorded is None:
        return
    report = {
        **recorded,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "model": "all-MiniLM-L6-v2 (real weights, mean pooling; <minilm> in the commands)",
        "dataset": {
            "label": "Python standard-library docstrings (bge_rag.evaluation.stdlib_docs), random negatives",
            "lines": lines,
        },
        "settings": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "group_size": args.group_size,
            "pairs_per_run": pairs,
            "query_max_len": 64,
            "passage_max_len": args.passage_max_len,
            "seed": args.seed,
        },
        "repeat": args.repeat,
        "wall_seconds": round(wall, 1),
        "runs": runs,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

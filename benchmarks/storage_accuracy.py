"""Accuracy cost of float16 / int8 storage of dense and ColBERT outputs.

    python benchmarks/storage_accuracy.py [--model PATH_OR_ID] [--docs 300] [--out FILE.json]

Without --model it builds the offline M3-style fixture (MiniLM weights + deterministic heads).
Reports, over real paragraphs: max abs error per value, min cosine to the float32 vectors, and
max abs change of dense and ColBERT scores (all pairs of queries and documents).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from bge_core import Embedder, colbert_scores, dense_scores
from bge_core.storage import compress, decompress
from bge_rag.sample_data import python_docs_paragraphs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--out", help="also write the results as JSON here (for benchmarks/report.py)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance

    recorded = provenance("benchmarks/storage_accuracy.py") if args.out else None
    rows = []
    model = args.model
    if model is None:
        from bge_rag.testing import add_m3_heads, build_dense_model

        model = add_m3_heads(build_dense_model(tempfile.mkdtemp() + "/m3-fixture"))
    emb = Embedder(model, precision="fp32")
    texts = python_docs_paragraphs(limit=args.docs)
    docs = emb.encode(texts, dense=True, colbert=True)
    queries = emb.encode(texts[::10], kind="query", dense=True, colbert=True)
    exact_dense = dense_scores(queries.dense, docs.dense)
    exact_colbert = colbert_scores(queries.colbert, docs.colbert)
    print(f"model: {emb.model_name}  docs: {len(texts)}  queries: {len(texts[::10])}")
    print(
        f"{'storage':8} {'bytes/value':>11} {'dense max|err|':>15} {'dense min cos':>14} "
        f"{'dense score Δ':>14} {'colbert score Δ':>16}"
    )
    for storage, size in (("float16", 2), ("int8", 1)):
        dense = decompress(compress(docs.dense, storage))
        colbert = decompress(compress(docs.colbert, storage))
        cos = np.sum(dense * docs.dense, axis=1) / np.linalg.norm(dense, axis=1)
        row = {
            "storage": storage,
            "bytes_per_value": size,
            "dense_max_abs_error": float(np.abs(dense - docs.dense).max()),
            "dense_min_cosine": float(cos.min()),
            "dense_score_change": float(np.abs(dense_scores(queries.dense, dense) - exact_dense).max()),
            "colbert_score_change": float(np.abs(colbert_scores(queries.colbert, colbert) - exact_colbert).max()),
        }
        rows.append(row)
        print(
            f"{storage:8} {size:>11} {row['dense_max_abs_error']:>15.2e} {row['dense_min_cosine']:>14.6f} "
            f"{row['dense_score_change']:>14.2e} {row['colbert_score_change']:>16.2e}"
        )
    if recorded is not None:
        model_label = args.model or "M3-style fixture (MiniLM weights, deterministic sparse and ColBERT heads)"
        report = {**recorded, "model": model_label, "docs": len(texts), "queries": len(texts[::10]), "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"written {args.out}")


if __name__ == "__main__":
    main()

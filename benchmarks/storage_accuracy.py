"""Accuracy cost of float16 / int8 storage of dense and ColBERT outputs.

    python benchmarks/storage_accuracy.py [--model PATH_OR_ID] [--docs 300]

Without --model it builds the offline M3-style fixture (MiniLM weights + deterministic heads).
Reports, over real paragraphs: max abs error per value, min cosine to the float32 vectors, and
max abs change of dense and ColBERT scores (all pairs of queries and documents).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from bge_core import Embedder, colbert_scores, dense_scores
from bge_core.storage import compress, decompress
from bge_rag.sample_data import python_docs_paragraphs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()
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
        print(
            f"{storage:8} {size:>11} {np.abs(dense - docs.dense).max():>15.2e} {cos.min():>14.6f} "
            f"{np.abs(dense_scores(queries.dense, dense) - exact_dense).max():>14.2e} "
            f"{np.abs(colbert_scores(queries.colbert, colbert) - exact_colbert).max():>16.2e}"
        )


if __name__ == "__main__":
    main()

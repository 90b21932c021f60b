"""Hybrid retrieval with BGE-M3: dense + sparse candidates fused with RRF, ColBERT rescoring.

    python examples/m3_hybrid.py                      # BAAI/bge-m3 (downloads once)
    python examples/m3_hybrid.py --model /path/to/bge-m3
    python examples/m3_hybrid.py --offline-fixture    # no network: M3-style heads on MiniLM weights

The offline fixture has real backbone weights but deterministic untrained heads, so its
sparse and ColBERT rankings show the mechanics, not BGE-M3's quality.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np

from bge_core import (
    Embedder,
    ModelNotFoundError,
    colbert_scores,
    dense_scores,
    hybrid_scores,
    lexical_scores,
    reciprocal_rank_fusion,
)
from bge_rag.sample_data import python_docs_paragraphs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="BAAI/bge-m3")
    parser.add_argument("--offline-fixture", action="store_true")
    parser.add_argument("--query", default="How do I handle an exception with try and except?")
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()

    model = args.model
    if args.offline_fixture:
        from bge_rag.testing import add_m3_heads, build_dense_model

        model = add_m3_heads(build_dense_model(tempfile.mkdtemp() + "/m3-fixture"))
    try:
        m3 = Embedder(model, max_length=512)
    except ModelNotFoundError as exc:  # offline, and the model is not cached: say what to do instead
        print(
            f"{exc}\nOffline? Run with --offline-fixture (M3-style heads on the packaged MiniLM weights), "
            f"or pass --model /path/to/bge-m3.",
            file=sys.stderr,
        )
        raise SystemExit(2) from None

    docs = python_docs_paragraphs(limit=args.docs)
    corpus = m3.encode(docs, dense=True, sparse=True, colbert=True)  # one forward pass per batch
    query = m3.encode(args.query, kind="query", dense=True, sparse=True, colbert=True)

    # 1. candidates from two cheap indexes, fused by rank
    dense = dense_scores(query.dense, corpus.dense)
    sparse = lexical_scores(query.sparse, corpus.sparse)
    fused = reciprocal_rank_fusion([np.argsort(-dense)[:20].tolist(), np.argsort(-sparse)[:20].tolist()])
    candidates = [int(i) for i, _ in fused[:10]]

    # 2. rescoring of the candidates with all three signals (weights as in the BGE-M3 paper)
    colbert = colbert_scores(query.colbert, [corpus.colbert[i] for i in candidates])
    final = hybrid_scores(dense[candidates], sparse[candidates], colbert, weights=[0.4, 0.2, 0.4])

    print(f"query: {args.query}")
    print("top sparse tokens:", m3.decode_sparse(query.sparse, top_k=5))
    for rank, j in enumerate(np.argsort(-final)[:3], 1):
        i = candidates[j]
        print(
            f"{rank}. hybrid {final[j]:.3f} (dense {dense[i]:.3f}, sparse {sparse[i]:.3f}, "
            f"colbert {colbert[j]:.3f})  {docs[i][:90]}"
        )


if __name__ == "__main__":
    main()

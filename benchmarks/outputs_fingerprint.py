"""Save a fixed set of engine outputs, or compare two saved sets bit for bit.

For refactors that must not change a single bit: run it on the old tree and on the new one (each
with its own checkout on ``sys.path``), then compare. It covers dense vectors (CLS and mean
pooling, a decoder's last token), BGE-M3 sparse and ColBERT outputs and cross-encoder scores,
each at ``precision="fp32"`` and ``"bf16"``, on the offline fixture models built from real weights.

    python benchmarks/outputs_fingerprint.py save before.npz      # on the old tree
    python benchmarks/outputs_fingerprint.py save after.npz       # on the new tree
    python benchmarks/outputs_fingerprint.py compare before.npz after.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def save(path: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bge_core import Embedder, Reranker
    from bge_rag.sample_data import python_docs_paragraphs
    from bge_rag.testing import build_decoder_model, build_fixture_models

    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = build_fixture_models(Path(tmp) / "models")
        decoder = build_decoder_model(Path(tmp) / "qwen2", "qwen2")
        paragraphs = python_docs_paragraphs()[:80]
        queries = [" ".join(p.split()[:10]) for p in paragraphs[:40]]
        embedders = {
            "dense": models.dense,
            "minilm": models.minilm,
            "m3": models.m3,
            "xlmr_m3": models.xlmr_m3,
            "qwen2": decoder,
        }
        for precision in ("fp32", "bf16"):
            for name, folder in embedders.items():
                emb = Embedder(folder, precision=precision)
                out[f"{precision}/{name}/docs"] = emb.encode_documents(paragraphs)
                out[f"{precision}/{name}/queries"] = emb.encode_queries(queries)
                out[f"{precision}/{name}/one"] = emb.encode_queries(queries[0])
                if emb.has_head("sparse") and emb.has_head("colbert"):
                    enc = emb.encode(paragraphs[:30], sparse=True, colbert=True)
                    assert enc.sparse is not None and enc.colbert is not None
                    for i, (sparse, colbert) in enumerate(zip(enc.sparse, enc.colbert)):
                        out[f"{precision}/{name}/sparse{i}"] = np.concatenate(
                            [sparse.indices.astype(np.float64), sparse.values.astype(np.float64)]
                        )
                        out[f"{precision}/{name}/colbert{i}"] = colbert
            for name in ("reranker", "xlmr_reranker"):
                reranker = Reranker(getattr(models, name), precision=precision)
                out[f"{precision}/{name}/scores"] = np.array(reranker.score(list(zip(queries, paragraphs))))
    np.savez(path, **out)
    print(f"{len(out)} arrays written to {path}")


def compare(before: str, after: str) -> int:
    a, b = np.load(before), np.load(after)
    if sorted(a.files) != sorted(b.files):
        print("different keys:", sorted(set(a.files) ^ set(b.files)))
        return 1
    differing = [k for k in a.files if a[k].shape != b[k].shape or not np.array_equal(a[k], b[k])]
    print(f"{len(a.files)} arrays compared; {len(differing)} differ" + (f": {differing[:20]}" if differing else ""))
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("save").add_argument("path")
    cmp = sub.add_parser("compare")
    cmp.add_argument("before")
    cmp.add_argument("after")
    args = parser.parse_args()
    if args.command == "save":
        save(args.path)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())

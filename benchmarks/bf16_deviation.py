"""How far the default precision (bf16 on CPUs with native bf16) moves vectors from fp32.

Prints, per fixture model, the minimum cosine between bf16 and fp32 dense vectors (and for
BGE-M3 ColBERT token vectors, and the largest sparse-weight change), over real paragraphs
plus edge cases. Fixtures are built offline (``bge_rag.testing``); nothing is downloaded.

    python benchmarks/bf16_deviation.py [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from bge_core import Embedder
from bge_rag.sample_data import python_docs_paragraphs
from bge_rag.testing import add_m3_heads, build_decoder_model, build_dense_model, build_xlmr_model


def _texts() -> list[str]:
    paragraphs = python_docs_paragraphs()
    return [*paragraphs[:200], "", "bge", "Grüße aus Köln, 北京欢迎你 🙂", " ".join(paragraphs[300:340])]


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return float(np.sum(a * b, axis=-1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the results as JSON here (for benchmarks/report.py)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance

    recorded = provenance("benchmarks/bf16_deviation.py") if args.out else None
    rows = []
    texts = _texts()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = {
            "MiniLM BERT, CLS (dense)": (build_dense_model(root / "dense"), {}),
            "MiniLM BERT, mean (dense)": (root / "dense", {"pooling": "mean"}),
            "tiny XLM-R, BGE-M3 heads": (add_m3_heads(build_xlmr_model(root / "xlmr")), {}),
            "MiniLM BERT, BGE-M3 heads": (add_m3_heads(build_dense_model(root / "m3")), {}),
            "tiny Qwen2 (last token)": (build_decoder_model(root / "qwen2", "qwen2"), {}),
            "tiny Mistral bge-en-icl": (build_decoder_model(root / "bge-en-icl", "mistral"), {}),
        }
        print(f"{'fixture':32} {'precision':>9} {'dense min cos':>14} {'colbert min cos':>16} {'sparse max abs':>15}")
        for name, (folder, kwargs) in folders.items():
            fp32 = Embedder(folder, precision="fp32", **kwargs)
            auto = Embedder(folder, **kwargs)
            m3 = fp32.has_head("sparse")
            a = fp32.encode(texts, dense=True, sparse=m3, colbert=m3)
            b = auto.encode(texts, dense=True, sparse=m3, colbert=m3)
            precision = str(auto.dtype).replace("torch.", "")
            record = {"fixture": name, "precision": precision, "dense_min_cosine": _min_cos(a.dense, b.dense)}
            row = f"{name:32} {precision:>9} {record['dense_min_cosine']:14.6f}"
            if m3:
                colbert = min(_min_cos(x, y) for x, y in zip(a.colbert, b.colbert) if len(x))
                sparse = max(
                    max(
                        (
                            abs(x.to_dict().get(k, 0.0) - y.to_dict().get(k, 0.0))
                            for k in x.to_dict().keys() | y.to_dict().keys()
                        ),
                        default=0.0,
                    )
                    for x, y in zip(a.sparse, b.sparse)
                )
                row += f" {colbert:16.6f} {sparse:15.2e}"
                record.update(colbert_min_cosine=colbert, sparse_max_abs_change=sparse)
            print(row)
            rows.append(record)
    if recorded is not None:
        report = {**recorded, "texts": len(texts), "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""benchmarks/serve_load.py: the folder both servers get is read the same way by sentence-transformers
(what Infinity's torch engine loads) and by bge_core, so the comparison computes the same vectors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import serve_load  # noqa: E402

from bge_core import Embedder  # noqa: E402
from bge_core.testing import build_dense_model  # noqa: E402


def test_the_benchmark_folder_means_cls_pooling_and_normalize_to_both_engines(tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = serve_load.add_st_layout(build_dense_model(tmp_path / "m"))
    texts = ["what is a generator", "The for statement iterates over the items of any sequence, in order."]
    ours = Embedder(str(folder), precision="fp32").encode_documents(texts)
    st = SentenceTransformer(str(folder), device="cpu")
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Normalize"]
    assert st[1].get_config_dict()["pooling_mode"] == "cls"
    theirs = st.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(theirs, ours, atol=2e-5)
    # without the layout sentence-transformers mean-pools: the vectors would differ (the earlier bug)
    plain = SentenceTransformer(str(build_dense_model(tmp_path / "plain")), device="cpu").encode(texts)
    assert np.min(np.sum(plain / np.linalg.norm(plain, axis=1, keepdims=True) * ours, axis=1)) < 0.99

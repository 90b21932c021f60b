"""Helpers shared by the streaming and Ray tests: corpora and comparisons."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bge_core import Encoded


def corpus(paragraphs: Sequence[str], n: int, join: int = 1) -> list[str]:
    """``n`` distinct real texts of mixed length, each of ``join`` paragraphs."""
    return [f"{i}. " + " ".join(paragraphs[(i * 7 + k) % len(paragraphs)] for k in range(join)) for i in range(n)]


def write_jsonl(path: Path, texts: Sequence[str], ids: Sequence[object] | None = None) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            record = {"text": text} if ids is None else {"id": ids[i], "text": text}
            f.write(json.dumps(record) + "\n")
    return path


def assert_close(got: Encoded, want: Encoded, atol: float = 1e-6, sparse_atol: float = 1e-5) -> None:
    """Same outputs in the same order, up to float rounding from a different batch composition."""
    assert (got.dense is None) == (want.dense is None)
    if want.dense is not None:
        assert got.dense.dtype == np.float32 and got.dense.shape == want.dense.shape
        np.testing.assert_allclose(got.dense, want.dense, rtol=0, atol=atol)
    assert (got.sparse is None) == (want.sparse is None)
    if want.sparse is not None:
        assert len(got.sparse) == len(want.sparse)
        for a, b in zip(got.sparse, want.sparse):
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_allclose(a.values, b.values, rtol=0, atol=sparse_atol)
    assert (got.colbert is None) == (want.colbert is None)
    if want.colbert is not None:
        assert len(got.colbert) == len(want.colbert)
        for a, b in zip(got.colbert, want.colbert):
            assert a.dtype == np.float32 and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=atol)


def assert_identical(got: Encoded, want: Encoded) -> None:
    """Bit-identical outputs in the same order."""
    assert_close(got, want, atol=0.0, sparse_atol=0.0)

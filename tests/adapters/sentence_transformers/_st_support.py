"""Shared helpers of the sentence-transformers export tests (tests/adapters/sentence_transformers/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bge_core import Embedder

ATOL = 1e-5
SCORE_ATOL = 1e-4
#: Tokens per text for exports of the MiniLM fixtures (the tiny XLM-R ones keep the default 512).
MINILM_MAX_LENGTH = 128
#: sentence-transformers pads each batch to its longest text: small batches keep that cheap.
ST_BATCH = 8
QUERIES = [
    "What does the global statement do?",
    "how are exceptions handled",
    "bge",
    "",
    "Grüße aus Köln, 北京欢迎你",
]


def reference(folder: Path, **options) -> Embedder:
    """The engine the exports must agree with (fp32 on CPU)."""
    return Embedder(folder, precision="fp32", device="cpu", **options)


def length_options(models, folder: Path) -> dict:
    """``max_length`` for a fixture export: shorter for the MiniLM (BERT) fixtures."""
    return {} if folder in (models.xlmr_m3, models.xlmr_reranker) else {"max_length": MINILM_MAX_LENGTH}


def registry_named(models, tmp_path_factory: pytest.TempPathFactory, name: str, source: str) -> Path:
    """A folder named like a registered model (a symlink), so bge_core applies the registry's settings."""
    link = tmp_path_factory.mktemp("registry") / name
    link.symlink_to(getattr(models, source), target_is_directory=True)
    return link


def sparse_rows(matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, weights) of each row of a SparseEncoder output, ids ascending."""
    dense = matrix.to_dense().cpu().numpy() if hasattr(matrix, "to_dense") else np.asarray(matrix)
    return [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in dense]


def assert_same_sparse(rows, expected) -> None:
    assert len(rows) == len(expected)
    for (ids, weights), ref in zip(rows, expected):
        order = np.argsort(ref.indices)
        np.testing.assert_array_equal(ids, ref.indices[order])
        np.testing.assert_allclose(weights, ref.values[order], atol=ATOL, rtol=0)


def assert_same_colbert(vectors, expected) -> None:
    assert len(vectors) == len(expected)
    for ours, ref in zip(vectors, expected):
        ours = ours.cpu().numpy() if hasattr(ours, "cpu") else np.asarray(ours)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)

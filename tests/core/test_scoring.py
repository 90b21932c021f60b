"""Scoring helpers: shapes, definitions (checked against direct computations) and fusion."""

from __future__ import annotations

import numpy as np
import pytest

from bge_core import (
    ConfigError,
    InputTypeError,
    SparseVector,
    colbert_scores,
    dense_scores,
    hybrid_scores,
    lexical_scores,
    reciprocal_rank_fusion,
)

rng = np.random.default_rng(0)


def _unit(*shape):
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_dense_shapes_and_values():
    q, d = _unit(3, 8), _unit(5, 8)
    out = dense_scores(q, d)
    assert out.shape == (3, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, q @ d.T, rtol=1e-6)
    assert dense_scores(q[0], d).shape == (5,)
    assert dense_scores(q, d[0]).shape == (3,)
    assert isinstance(dense_scores(q[0], d[0]), float)


def _sparse(pairs):
    return SparseVector.from_dict(dict(pairs))


def test_lexical_scores_are_sums_over_shared_ids():
    a = _sparse({1: 0.5, 7: 2.0, 9: 1.0})
    b = _sparse({7: 0.25, 9: 3.0, 11: 4.0})
    c = _sparse({})
    out = lexical_scores([a, b, c], [a, b, c])
    expected = np.array([[0.25 + 4 + 1, 0.5 + 3, 0], [0.5 + 3, 0.0625 + 9 + 16, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert lexical_scores(a, b) == pytest.approx(a.dot(b)) == pytest.approx(3.5)
    assert lexical_scores(a, [b, c]).shape == (2,)


def test_lexical_scores_large_vocabulary_chunks(monkeypatch):
    import bge_core.scoring as scoring

    monkeypatch.setattr(scoring, "_LEXICAL_CELLS", 16)  # force many passage chunks
    vectors = [
        _sparse({int(i): float(w) for i, w in zip(rng.choice(1000, 20, replace=False), rng.random(20))})
        for _ in range(12)
    ]
    out = lexical_scores(vectors, vectors)
    direct = np.array([[a.dot(b) for b in vectors] for a in vectors])
    np.testing.assert_allclose(out, direct, rtol=1e-5)


def test_colbert_scores_definition():
    qs = [_unit(4, 6), _unit(1, 6)]
    ds = [_unit(7, 6), _unit(2, 6), np.zeros((0, 6), np.float32)]
    out = colbert_scores(qs, ds)
    for i, q in enumerate(qs):
        for j, d in enumerate(ds):
            expected = (q @ d.T).max(axis=1).mean() if len(d) else 0.0
            assert out[i, j] == pytest.approx(expected, abs=1e-6)
    assert isinstance(colbert_scores(qs[0], ds[0]), float)
    with pytest.raises(InputTypeError, match=r"documents\[0\]"):
        colbert_scores(qs, [np.zeros(6)])


def test_hybrid_weights():
    d, s, c = np.array([1.0, 0.0]), np.array([0.5, 2.0]), np.array([0.2, 0.4])
    np.testing.assert_allclose(hybrid_scores(d, s, c), (d + s + c) / 3, rtol=1e-6)
    np.testing.assert_allclose(hybrid_scores(d, s, c, [0.4, 0.2, 0.4]), (0.4 * d + 0.2 * s + 0.4 * c) / 1.0, rtol=1e-6)
    np.testing.assert_allclose(hybrid_scores(d, s, weights=[1, 0.3, 0]), (d + 0.3 * s) / 1.3, rtol=1e-6)
    with pytest.raises(ConfigError, match="colbert scores are missing"):
        hybrid_scores(d, s)
    for bad in ([1, 1], [-1, 1, 1], [0, 0, 0], [float("nan"), 1, 1]):
        with pytest.raises(ConfigError, match="weights"):
            hybrid_scores(d, s, c, bad)


def test_reciprocal_rank_fusion():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=60)
    scores = dict(fused)
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [x for x, _ in fused] == ["b", "c", "a", "d"]
    weighted = dict(reciprocal_rank_fusion([[1, 2], [2, 1]], k=0, weights=[2.0, 1.0]))
    assert weighted[1] == pytest.approx(2 / 1 + 1 / 2) and weighted[2] == pytest.approx(2 / 2 + 1 / 1)
    assert reciprocal_rank_fusion([["x", "y"], ["y", "x"]])[0][0] == "x"  # tie: first appearance wins
    with pytest.raises(ConfigError):
        reciprocal_rank_fusion([[1]], weights=[1, 2])


def test_lexical_scores_with_empty_vectors():
    empty = SparseVector.from_dict({})
    docs = [_sparse({1: 1.0}), empty]
    np.testing.assert_array_equal(lexical_scores([empty, empty], docs), np.zeros((2, 2), np.float32))
    assert lexical_scores(empty, docs[0]) == 0.0
    assert lexical_scores([], docs).shape == (0, 2) and lexical_scores(docs, []).shape == (2, 0)

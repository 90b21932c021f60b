"""Similarity scores for dense, sparse and ColBERT outputs, their hybrid, and rank fusion.

All functions take numpy (or bge_core types) and return numpy, batched: ``X_scores(queries,
documents)`` gives a ``(n_queries, n_documents)`` float32 matrix, with a single query or
document given as a 1-D vector / one ``SparseVector`` / one matrix dropping that axis. The
definitions are FlagEmbedding's:

- dense: inner product (cosine for normalized vectors);
- lexical (sparse): sum over shared token ids of the product of weights;
- ColBERT: ``(1 / |q|) * sum_i max_j q_i . p_j``;
- hybrid: ``(w0 * dense + w1 * sparse + w2 * colbert) / (w0 + w1 + w2)``, weights ordered
  [dense, sparse, colbert].
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from .errors import ConfigError, InputTypeError
from .types import SparseVector

SparseInput = SparseVector | Sequence[SparseVector]
ColbertInput = np.ndarray | Sequence[np.ndarray]

#: Budget, in float32 cells, of the dense intermediate used by :func:`lexical_scores`.
_LEXICAL_CELLS = 1 << 24


def dense_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray | float:
    """Inner products of dense vectors: ``(Nq, D) x (Nd, D) -> (Nq, Nd)``."""
    q = np.asarray(queries, dtype=np.float32)
    d = np.asarray(documents, dtype=np.float32)
    out = np.atleast_2d(q) @ np.atleast_2d(d).T
    return _squeeze(out, q.ndim == 1, d.ndim == 1)


def _as_sparse_list(vectors: SparseInput, name: str) -> tuple[list[SparseVector], bool]:
    if isinstance(vectors, SparseVector):
        return [vectors], True
    items = list(vectors)
    for i, v in enumerate(items):
        if not isinstance(v, SparseVector):
            raise InputTypeError(f"{name}[{i}] is {type(v).__name__}, expected SparseVector")
    return items, False


def lexical_scores(queries: SparseInput, documents: SparseInput) -> np.ndarray | float:
    """Lexical matching scores of sparse vectors: ``sum(q[t] * d[t] for shared token t)``."""
    qs, q_single = _as_sparse_list(queries, "queries")
    ds, d_single = _as_sparse_list(documents, "documents")
    out = np.zeros((len(qs), len(ds)), dtype=np.float32)
    vocab, q_matrix = _to_dense_rows(qs)
    if vocab.size and ds:
        rows = max(1, _LEXICAL_CELLS // max(vocab.size, 1))
        for start in range(0, len(ds), rows):
            chunk = ds[start : start + rows]
            d_matrix = np.zeros((len(chunk), vocab.size), dtype=np.float64)
            for r, vec in enumerate(chunk):
                pos = np.searchsorted(vocab, vec.indices)
                hit = (pos < vocab.size) & (vocab[np.minimum(pos, vocab.size - 1)] == vec.indices)
                d_matrix[r, pos[hit]] = vec.values[hit]
            out[:, start : start + len(chunk)] = q_matrix @ d_matrix.T
    return _squeeze(out, q_single, d_single)


def _to_dense_rows(vectors: list[SparseVector]) -> tuple[np.ndarray, np.ndarray]:
    """The union of token ids and a dense (rows, vocab) float64 matrix over it."""
    vocab = np.unique(np.concatenate([v.indices for v in vectors] + [np.empty(0, np.int64)]))
    matrix = np.zeros((len(vectors), vocab.size), dtype=np.float64)
    for r, vec in enumerate(vectors):
        matrix[r, np.searchsorted(vocab, vec.indices)] = vec.values
    return vocab, matrix


def _as_matrix_list(vectors: ColbertInput, name: str) -> tuple[list[np.ndarray], bool]:
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        return [vectors.astype(np.float32, copy=False)], True
    items = [np.asarray(v, dtype=np.float32) for v in vectors]
    for i, m in enumerate(items):
        if m.ndim != 2:
            raise InputTypeError(f"{name}[{i}] must be a (tokens, dim) matrix, got shape {m.shape}")
    return items, False


def colbert_scores(queries: ColbertInput, documents: ColbertInput) -> np.ndarray | float:
    """ColBERT late-interaction scores: mean over query tokens of the best document token."""
    qs, q_single = _as_matrix_list(queries, "queries")
    ds, d_single = _as_matrix_list(documents, "documents")
    out = np.zeros((len(qs), len(ds)), dtype=np.float32)
    if qs and ds:
        lengths = np.array([d.shape[0] for d in ds])
        nonempty = lengths > 0
        tokens = np.concatenate([d for d in ds if d.shape[0]], axis=0) if nonempty.any() else None
        starts = np.concatenate([[0], np.cumsum(lengths[nonempty])[:-1]])
        for i, q in enumerate(qs):
            if q.shape[0] == 0 or tokens is None:
                continue
            sims = q @ tokens.T  # (q tokens, all document tokens)
            best = np.maximum.reduceat(sims, starts, axis=1)  # (q tokens, nonempty documents)
            out[i, nonempty] = best.sum(axis=0) / q.shape[0]
    return _squeeze(out, q_single, d_single)


def check_weights(weights: Sequence[float] | None) -> tuple[float, float, float]:
    """Validate hybrid weights ``[dense, sparse, colbert]`` (default ``[1, 1, 1]``)."""
    if weights is None:
        return (1.0, 1.0, 1.0)
    values = tuple(float(w) for w in weights)
    if len(values) != 3 or any(w < 0 or not np.isfinite(w) for w in values) or sum(values) <= 0:
        raise ConfigError(
            f"weights must be three non-negative numbers [dense, sparse, colbert] with a positive sum, got {weights!r}"
        )
    return values


def hybrid_scores(
    dense: np.ndarray | None = None,
    sparse: np.ndarray | None = None,
    colbert: np.ndarray | None = None,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """``(w0 * dense + w1 * sparse + w2 * colbert) / (w0 + w1 + w2)`` over any score arrays.

    A score may be left out (``None``) only when its weight is zero.
    """
    w = check_weights(weights)
    total: np.ndarray | None = None
    for name, scores, weight in (("dense", dense, w[0]), ("sparse", sparse, w[1]), ("colbert", colbert, w[2])):
        if weight == 0:
            continue
        if scores is None:
            raise ConfigError(f"{name} scores are missing but their weight is {weight}")
        part = weight * np.asarray(scores, dtype=np.float64)
        total = part if total is None else total + part
    assert total is not None
    return (total / sum(w)).astype(np.float32)


def reciprocal_rank_fusion(
    rankings: Iterable[Sequence[Hashable]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[Hashable, float]]:
    """Fuse ranked lists: ``score(d) = sum_r w_r / (k + rank_r(d))``, ranks counted from 1.

    Args:
        rankings: Lists of ids, best first (ids may be indices, strings, ...).
        k: The RRF constant (60 in the original paper).
        weights: One weight per list (default 1 each).

    Returns:
        ``(id, score)`` pairs, best first; ties keep the order of first appearance.
    """
    lists = [list(r) for r in rankings]
    if weights is not None and len(weights) != len(lists):
        raise ConfigError(f"got {len(weights)} weights for {len(lists)} rankings")
    if k < 0:
        raise ConfigError(f"k must be non-negative, got {k}")
    scores: dict[Hashable, float] = {}
    for r, ranking in enumerate(lists):
        weight = 1.0 if weights is None else float(weights[r])
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])  # stable: ties keep first appearance


def _squeeze(out: np.ndarray, q_single: bool, d_single: bool) -> np.ndarray | float:
    if q_single and d_single:
        return float(out[0, 0])
    if q_single:
        return out[0]
    if d_single:
        return out[:, 0]
    return out


def sigmoid(logit: float) -> float:
    """The logistic function of one reranker logit, computed as FlagReranker does (in float64).

    Example:
        >>> sigmoid(0.0)
        0.5
    """
    return float(1 / (1 + np.exp(-np.float64(logit))))


__all__ = [
    "check_weights",
    "sigmoid",
    "colbert_scores",
    "dense_scores",
    "hybrid_scores",
    "lexical_scores",
    "reciprocal_rank_fusion",
]

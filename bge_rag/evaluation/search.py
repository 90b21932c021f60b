"""Exact top-k search over score matrices, in bounded memory.

The searches FlagEmbedding runs with a flat faiss index (inner product over every document)
are computed here with numpy: the queries go in blocks, each block's scores against the whole
corpus are one matrix product, and only the best ``k`` of each row are kept. Ties are broken by
the lower document index, so a result never depends on thread timing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bge_core.errors import ConfigError
from bge_core.scoring import dense_scores

#: Budget, in float32 cells, of one block of scores (queries x documents): 64 MiB.
SCORE_BLOCK_CELLS = 1 << 24


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores``, best first.

    Args:
        scores: ``(rows, columns)`` scores.
        k: Columns to keep per row; more than there are keeps them all.

    Returns:
        ``(values, indices)``, each ``(rows, min(k, columns))``: float32 scores and int64 column
        indices, by descending score, ties by ascending column.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    scores = np.asarray(scores, dtype=np.float32)
    rows, columns = scores.shape
    k = min(k, columns)
    if k == 0:
        return np.zeros((rows, 0), np.float32), np.zeros((rows, 0), np.int64)
    if k < columns:
        # The k-th best value of each row; every column at least that good is a candidate,
        # so ties at the border are resolved below by index, not by argpartition's choice.
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        candidates = [np.flatnonzero(row >= bound) for row, bound in zip(scores, kth[:, 0])]
    else:
        candidates = [np.arange(columns)] * rows
    values = np.empty((rows, k), np.float32)
    indices = np.empty((rows, k), np.int64)
    for r, cand in enumerate(candidates):
        order = np.lexsort((cand, -scores[r, cand]))[:k]
        indices[r] = cand[order]
        values[r] = scores[r, indices[r]]
    return values, indices


def search(
    queries: int,
    documents: int,
    score_block: Callable[[int, int], np.ndarray],
    k: int,
    *,
    block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` documents of every query, scoring a block of queries at a time.

    Args:
        queries: Number of queries.
        documents: Number of documents.
        score_block: ``score_block(start, stop)`` returns the ``(stop - start, documents)`` scores
            of queries ``start .. stop - 1`` against every document.
        k: Documents kept per query.
        block_rows: Queries per block (default: as many as fit :data:`SCORE_BLOCK_CELLS`).

    Returns:
        ``(values, indices)`` as :func:`top_k_rows`, one row per query.
    """
    k_kept = min(k, documents)
    if queries == 0 or documents == 0:
        return np.zeros((queries, 0), np.float32), np.zeros((queries, 0), np.int64)
    step = block_rows or max(1, SCORE_BLOCK_CELLS // max(documents, 1))
    values = np.empty((queries, k_kept), np.float32)
    indices = np.empty((queries, k_kept), np.int64)
    for start in range(0, queries, step):
        stop = min(start + step, queries)
        values[start:stop], indices[start:stop] = top_k_rows(score_block(start, stop), k)
    return values, indices


def ranked(qids: list[str], doc_ids: list[str], values: np.ndarray, indices: np.ndarray) -> dict[str, dict[str, float]]:
    """A search's ``(values, indices)`` as results: ``{qid: {docid: score}}``, best first."""
    return {
        qid: {doc_ids[j]: float(v) for v, j in zip(row_v.tolist(), row_i.tolist())}
        for qid, row_v, row_i in zip(qids, values, indices)
    }


def dense_search(queries: np.ndarray, documents: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search, as a flat faiss ``METRIC_INNER_PRODUCT`` index gives it.

    Args:
        queries: ``(Nq, D)`` float32 query vectors.
        documents: ``(Nd, D)`` float32 document vectors.
        k: Documents kept per query.

    Returns:
        ``(values, indices)`` as :func:`top_k_rows`.
    """
    q = np.asarray(queries, dtype=np.float32)
    d = np.asarray(documents, dtype=np.float32)
    return search(len(q), len(d), lambda a, b: np.atleast_2d(dense_scores(q[a:b], d)), k)

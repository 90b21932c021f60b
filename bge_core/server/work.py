"""The model work behind the endpoints: what runs on an engine's worker thread, and output shapes.

Everything here calls the engine's public API (``Embedder.encode``, ``Reranker.score``,
``Embedder.decode_sparse``) on coalesced inputs and splits the results back per request. No web
framework is imported.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..embedder import Embedder
from ..rerank import Reranker, sigmoid
from ..types import SparseVector


@dataclass(frozen=True)
class EncodeKey:
    """Requests with equal keys can share one ``encode`` call."""

    kind: str
    dense: bool = True
    sparse: bool = False
    colbert: bool = False
    top_tokens: Optional[int] = None  # sparse tokens as strings, heaviest first, for display


@dataclass(frozen=True)
class EncodedPart:
    """One request's share of a coalesced ``encode`` call, in its input order."""

    dense: Optional[np.ndarray]
    sparse: Optional[list[SparseVector]]
    colbert: Optional[list[np.ndarray]]
    tokens: Optional[list[list[tuple[str, float]]]]
    token_counts: list[int]


def _offsets(item_lists: Sequence[Sequence[Any]]) -> list[tuple[int, int]]:
    spans, start = [], 0
    for items in item_lists:
        spans.append((start, start + len(items)))
        start += len(items)
    return spans


def encode_process(embedder: Embedder):
    """The batcher's ``process`` for an :class:`~bge_core.Embedder`: one ``encode`` per batch."""

    def process(key: EncodeKey, item_lists: list[Sequence[str]]) -> list[EncodedPart]:
        texts = [text for items in item_lists for text in items]
        out = embedder.encode(texts, kind=key.kind, dense=key.dense, sparse=key.sparse, colbert=key.colbert)  # type: ignore[arg-type]
        tokens = None
        if key.top_tokens is not None and out.sparse is not None:
            tokens = [embedder.decode_sparse(v, key.top_tokens) for v in out.sparse]  # type: ignore[union-attr]
        parts = []
        for a, b in _offsets(item_lists):
            parts.append(
                EncodedPart(
                    dense=None if out.dense is None else out.dense[a:b],
                    sparse=None if out.sparse is None else out.sparse[a:b],  # type: ignore[index]
                    colbert=None if out.colbert is None else out.colbert[a:b],  # type: ignore[index]
                    tokens=None if tokens is None else tokens[a:b],
                    token_counts=out.token_counts[a:b],  # type: ignore[index]
                )
            )
        return parts

    return process


def rerank_process(reranker: Reranker):
    """The batcher's ``process`` for a :class:`~bge_core.Reranker`: raw logits, one call per batch."""

    def process(key: Any, item_lists: list[Sequence[tuple[str, str]]]) -> list[list[float]]:
        pairs = [pair for items in item_lists for pair in items]
        scores = reranker.score(pairs, normalize=False)
        return [scores[a:b] for a, b in _offsets(item_lists)]  # type: ignore[index]

    return process


def rank(scores: list[float], top_n: Optional[int], activation: str) -> list[tuple[int, float]]:
    """``(index, score)`` best first (ties keep input order), as ``Reranker.rerank`` orders them."""
    if activation == "sigmoid":
        scores = [sigmoid(s) for s in scores]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(i, scores[i]) for i in order[:top_n]]


def truncate_dims(vectors: np.ndarray, dimensions: int, normalize: bool) -> np.ndarray:
    """The first ``dimensions`` of each vector, renormalized when the model normalizes.

    Renormalizing a truncated unit vector gives the engine's ``truncate_dim`` output (which
    normalizes after truncating), so one loaded model serves every requested size.
    """
    out = vectors[:, :dimensions].astype(np.float64)
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def b64_float32(array: np.ndarray) -> str:
    """Little-endian float32 bytes in base64, as OpenAI's ``encoding_format="base64"``."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


__all__ = [
    "EncodeKey",
    "EncodedPart",
    "b64_float32",
    "encode_process",
    "rank",
    "rerank_process",
    "truncate_dims",
]

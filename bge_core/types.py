"""Result types: plain, frozen, serializable.

Shapes follow sentence-transformers, which users come from: a single ``str`` in gives a single
result out (a 1-D dense vector, one :class:`SparseVector`, one ColBERT matrix), a list in gives
a batch out (a 2-D array, a list of vectors, a list of matrices), always in input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclass(frozen=True, eq=False)
class SparseVector:
    """BGE-M3 lexical weights of one text: token ids and their float32 weights.

    ``indices`` are unique int64 token ids in ascending order; ``values`` are the matching
    positive float32 weights. Two vectors compare equal when ids and weights are identical.

    Example:
        >>> v = SparseVector.from_dict({2054: 0.25, 17: 0.5})
        >>> v.to_dict()
        {17: 0.5, 2054: 0.25}
    """

    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        indices = np.asarray(self.indices, dtype=np.int64).reshape(-1)
        values = np.asarray(self.values, dtype=np.float32).reshape(-1)
        if indices.shape != values.shape:
            raise InvalidInputError(
                f"SparseVector needs as many indices as values, got {indices.size} and {values.size}"
            )
        if indices.size > 1 and not np.all(indices[1:] > indices[:-1]):
            order = np.argsort(indices, kind="stable")
            indices, values = indices[order], values[order]
            if np.any(indices[1:] == indices[:-1]):
                raise InvalidInputError("SparseVector indices must be unique")
        indices.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "values", values)

    @classmethod
    def from_dict(cls, weights: Mapping[int, float]) -> SparseVector:
        """Build a vector from a ``{token_id: weight}`` mapping (string ids are accepted)."""
        ids = np.fromiter((int(k) for k in weights), dtype=np.int64, count=len(weights))
        vals = np.fromiter((float(v) for v in weights.values()), dtype=np.float32, count=len(weights))
        return cls(ids, vals)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseVector):
            return NotImplemented
        return np.array_equal(self.indices, other.indices) and np.array_equal(self.values, other.values)

    def __hash__(self) -> int:
        return hash((self.indices.tobytes(), self.values.tobytes()))

    def __repr__(self) -> str:
        return f"SparseVector(nnz={len(self)})"

    def to_dict(self) -> dict[int, float]:
        """``{token_id: weight}`` with Python ints and floats (Milvus / LlamaIndex shape)."""
        return dict(zip(self.indices.tolist(), self.values.tolist()))

    def to_qdrant(self) -> dict[str, list[Any]]:
        """``{"indices": [...], "values": [...]}``, the shape of Qdrant's ``SparseVector``."""
        return {"indices": self.indices.tolist(), "values": self.values.tolist()}

    def dot(self, other: SparseVector) -> float:
        """Lexical matching score: the sum of weight products over shared token ids."""
        _, a, b = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        return float(np.dot(self.values[a].astype(np.float64), other.values[b].astype(np.float64)))


DenseOutput = np.ndarray
SparseOutput = SparseVector | list[SparseVector]
ColbertOutput = np.ndarray | list[np.ndarray]


@dataclass(frozen=True)
class Encoded:
    """What :meth:`bge_core.Embedder.encode` returns; an output not requested is ``None``.

    Attributes:
        dense: float32 array, ``(N, D)`` for a list input, ``(D,)`` for a single string.
        sparse: one :class:`SparseVector` per text (a single one for a string input).
        colbert: one float32 ``(tokens, dim)`` matrix per text (a single one for a string input).
        token_counts: tokens the model read for each text, instruction and special tokens
            included, after truncation (an int for a string input); set by ``Embedder.encode``.
    """

    dense: DenseOutput | None = None
    sparse: SparseOutput | None = None
    colbert: ColbertOutput | None = None
    token_counts: list[int] | int | None = None


P = TypeVar("P")


def join_parts(parts: Sequence[P]) -> P:
    """Consecutive pieces of one batch of texts joined back in order.

    The pieces are dataclasses of the same type, such as :class:`Encoded`: arrays are
    concatenated, lists chained, ``None`` kept.
    """
    if len(parts) == 1:
        return parts[0]
    joined: dict[str, Any] = {}
    for f in fields(parts[0]):  # type: ignore[arg-type]
        values = [getattr(p, f.name) for p in parts]
        if values[0] is None:
            joined[f.name] = None
        elif isinstance(values[0], np.ndarray):
            joined[f.name] = np.concatenate(values)
        else:
            joined[f.name] = [x for v in values for x in v]
    return type(parts[0])(**joined)


@dataclass(frozen=True)
class Ranked:
    """One reranked document: its position in the input list, its score, and its text."""

    index: int
    score: float
    text: str = field(repr=False)


__all__ = ["Encoded", "Ranked", "SparseVector", "join_parts"]

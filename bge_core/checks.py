"""Small validation and environment helpers shared by the engine, its adapters and its apps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, EmptySparseVectorError

if TYPE_CHECKING:
    from .types import SparseVector

#: How many offending documents an :class:`EmptySparseVectorError` message quotes (``.indices`` has all).
_QUOTED = 5


def check_positive(name: str, value: Any) -> int:
    """``value`` as an ``int`` above zero, or a :class:`~bge_core.ConfigError` naming ``name``.

    Args:
        name: The argument's name, used in the error message.
        value: An ``int`` (or numpy integer); ``bool`` is refused.

    Returns:
        ``int(value)``.

    Raises:
        ConfigError: ``value`` is not a positive integer.

    Example:
        >>> check_positive("batch_size", 8)
        8
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_sparse_weights(vectors: Sequence[SparseVector], texts: Sequence[str], *, advice: str) -> None:
    """Refuse a batch in which a document's sparse vector has no nonzero weight.

    A Milvus collection refuses such a row and fails the whole insert; this check names every
    such document before anything reaches the store.

    Args:
        vectors: The documents' sparse vectors, in input order.
        texts: The documents, in the same order (quoted, shortened, in the message).
        advice: What the caller can do, appended to the message (which option, which method).

    Raises:
        EmptySparseVectorError: At least one vector has no nonzero weight; ``.indices`` lists them all.

    Example:
        >>> from bge_core import SparseVector
        >>> check_sparse_weights([SparseVector.from_dict({7: 0.5})], ["a text"], advice="")
    """
    empty = [i for i, vector in enumerate(vectors) if not np.any(vector.values)]
    if not empty:
        return
    quoted = ", ".join(f"texts[{i}] ({_shorten(texts[i])})" for i in empty[:_QUOTED])
    more = f" and {len(empty) - _QUOTED} more" if len(empty) > _QUOTED else ""
    verb = "has" if len(empty) == 1 else "have"
    raise EmptySparseVectorError(
        f"{len(empty)} of {len(vectors)} documents {verb} no token with a nonzero sparse weight: "
        f"{quoted}{more}. An empty, whitespace-only or punctuation-only text can get none. Milvus refuses "
        "a sparse vector without a nonzero weight and fails the whole insert, so this batch was stopped "
        f"before the store. {advice}".rstrip(),
        empty,
    )


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def transformers_version() -> tuple[int, int]:
    """The installed transformers release as ``(major, minor)``, e.g. ``(5, 2)``."""
    import transformers

    major, minor = transformers.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


__all__ = ["check_positive", "check_sparse_weights", "transformers_version"]

"""Input validation shared by every entry point: one place that says what is wrong, and where.

Texts come as one ``str`` or any ordered iterable of them: a list, a tuple, a generator or
iterator (consumed once, in its order), a pandas Series or numpy array of strings. Unordered
collections (``set``, ``frozenset``, dict views) and mappings are refused with
:class:`~bge_core.errors.InputTypeError`: their iteration order is arbitrary, so results could
not be matched back to the inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MappingView, Set
from typing import Any

from .errors import InputTypeError


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _unordered(value: Any) -> bool:
    """Sets, frozensets and dict views: iterable, but in an arbitrary order."""
    return isinstance(value, (Set, MappingView))


def as_texts(texts: Any, name: str = "texts") -> tuple[list[str], bool]:
    """Normalize ``str | Iterable[str]`` into a list, and say whether a single string came in.

    Raises:
        InputTypeError: ``None``, bytes, a mapping, a set or dict view, a non-iterable, or any
            element not a ``str``.
    """
    if isinstance(texts, str):
        return [texts], True
    if _unordered(texts):
        raise InputTypeError(
            f"{name} must be a string or a list of strings, got {_type_name(texts)}, whose order is arbitrary; "
            f"pass a list (e.g. sorted({name})) so that results match the inputs"
        )
    if texts is None or isinstance(texts, (bytes, bytearray, Mapping)) or not isinstance(texts, Iterable):
        raise InputTypeError(f"{name} must be a string or a list of strings, got {_type_name(texts)}")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InputTypeError(f"{name}[{i}] is {_type_name(text)}, expected str")
    return items, False


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, str) for v in value)


def as_pairs(pairs: Any, name: str = "pairs") -> tuple[list[tuple[str, str]], bool]:
    """Normalize one ``(query, passage)`` pair or a list of them; say whether a single pair came in.

    Raises:
        InputTypeError: ``None``, a string, a mapping, a set or dict view, or any element that is
            not two strings.
    """
    if _is_pair(pairs):
        return [(pairs[0], pairs[1])], True
    if _unordered(pairs):
        raise InputTypeError(
            f"{name} must be a (query, passage) pair or a list of pairs, got {_type_name(pairs)}, whose order is "
            f"arbitrary; pass a list so that scores match the inputs"
        )
    if pairs is None or isinstance(pairs, (str, bytes, bytearray, Mapping)) or not isinstance(pairs, Iterable):
        raise InputTypeError(f"{name} must be a (query, passage) pair or a list of pairs, got {_type_name(pairs)}")
    items = list(pairs)
    for i, pair in enumerate(items):
        if not _is_pair(pair):
            detail = (
                f"a {type(pair).__name__} of {len(pair)} items" if isinstance(pair, (tuple, list)) else _type_name(pair)
            )
            if isinstance(pair, (tuple, list)) and len(pair) == 2:
                detail = f"({_type_name(pair[0])}, {_type_name(pair[1])})"
            raise InputTypeError(f"{name}[{i}] must be a pair of two strings (query, passage), got {detail}")
    return [(q, p) for q, p in items], False


__all__ = ["as_pairs", "as_texts"]

"""What every router's request bodies share.

The strict base model, the common field types, and the checks that give each bad input a clear
4xx message (raised as :class:`~.errors.APIError`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import APIError

if TYPE_CHECKING:
    from bge_core.embedder import Kind

#: ``input_type`` values accepted, and the engine kind each one means (OpenAI has no query /
#: document distinction; Cohere says ``search_query`` / ``search_document``, NVIDIA ``passage``).
INPUT_TYPES: dict[str, Kind] = {
    "query": "query",
    "search_query": "query",
    "document": "document",
    "search_document": "document",
    "passage": "document",
}
_SURROGATE = re.compile("[\ud800-\udfff]")

InputType = Literal["query", "search_query", "document", "search_document", "passage"]
#: TEI's truncation directions (its serde aliases included).
TruncationDirection = Literal["right", "Right", "left", "Left"]


class Strict(BaseModel):
    """The base of every request body: strict types and no unknown fields.

    No silent coercion (``"3"`` is not 3, ``1`` is not ``True``), and a misspelt argument is an
    error, not ignored.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _token_ids(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def check_texts(value: Any, name: str, *, max_items: int, max_chars: int) -> list[str]:
    """``value`` as a non-empty list of strings within the size limits.

    Raises:
        APIError: 400 for a wrong type or an empty list, 413 for too many or too long texts.
    """
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        if not value:
            raise APIError(400, f"'{name}' must not be empty: send at least one text.", param=name)
        if _token_ids(value) or all(isinstance(v, list) and _token_ids(v) for v in value):
            raise APIError(
                400,
                f"'{name}' holds token ids; this server takes text only (LangChain's OpenAIEmbeddings: "
                f"pass check_embedding_ctx_length=False).",
                param=name,
            )
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise APIError(400, f"'{name}[{i}]' is {_json_type(item)}, expected a string.", param=name)
        items = value
    else:
        raise APIError(400, f"'{name}' must be a string or a list of strings, got {_json_type(value)}.", param=name)
    check_sizes(items, name, max_items=max_items, max_chars=max_chars)
    return items


def check_documents(value: list[Any], name: str, *, max_items: int, max_chars: int) -> list[str]:
    """Rerank documents: strings or ``{"text": str}`` objects (Cohere, Jina). May be empty."""
    texts = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            texts.append(item["text"])
        elif isinstance(item, str):
            texts.append(item)
        else:
            raise APIError(
                400,
                f"'{name}[{i}]' is {_json_type(item)}, expected a string or an object with a 'text' string.",
                param=name,
            )
    check_sizes(texts, name, max_items=max_items, max_chars=max_chars)
    return texts


def check_sizes(items: list[str], name: str, *, max_items: int, max_chars: int) -> None:
    """At most ``max_items`` texts of at most ``max_chars`` characters each, else 413."""
    if len(items) > max_items:
        raise APIError(
            413, f"'{name}' has {len(items)} items; this server takes at most {max_items} per request.", param=name
        )
    for i, text in enumerate(items):
        check_chars(text, f"{name}[{i}]", max_chars, param=name)


def check_chars(text: str, name: str, max_chars: int, *, param: str | None = None) -> None:
    """At most ``max_chars`` characters (else 413), and valid Unicode (else 400)."""
    if len(text) > max_chars:
        raise APIError(
            413,
            f"'{name}' has {len(text)} characters; this server takes at most {max_chars} per text.",
            param=param or name,
        )
    # JSON may escape lone UTF-16 surrogates ("\ud800"), which are not text: tokenizers reject them.
    if (bad := _SURROGATE.search(text)) is not None:
        raise APIError(
            400,
            f"'{name}' is not valid Unicode: a lone surrogate \\u{ord(bad.group()):04x} at character {bad.start()}.",
            param=param or name,
        )


def unsupported(message: str, param: str) -> APIError:
    """400 for a known field of an imitated API whose value asks for what this server does not do."""
    return APIError(400, message, param=param, code="unsupported_value")


def check_positive(name: str, value: int | None) -> int | None:
    """``value`` when it is absent or at least 1, else a 400 naming the field ``name``.

    The engine's :func:`bge_core.checks.check_positive` takes its arguments in the same order; this
    one answers an optional request field with a 400 instead of raising the engine's error.
    """
    if value is not None and value < 1:
        raise APIError(400, f"'{name}' must be a positive integer, got {value}.", param=name)
    return value


def check_dimensions(name: str, value: int | None, dimension: int) -> int | None:
    """A requested vector size: absent, or between 1 and the model's ``dimension``; else a 400 naming ``name``."""
    dims = check_positive(name, value)
    if dims is not None and dims > dimension:
        raise APIError(400, f"'{name}' is {dims}, but this model's vectors have {dimension} dimensions.", param=name)
    return dims


def engine_kind(input_type: str | None, *, query: bool, query_alias: str) -> Kind:
    """The engine kind (``query`` / ``document``) that ``input_type`` asks for.

    Args:
        input_type: An :data:`INPUT_TYPES` key, or ``None`` (documents, unless ``query``).
        query: The path (``/query/v1``) or the model name (``query_alias``) asks for queries.
        query_alias: The model name that asks for queries, for the error message.

    Raises:
        APIError: 400 when ``query`` and ``input_type`` names documents.
    """
    if not query:
        return INPUT_TYPES[input_type or "document"]
    if input_type is not None and INPUT_TYPES[input_type] != "query":
        raise APIError(
            400,
            f"'input_type' is {input_type!r}, but this path or model name serves queries "
            f"(/query/v1 or '{query_alias}'); use /v1 and the plain model name for documents.",
            param="input_type",
        )
    return "query"


__all__ = [
    "INPUT_TYPES",
    "InputType",
    "Strict",
    "TruncationDirection",
    "check_chars",
    "check_dimensions",
    "check_documents",
    "check_positive",
    "check_sizes",
    "check_texts",
    "engine_kind",
    "unsupported",
]

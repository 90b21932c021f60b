"""Request bodies (pydantic) and the checks that give each bad input a clear 4xx message."""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

#: ``input_type`` values accepted, and the engine kind each one means (OpenAI has no query /
#: document distinction; Cohere says ``search_query`` / ``search_document``, NVIDIA ``passage``).
INPUT_TYPES = {
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


class APIError(Exception):
    """An error answered with ``status`` and OpenAI's error shape ``{"error": {...}}``."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: Optional[str] = None,
        code: Optional[str] = None, headers: Optional[dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    # strict: no silent coercion ("3" is not 3, 1 is not True); forbid: a misspelt argument is
    # an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True)


class EmbeddingsRequest(_Strict):
    """``POST /v1/embeddings``: OpenAI's request, plus ``input_type``."""

    input: Any = Field(description="A string or a list of strings.")
    model: Optional[str] = Field(None, description="Informational: one model per server.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, description="Keep the first N dimensions (renormalized).")
    user: Optional[str] = None
    input_type: Optional[InputType] = Field(
        None, description="query (applies the model's query instruction) or document (default)."
    )
    modality: Optional[str] = Field(None, description="Infinity's field: only \"text\" is served here.")


class EncodeRequest(_Strict):
    """``POST /v1/encode``: dense, BGE-M3 sparse and ColBERT outputs of texts."""

    input: Any = Field(description="A string or a list of strings.")
    model: Optional[str] = None
    input_type: Optional[InputType] = None
    dense: bool = True
    sparse: bool = False
    colbert: bool = False
    sparse_top_tokens: Optional[int] = Field(
        None, description="Also return the N heaviest sparse tokens as strings (for display)."
    )
    encoding_format: Literal["float", "base64"] = "float"


class RerankRequest(_Strict):
    """``POST /v1/rerank`` and ``/rerank``: Cohere / Jina shape, or TEI's (``texts``)."""

    query: str
    documents: Optional[list[Any]] = Field(None, description="Strings or {\"text\": ...} objects.")
    texts: Optional[list[Any]] = Field(None, description="TEI's name for documents; answers in TEI's shape.")
    model: Optional[str] = None
    top_n: Optional[int] = None
    return_documents: bool = False
    return_text: bool = False
    raw_scores: Optional[bool] = None
    truncate: Optional[bool] = Field(None, description="TEI: pairs are always truncated as FlagReranker does.")
    truncation_direction: Optional[TruncationDirection] = None
    rank_fields: Optional[list[str]] = Field(None, description="Cohere v1: only [\"text\"] is served here.")
    max_chunks_per_doc: Optional[int] = Field(None, description="Cohere v1: not served (documents are truncated).")


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
                400, f"'{name}[{i}]' is {_json_type(item)}, expected a string or an object with a 'text' string.",
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


def check_chars(text: str, name: str, max_chars: int, *, param: Optional[str] = None) -> None:
    """At most ``max_chars`` characters (else 413), and valid Unicode (else 400)."""
    if len(text) > max_chars:
        raise APIError(
            413, f"'{name}' has {len(text)} characters; this server takes at most {max_chars} per text.",
            param=param or name,
        )
    # JSON may escape lone UTF-16 surrogates ("\ud800"), which are not text: tokenizers reject them.
    if (bad := _SURROGATE.search(text)) is not None:
        raise APIError(
            400, f"'{name}' is not valid Unicode: a lone surrogate \\u{ord(bad.group()):04x} "
            f"at character {bad.start()}.", param=param or name,
        )


def unsupported(message: str, param: str) -> APIError:
    """400 for a known field of an imitated API whose value asks for what this server does not do."""
    return APIError(400, message, param=param, code="unsupported_value")


def check_positive(value: Optional[int], name: str) -> Optional[int]:
    if value is not None and value < 1:
        raise APIError(400, f"'{name}' must be a positive integer, got {value}.", param=name)
    return value


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One readable sentence from pydantic / FastAPI validation errors."""
    messages = []
    for error in errors[:5]:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        kind = error.get("type", "")
        if kind == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "invalid JSON")
            return f"Malformed JSON body: {detail} (at character {loc[0] if loc else '?'})."
        if not loc and kind in ("missing", "model_attributes_type", "dict_type", "model_type"):
            return "The request body must be a JSON object, sent with 'Content-Type: application/json'."
        if kind == "extra_forbidden":
            messages.append(f"Unrecognized request argument '{'.'.join(loc)}'")
        elif kind == "missing":
            messages.append(f"Missing required argument '{'.'.join(loc)}'")
        else:
            messages.append(f"'{'.'.join(loc)}': {error.get('msg', 'invalid value')}")
    return "; ".join(messages) + "."


__all__ = [
    "APIError",
    "EmbeddingsRequest",
    "EncodeRequest",
    "INPUT_TYPES",
    "RerankRequest",
    "check_chars",
    "check_documents",
    "check_positive",
    "check_sizes",
    "check_texts",
    "unsupported",
    "validation_message",
]

"""The rerank body that Cohere v1, Jina, TEI and Infinity clients send to the same paths.

``POST /v1/rerank`` (Cohere v1's and Jina's path), ``POST /rerank`` (TEI's and Infinity's) and,
on a server without an embedder, TEI's ``POST /`` take one body: ``query`` with the candidates as
``documents`` (strings or ``{"text": ...}``; Cohere, Jina, Infinity) or as ``texts`` (TEI). The
body names the API: ``texts`` gets TEI's answer ``[{index, score, text?}]``, ``documents`` the
answer ``{id, object, model, results: [{index, relevance_score, document?}], created}`` of the
API that owns the path. Every field works on every one of these paths (``top_n`` and
``raw_scores`` with TEI's body as well), so one model declares them all.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import Field

from ..checks import Strict, TruncationDirection, check_chars, check_documents, check_positive, unsupported
from ..errors import APIError
from ..responses import json_response
from ..service import Service
from ..work import rank


class RerankRequest(Strict):
    """``POST /v1/rerank`` and ``/rerank``: Cohere / Jina shape, or TEI's (``texts``)."""

    query: str
    documents: list[Any] | None = Field(None, description='Strings or {"text": ...} objects.')
    texts: list[Any] | None = Field(None, description="TEI's name for documents; answers in TEI's shape.")
    model: str | None = None
    top_n: int | None = None
    return_documents: bool = False
    return_text: bool = False
    raw_scores: bool | None = None
    truncate: bool | None = Field(None, description="TEI: pairs are always truncated as FlagReranker does.")
    truncation_direction: TruncationDirection | None = None
    rank_fields: list[str] | None = Field(None, description='Cohere v1: only ["text"] is served here.')
    max_chunks_per_doc: int | None = Field(None, description="Cohere v1: not served (documents are truncated).")


def check_rerank_truncation(truncate: bool | None, direction: str | None) -> None:
    """TEI's ``truncate`` / ``truncation_direction`` for rerank: what FlagReranker does is accepted."""
    if truncate is False:
        raise unsupported(
            "'truncate': false is not supported for rerank: this server always truncates each "
            "(query, document) pair as FlagReranker does (the query to 3/4 of max_length, then the "
            "document's end). Send truncate true or leave it out.",
            "truncate",
        )
    if direction is not None and direction.lower() == "left":
        raise unsupported(
            "'truncation_direction': 'left' is not supported for rerank: this server cuts the end of "
            "the document, as FlagReranker does (send 'right' or leave it out).",
            "truncation_direction",
        )


async def rank_candidates(
    service: Service, body: RerankRequest, request: Request | None = None
) -> tuple[list[tuple[int, float]], list[str]]:
    """``(index, score)`` best first (at most ``top_n``) and the candidates' texts, after every check."""
    model = service.rerank_model(body.model)
    reranker = model.engine
    if (body.documents is None) == (body.texts is None):
        raise APIError(
            400, "Send the candidates as 'documents' (Cohere, Jina) or as 'texts' (TEI), not both.", param="documents"
        )
    check_rerank_truncation(body.truncate, body.truncation_direction)
    if body.rank_fields is not None and body.rank_fields != ["text"]:
        raise unsupported(
            f"'rank_fields' is {body.rank_fields!r}; this server ranks documents by their 'text' "
            f"only (send rank_fields ['text'] or leave it out).",
            "rank_fields",
        )
    if body.max_chunks_per_doc is not None:
        raise unsupported(
            f"'max_chunks_per_doc' is not supported: this server truncates each (query, document) "
            f"pair to {reranker.max_length} tokens instead of chunking documents.",
            "max_chunks_per_doc",
        )
    s = service.settings
    check_chars(body.query, "query", s.max_input_chars)
    if body.texts is not None:
        docs = check_documents(body.texts, "texts", max_items=s.max_inputs, max_chars=s.max_input_chars)
    else:
        assert body.documents is not None  # exactly one of documents / texts, checked above
        docs = check_documents(body.documents, "documents", max_items=s.max_inputs, max_chars=s.max_input_chars)
    top_n = check_positive("top_n", body.top_n)
    scores = await service.logits(body.query, docs, request, model)
    raw = s.rerank_scores == "raw" if body.raw_scores is None else body.raw_scores
    return rank(scores, top_n, "raw" if raw else "sigmoid"), docs


def cohere_document(text: str) -> dict[str, str]:
    """A returned document as Cohere v1 and Jina write it: ``{"text": ...}``."""
    return {"text": text}


async def answer(
    service: Service,
    body: RerankRequest,
    request: Request | None = None,
    *,
    document: Callable[[str], Any] = cohere_document,
) -> Response:
    """The rerank answer: TEI's for a body with ``texts``, else the results answer.

    Args:
        service: The models and settings.
        body: The request body.
        request: The HTTP request (its client's disconnection cancels the work), if any.
        document: Writes each returned document (Infinity returns the text itself, Cohere v1 and
            Jina an object).

    Returns:
        The JSON response.
    """
    ranked, docs = await rank_candidates(service, body, request)
    if body.texts is not None:
        return json_response(
            [{"index": i, "score": score, **({"text": docs[i]} if body.return_text else {})} for i, score in ranked]
        )
    results = []
    for i, score in ranked:
        result: dict[str, Any] = {"index": i, "relevance_score": score}
        if body.return_documents:
            result["document"] = document(docs[i])
        results.append(result)
    return json_response(
        {
            "id": str(uuid.uuid4()),
            "object": "rerank",
            "model": service.rerank_model(body.model).name,
            "results": results,
            "created": int(time.time()),
        }
    )


__all__ = ["RerankRequest", "answer", "check_rerank_truncation", "cohere_document", "rank_candidates"]

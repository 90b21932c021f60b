"""Infinity's paths: ``POST /embeddings``, ``GET /models``, ``POST /rerank``.

Infinity speaks OpenAI's embeddings API without the ``/v1`` prefix, so ``/embeddings`` takes
:class:`~.openai.EmbeddingsRequest` (``dimensions`` 0 means all dimensions, as in Infinity; the
vectors are in the server's ``--embedding-dtype``, as Infinity's, float32 by default) and
``/models`` answers OpenAI's model list (with Infinity's ``capabilities`` and ``backend``).
``/rerank`` is Infinity's path and TEI's: it takes the shared :class:`~.rerank.RerankRequest`;
with ``documents`` each returned document is the text itself (Infinity), with ``texts`` the
answer is TEI's. Errors have Infinity's shape, which is OpenAI's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ..errors import APIError, FamilyRoute, openai_error
from ..service import Service
from . import Routes, rerank
from .openai import EmbeddingsRequest, create_embeddings, model_list


class InfinityRoute(FamilyRoute):
    """A route of Infinity's API: errors in its (OpenAI's) shape."""

    def error_response(self, err: APIError) -> Response:
        """``err`` in Infinity's (OpenAI's) shape."""
        return openai_error(err)


def infinity_document(text: str) -> str:
    """A returned document as Infinity writes it: the text itself."""
    return text


def add_routes(app: FastAPI, service: Service, auth: Sequence[Any]) -> None:
    """Register Infinity's routes on ``app``."""
    routes = Routes(app, InfinityRoute, auth)

    @routes.get("/models")
    def models() -> Response:
        return model_list(service)

    @routes.post("/embeddings")
    async def infinity_embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        if body.dimensions == 0:  # Infinity's default: all dimensions
            body = body.model_copy(update={"dimensions": None})
        return await create_embeddings(service, body, request, dtype=service.settings.embedding_dtype)

    @routes.post("/rerank")  # TEI's path (texts) and Infinity's (documents)
    async def rerank_tei_infinity(body: rerank.RerankRequest, request: Request) -> Response:
        return await rerank.answer(service, body, request, document=infinity_document)


__all__ = ["InfinityRoute", "add_routes", "infinity_document"]

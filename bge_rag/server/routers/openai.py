"""OpenAI's embeddings API: ``POST /v1/embeddings``, ``POST /query/v1/embeddings``, ``GET /v1/models``.

``/v1/embeddings`` takes OpenAI's request (``input`` str or list, ``model``, ``encoding_format``
float or base64, ``dimensions``, ``user``) and answers OpenAI's response with ``usage``, plus
``input_type`` (``"query"`` applies the model's query instruction; default ``"document"``) and
Infinity's ``modality`` / ``id`` / ``created``. Clients that cannot send ``input_type`` ask for
queries with the base URL ``.../query/v1`` or the model name ``<name>-query``. Errors have
OpenAI's shape ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from bge_core.storage import Precision

from ..checks import InputType, Strict, check_dimensions, engine_kind, unsupported
from ..errors import APIError, FamilyRoute, openai_error
from ..responses import json_response
from ..service import QUERY_SUFFIX, Service
from ..work import EncodeKey, b64_float32, truncate_dims
from . import Routes


class EmbeddingsRequest(Strict):
    """``POST /v1/embeddings``: OpenAI's request, plus ``input_type``."""

    input: Any = Field(description="A string or a list of strings.")
    model: str | None = Field(
        None, description="The served model (or '<name>-query' for queries); with one embedding model, any name."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="Keep the first N dimensions (renormalized).")
    user: str | None = None
    input_type: InputType | None = Field(
        None, description="query (applies the model's query instruction) or document (default)."
    )
    modality: str | None = Field(None, description='Infinity\'s field: only "text" is served here.')


class OpenAIRoute(FamilyRoute):
    """A route of OpenAI's API: errors in OpenAI's shape."""

    def error_response(self, err: APIError) -> Response:
        """``err`` in OpenAI's shape."""
        return openai_error(err)


async def create_embeddings(
    service: Service,
    body: EmbeddingsRequest,
    request: Request | None = None,
    *,
    query_path: bool = False,
    dtype: Precision = "float32",
) -> Response:
    """OpenAI's embeddings answer for ``body``; every input is a query when ``query_path``.

    ``dtype`` other than ``float32`` (Infinity's ``--embedding-dtype``) answers quantized vectors,
    each a list of integers; their ``base64`` is Infinity's: the float32 bytes of those integers,
    refused for the bit-packed ``binary`` / ``ubinary``.
    """
    model, alias = service.embedding_model(body.model)
    embedder = model.engine
    if body.modality not in (None, "text"):
        raise unsupported(
            f"'modality' is {body.modality!r}; this server embeds text only (modality 'text').", "modality"
        )
    if body.encoding_format == "base64" and dtype in ("binary", "ubinary"):
        raise unsupported(
            f"'encoding_format' 'base64' is not served for this server's embedding dtype {dtype!r} "
            "(bit-packed bytes, as in Infinity): send 'float' to get the packed bytes as integers.",
            "encoding_format",
        )
    texts = service.texts(body.input)
    kind = engine_kind(body.input_type, query=query_path or alias, query_alias=model.name + QUERY_SUFFIX)
    dims = check_dimensions("dimensions", body.dimensions, embedder.dimension)
    part = await service.encode(texts, EncodeKey(kind), request, model)
    vectors = part.dense
    assert vectors is not None
    if dims is not None and dims < vectors.shape[1]:
        vectors = truncate_dims(vectors, dims, embedder.normalize)
    if dtype != "float32":
        vectors = await service.quantize(vectors, dtype, model)
    if body.encoding_format == "base64":
        embeddings: list[Any] = [b64_float32(v) for v in vectors]
    else:
        embeddings = list(vectors)  # numpy rows: orjson writes each float32 exactly (responses.py), ints as ints
    tokens = sum(part.token_counts)
    return json_response(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)],
            "model": model.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "id": f"bge-rag-{uuid.uuid4()}",  # Infinity's fields
            "created": int(time.time()),
        }
    )


def model_list(service: Service) -> Response:
    """OpenAI's model list, with Infinity's ``capabilities`` and ``backend``."""
    created = int(time.time())
    entry = {"object": "model", "created": created, "owned_by": "bge-rag", "backend": "torch", "stats": {}}
    data = [{"id": name, **entry, "capabilities": ["embed"]} for name in service.embedders]
    data += [{"id": name, **entry, "capabilities": ["rerank"]} for name in service.rerankers]
    return json_response({"object": "list", "data": data})


def add_routes(app: FastAPI, service: Service, auth: Sequence[Any]) -> None:
    """Register OpenAI's routes on ``app``."""
    routes = Routes(app, OpenAIRoute, auth)

    @routes.get("/v1/models")
    def models() -> Response:
        return model_list(service)

    @routes.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        return await create_embeddings(service, body, request)

    @routes.post("/query/v1/embeddings")  # base URL .../query/v1: every input is a query
    async def query_embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        return await create_embeddings(service, body, request, query_path=True)


__all__ = ["EmbeddingsRequest", "OpenAIRoute", "add_routes", "create_embeddings", "model_list"]

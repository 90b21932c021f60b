"""Cohere's API: ``POST /v2/embed``, ``POST /v2/rerank`` and ``POST /v1/rerank``.

``/v2/embed`` and ``/v2/rerank`` serve ``cohere.ClientV2(base_url=...)``; ``/v1/rerank`` is Cohere
v1's and Jina's rerank path (the shared :class:`~.rerank.RerankRequest`, TEI's answer for a body
with ``texts``). Errors have OpenAI's shape.

Shapes follow Cohere's SDK (``EmbedByTypeResponse``, ``V2RerankResponse``). What the fields do here:

- ``input_type``: ``search_query`` applies the model's query instruction; ``search_document``,
  ``classification`` and ``clustering`` apply none; ``image`` is refused (text only).
- ``embedding_types``: ``float``, ``base64`` (little-endian float32), and ``int8``, ``uint8``,
  ``binary``, ``ubinary`` as sentence-transformers' ``quantize_embeddings`` writes them, all from
  the same float vectors; int8 / uint8 ranges are fixed per model (:mod:`..quantization`).
- ``truncate``: ``END`` (default) cuts at ``max_length`` tokens, ``NONE`` answers 413 for a
  longer text, ``START`` is served when nothing needs cutting and refused otherwise.
- ``output_dimension``: the first N dimensions, renormalized. ``max_tokens`` /
  ``max_tokens_per_doc``: accepted when at least the model's ``max_length`` (nothing changes),
  refused below it. ``priority`` is accepted and has no effect (one queue, first come first served).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from bge_core.errors import TextTooLongError
from bge_core.storage import Precision

from ..checks import (
    Strict,
    check_chars,
    check_dimensions,
    check_documents,
    check_positive,
    check_texts,
    engine_kind,
    unsupported,
)
from ..errors import APIError, FamilyRoute, openai_error
from ..responses import json_response
from ..service import QUERY_SUFFIX, Service
from ..work import EncodeKey, b64_float32, rank, truncate_dims
from . import Routes, rerank

if TYPE_CHECKING:
    from bge_core.embedder import Kind

COHERE_INPUT_TYPES: dict[str, Kind] = {
    "search_query": "query",
    "search_document": "document",
    "classification": "document",
    "clustering": "document",
}
EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]


class CohereEmbedRequest(Strict):
    """``POST /v2/embed``."""

    model: str | None = None
    texts: list[Any] | None = None
    images: list[Any] | None = None
    inputs: list[Any] | None = None
    input_type: str | None = None
    embedding_types: list[EmbeddingType] | None = None
    truncate: Literal["NONE", "START", "END"] | None = None
    output_dimension: int | None = None
    max_tokens: int | None = None
    priority: int | None = None


class CohereRerankRequest(Strict):
    """``POST /v2/rerank``."""

    model: str | None = None
    query: str
    documents: list[Any] = Field(description='Strings (or {"text": ...} objects).')
    top_n: int | None = None
    max_tokens_per_doc: int | None = None
    relevant_spans: Any | None = None
    priority: int | None = None


def _texts(body: CohereEmbedRequest, max_items: int, max_chars: int) -> list[str]:
    if body.images or body.input_type == "image":
        raise unsupported("This server embeds text only: send 'texts', not images.", "images")
    if body.inputs is not None:
        if body.texts is not None:
            raise APIError(400, "Send 'texts' or 'inputs', not both.", param="inputs")
        texts = []
        for i, item in enumerate(body.inputs):
            content = item.get("content") if isinstance(item, dict) else None
            if not (
                isinstance(content, list)
                and len(content) == 1
                and isinstance(content[0], dict)
                and content[0].get("type") == "text"
                and isinstance(content[0].get("text"), str)
            ):
                raise unsupported(
                    f'\'inputs[{i}]\' must be {{"content": [{{"type": "text", "text": ...}}]}}: '
                    f"this server embeds one text per input.",
                    "inputs",
                )
            texts.append(content[0]["text"])
        return check_texts(texts, "inputs", max_items=max_items, max_chars=max_chars)
    if body.texts is None:
        raise APIError(400, "Missing required argument 'texts'.", param="texts")
    return check_texts(body.texts, "texts", max_items=max_items, max_chars=max_chars)


class CohereRoute(FamilyRoute):
    """A route of Cohere's (or Jina's) API: errors in OpenAI's shape."""

    def error_response(self, err: APIError) -> Response:
        """``err`` in OpenAI's shape."""
        return openai_error(err)


def add_routes(app: FastAPI, service: Service, auth: Sequence[Any]) -> None:
    """Register ``/v1/rerank``, ``/v2/embed`` and ``/v2/rerank`` on ``app``."""
    routes = Routes(app, CohereRoute, auth)

    @routes.post("/v1/rerank", name="rerank")  # Cohere v1's and Jina's path
    async def rerank_v1(body: rerank.RerankRequest, request: Request) -> Response:
        return await rerank.answer(service, body, request, document=rerank.cohere_document)

    @routes.post("/v2/embed")
    async def embed(body: CohereEmbedRequest, request: Request) -> Response:
        model, alias = service.embedding_model(body.model)
        embedder = model.engine
        s = service.settings
        texts = _texts(body, s.max_inputs, s.max_input_chars)
        if body.input_type is not None and body.input_type not in COHERE_INPUT_TYPES:
            raise APIError(
                400,
                f"Invalid 'input_type' {body.input_type!r}. Valid values are: {', '.join(COHERE_INPUT_TYPES)}.",
                param="input_type",
            )
        kind = COHERE_INPUT_TYPES[body.input_type or "search_document"]
        if alias:
            kind = engine_kind(
                None if body.input_type is None else kind, query=True, query_alias=model.name + QUERY_SUFFIX
            )
        types = body.embedding_types or ["float"]
        max_tokens = check_positive("max_tokens", body.max_tokens)
        if max_tokens is not None and max_tokens < embedder.max_length:
            raise unsupported(
                f"'max_tokens' {max_tokens} is below this server's max_length ({embedder.max_length} "
                f"tokens per text); start the server with --max-length {max_tokens}.",
                "max_tokens",
            )
        dims = check_dimensions("output_dimension", body.output_dimension, embedder.dimension)
        strict = body.truncate in ("NONE", "START")
        try:
            part = await service.encode(texts, EncodeKey(kind, strict=strict), request, model)
        except TextTooLongError as exc:
            if body.truncate == "NONE":
                raise
            raise unsupported(
                f"'truncate': 'START' is not supported: this server cuts the end of a text, and this "
                f"one needs cutting ({exc}).",
                "truncate",
            ) from exc
        vectors = part.dense
        assert vectors is not None
        if dims is not None and dims < vectors.shape[1]:
            vectors = truncate_dims(vectors, dims, embedder.normalize)
        embeddings: dict[str, Any] = {}
        for name in dict.fromkeys(types):  # in the order asked, once each
            if name == "float":
                embeddings[name] = vectors
            elif name == "base64":
                embeddings[name] = [b64_float32(v) for v in vectors]
            else:
                embeddings[name] = await service.quantize(vectors, cast(Precision, name), model)
        return json_response(
            {
                "id": str(uuid.uuid4()),
                "embeddings": embeddings,
                "texts": texts,
                "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": sum(part.token_counts)}},
                "response_type": "embeddings_by_type",
            }
        )

    @routes.post("/v2/rerank", name="rerank")
    async def rerank_v2(body: CohereRerankRequest, request: Request) -> Response:
        served = service.rerank_model(body.model)
        reranker = served.engine
        s = service.settings
        if body.relevant_spans:
            raise unsupported("'relevant_spans' is not served: this server scores whole documents.", "relevant_spans")
        max_tokens = check_positive("max_tokens_per_doc", body.max_tokens_per_doc)
        if max_tokens is not None and max_tokens < reranker.max_length:
            raise unsupported(
                f"'max_tokens_per_doc' {max_tokens} is below this server's reranker max_length "
                f"({reranker.max_length} tokens per pair); start it with --reranker-max-length.",
                "max_tokens_per_doc",
            )
        check_chars(body.query, "query", s.max_input_chars)
        docs = check_documents(body.documents, "documents", max_items=s.max_inputs, max_chars=s.max_input_chars)
        top_n = check_positive("top_n", body.top_n)
        scores = await service.logits(body.query, docs, request, served)
        ranked = rank(scores, top_n, s.rerank_scores)
        return json_response(
            {
                "id": str(uuid.uuid4()),
                "results": [{"index": i, "relevance_score": score} for i, score in ranked],
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
            }
        )


__all__ = ["COHERE_INPUT_TYPES", "CohereEmbedRequest", "CohereRerankRequest", "CohereRoute", "add_routes"]

"""This server's own routes: ``/v1/encode``, ``/``, ``/health``, ``/info``, ``/metrics`` and the API docs.

``POST /v1/encode`` returns BGE-M3's dense, sparse and ColBERT outputs; ``/`` is the web page,
``/metrics`` Prometheus', and the API docs are ``/docs`` and ``/openapi.json``.

``/`` and ``/health`` need no API key; the rest do when one is set (the API docs too, unlike
FastAPI's own ``/docs``). ``/info`` starts with TEI's fields (``model_id``, ``model_type``,
``max_input_length``, ...), then this server's (the models, their outputs, the limits). Errors
have OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field

from bge_core import __version__

from ..admission import check_colbert
from ..checks import InputType, Strict, check_positive, engine_kind
from ..errors import APIError, FamilyRoute, openai_error
from ..responses import json_response
from ..service import QUERY_SUFFIX, EmbedModel, RerankModel, Service
from ..work import EncodeKey, b64_float32
from . import Routes


class EncodeRequest(Strict):
    """``POST /v1/encode``: dense, BGE-M3 sparse and ColBERT outputs of texts."""

    input: Any = Field(description="A string or a list of strings.")
    model: str | None = None
    input_type: InputType | None = None
    dense: bool = True
    sparse: bool = False
    colbert: bool = False
    sparse_top_tokens: int | None = Field(
        None, description="Also return the N heaviest sparse tokens as strings (for display)."
    )
    encoding_format: Literal["float", "base64"] = "float"


class NativeRoute(FamilyRoute):
    """A route of this server's own API: errors in OpenAI's shape."""

    def error_response(self, err: APIError) -> Response:
        """``err`` in OpenAI's shape."""
        return openai_error(err)


async def encode_outputs(service: Service, body: EncodeRequest, request: Request | None = None) -> Response:
    """``/v1/encode``'s answer: per text, the outputs ``body`` asks for."""
    model, alias = service.embedding_model(body.model)
    texts = service.texts(body.input)
    if not (body.dense or body.sparse or body.colbert):
        raise APIError(400, "Request at least one of 'dense', 'sparse' or 'colbert'.")
    for head in ("sparse", "colbert"):
        if getattr(body, head) and not model.heads[head]:
            raise APIError(
                400,
                f"This model has no {head} head (a BGE-M3 model ships {head}_linear.pt); ask for dense output only.",
                param=head,
                code="missing_head",
            )
    top = check_positive("sparse_top_tokens", body.sparse_top_tokens)
    if top is not None and not body.sparse:
        raise APIError(400, "'sparse_top_tokens' needs 'sparse': true.", param="sparse_top_tokens")
    kind = engine_kind(body.input_type, query=alias, query_alias=model.name + QUERY_SUFFIX)
    key = EncodeKey(kind, body.dense, body.sparse, body.colbert, top)
    part = await service.encode(texts, key, request, model)
    if part.colbert is not None:  # checked before the model ran, unless the tokenizer is a slow one
        check_colbert(sum(m.shape[0] for m in part.colbert), service.settings.max_colbert_vectors)
    b64 = body.encoding_format == "base64"
    data = []
    for i in range(len(texts)):
        item: dict[str, Any] = {"object": "encoding", "index": i}
        if part.dense is not None:
            item["dense"] = b64_float32(part.dense[i]) if b64 else part.dense[i]
        if part.sparse is not None:
            item["sparse"] = part.sparse[i].to_qdrant()
            if part.tokens is not None:
                item["sparse"]["tokens"] = [[t, w] for t, w in part.tokens[i]]
        if part.colbert is not None:
            matrix = part.colbert[i]
            item["colbert"] = b64_float32(matrix) if b64 else matrix
            item["colbert_shape"] = list(matrix.shape)
        data.append(item)
    tokens = sum(part.token_counts)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": model.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _embedding_entry(model: EmbedModel) -> dict[str, Any]:
    e = model.engine
    return {
        "id": model.name,
        "query_alias": model.name + QUERY_SUFFIX,
        "dimension": e.dimension,
        "max_length": e.max_length,
        "query_instruction": e.query_instruction,
        "normalize": e.normalize,
        "outputs": {"dense": True, **model.heads},
    }


def _reranker_entry(model: RerankModel, scores: str) -> dict[str, Any]:
    return {"id": model.name, "max_length": model.engine.max_length, "scores": scores}


def server_info(service: Service) -> Response:
    """TEI's ``/info`` fields (of the default model: ``model_id``, ``max_input_length``, ...), then ours.

    ``embedding_model`` and ``reranker`` describe the default ones; ``embedding_models`` and
    ``rerankers`` list every served model, the default first.
    """
    s = service.settings
    embedder, reranker = service.default_embedder, service.default_reranker
    main: Any = embedder or reranker
    if embedder is not None:
        model_type: dict[str, Any] = {"embedding": {"pooling": embedder.engine.pooling}}
    else:
        model_type = {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    return json_response(
        {
            "model_id": main.name,
            "model_sha": None,
            "model_dtype": str(main.engine.dtype).removeprefix("torch."),
            "served_model_name": main.name,
            "model_type": model_type,
            "max_concurrent_requests": s.max_queue_items,
            "max_input_length": main.engine.max_length,
            "max_batch_tokens": main.engine.max_batch_tokens,
            "max_batch_requests": None,
            "max_client_batch_size": s.max_inputs,
            "auto_truncate": True,
            "tokenization_workers": 1,
            "version": __version__,
            "sha": None,
            "docker_label": None,
            "embedding_model": None if embedder is None else _embedding_entry(embedder),
            "reranker": None if reranker is None else _reranker_entry(reranker, s.rerank_scores),
            "embedding_models": [_embedding_entry(m) for m in service.embedders.values()],
            "rerankers": [_reranker_entry(m, s.rerank_scores) for m in service.rerankers.values()],
            "limits": {
                "max_inputs": s.max_inputs,
                "max_input_chars": s.max_input_chars,
                "max_body_bytes": s.max_body_bytes,
                "max_batch_items": s.max_batch_items,
                "max_queue_items": s.max_queue_items,
                "max_piece_items": s.max_piece_items,
                "max_colbert_vectors": s.max_colbert_vectors,
                "max_tokenize_ids": s.max_tokenize_ids,
                "request_timeout": s.request_timeout,
                "work_timeout": s.work_timeout,
                "body_timeout": s.body_timeout,
            },
            "auth": s.api_key is not None,
        }
    )


def _page() -> str:
    return (resources.files("bge_rag.server") / "index.html").read_text(encoding="utf-8")


def add_routes(app: FastAPI, service: Service, auth: Sequence[Any]) -> None:
    """Register this server's own routes on ``app``."""
    routes = Routes(app, NativeRoute, auth)
    page = _page()

    @routes.get("/", public=True, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @routes.get("/health", public=True)
    def health() -> Response:
        return json_response({"status": "ok"})

    # The API docs need the API key like the API (FastAPI's own /docs and /openapi.json would not).
    @routes.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response:
        return json_response(app.openapi())

    @routes.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="bge-rag API")

    @routes.get("/info")
    def info() -> Response:
        return server_info(service)

    @routes.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @routes.post("/v1/encode")
    async def encode(body: EncodeRequest, request: Request) -> Response:
        return await encode_outputs(service, body, request)


__all__ = ["EncodeRequest", "NativeRoute", "add_routes", "encode_outputs", "server_info"]

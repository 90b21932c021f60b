"""The HTTP app: OpenAI-compatible embeddings, Cohere/Jina/TEI-style rerank, BGE-M3 outputs.

Endpoints (``/health`` and the web page at ``/`` need no API key; everything else does when
one is set):

- ``POST /v1/embeddings``: OpenAI's request and response (``input`` str or list, ``model``,
  ``encoding_format`` float or base64, ``dimensions``, ``usage``), plus ``input_type``
  (``"query"`` applies the model's query instruction; default ``"document"``).
- ``POST /v1/rerank`` and ``/rerank``: ``query``, ``documents`` (strings or ``{"text": ...}``),
  ``top_n``, ``return_documents`` -> ``results: [{index, relevance_score, document?}]`` best
  first; TEI's body (``texts``, ``return_text``, ``raw_scores``) gets TEI's answer.
- ``POST /v1/encode``: dense, sparse (``{indices, values, tokens?}``) and ColBERT outputs.
- ``GET /health``, ``GET /v1/models``, ``GET /info``, ``GET /metrics`` (Prometheus).

Example:
    >>> from bge_core import Embedder
    >>> app = create_app(Embedder("BAAI/bge-m3"), settings=ServerSettings(api_key="secret"))
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..embedder import Embedder
from ..errors import BGEOutOfMemoryError, ConfigError, InvalidInputError, MissingHeadError
from ..rerank import Reranker
from .batcher import DynamicBatcher, QueueFullError, RequestTimeoutError
from .middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from .schemas import (
    INPUT_TYPES,
    APIError,
    EmbeddingsRequest,
    EncodeRequest,
    RerankRequest,
    check_chars,
    check_documents,
    check_positive,
    check_texts,
    validation_message,
)
from .settings import ServerSettings
from .work import EncodedPart, EncodeKey, b64_float32, encode_process, rank, rerank_process, truncate_dims

ENDPOINTS = (
    "/", "/health", "/info", "/metrics", "/v1/models", "/v1/embeddings", "/v1/encode", "/v1/rerank", "/rerank",
)


def served_name(engine: Any, name: Optional[str]) -> str:
    """The name clients see: ``name``, else the hub id, else the model folder's name."""
    if name:
        return name
    given = str(engine.model_name)
    return Path(given).name if Path(given).is_dir() else given


def _json(payload: Any, status: int = 200) -> Response:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(data.encode("utf-8"), status_code=status, media_type="application/json")


def _error(status: int, message: str, type: str, code: Optional[str] = None, **headers: str) -> Response:
    err = APIError(status, message, type=type, code=code, headers=headers or None)
    return JSONResponse(err.body(), status_code=status, headers=err.headers)


class _Service:
    """The engines, their batchers and the settings behind the endpoints of one app."""

    def __init__(self, embedder: Optional[Embedder], reranker: Optional[Reranker], settings: ServerSettings) -> None:
        if embedder is None and reranker is None:
            raise ConfigError("create_app needs an embedder, a reranker, or both.")
        self.settings = settings
        self.embedder = embedder
        self.reranker = reranker
        self.metrics = Metrics()
        self.embed_batcher: Optional[DynamicBatcher] = None
        self.rerank_batcher: Optional[DynamicBatcher] = None
        self.heads = {"sparse": False, "colbert": False}
        limits = {"max_batch_items": settings.max_batch_items, "max_queue_items": settings.max_queue_items}
        if embedder is not None:
            self.embedder_name = served_name(embedder, settings.model_name)
            self.heads = {name: embedder.has_head(name) for name in ("sparse", "colbert")}  # type: ignore[arg-type]
            embedder.require_heads(**self.heads)  # load them now, not on a first request
            self.embed_batcher = DynamicBatcher(
                embedder, encode_process(embedder), on_batch=self.metrics.batch_observer("embedder"), **limits
            )
            self.metrics.queue.labels("embedder").set_function(lambda: self.embed_batcher.queued_items)
        if reranker is not None:
            self.reranker_name = served_name(reranker, settings.reranker_name)
            self.rerank_batcher = DynamicBatcher(
                reranker, rerank_process(reranker), on_batch=self.metrics.batch_observer("reranker"), **limits
            )
            self.metrics.queue.labels("reranker").set_function(lambda: self.rerank_batcher.queued_items)

    async def close(self) -> None:
        for batcher in (self.embed_batcher, self.rerank_batcher):
            if batcher is not None:
                await batcher.close()

    # ------------------------------------------------------------------ helpers
    def authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(
                401, "Missing or wrong API key: send the header 'Authorization: Bearer <key>'.",
                type="authentication_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"},
            )

    def need_embedder(self) -> Embedder:
        if self.embedder is None:
            raise APIError(404, "This server has no embedding model (start it with --model).", code="no_model")
        return self.embedder

    def need_reranker(self) -> Reranker:
        if self.reranker is None:
            raise APIError(404, "This server has no reranker (start it with --reranker).", code="no_reranker")
        return self.reranker

    def texts(self, value: Any, name: str = "input") -> list[str]:
        s = self.settings
        return check_texts(value, name, max_items=s.max_inputs, max_chars=s.max_input_chars)

    async def encode(self, texts: list[str], key: EncodeKey) -> EncodedPart:
        assert self.embed_batcher is not None
        part: EncodedPart = await self.embed_batcher.submit(key, texts, self.settings.request_timeout)
        self.metrics.tokens.inc(sum(part.token_counts))
        return part

    # ------------------------------------------------------------------ endpoints
    async def embeddings(self, body: EmbeddingsRequest) -> Response:
        embedder = self.need_embedder()
        texts = self.texts(body.input)
        dims = check_positive(body.dimensions, "dimensions")
        if dims is not None and dims > embedder.dimension:
            raise APIError(
                400, f"'dimensions' is {dims}, but this model's vectors have {embedder.dimension} dimensions.",
                param="dimensions",
            )
        part = await self.encode(texts, EncodeKey(INPUT_TYPES[body.input_type or "document"]))
        vectors = part.dense
        assert vectors is not None
        if dims is not None and dims < vectors.shape[1]:
            vectors = truncate_dims(vectors, dims, embedder.normalize)
        if body.encoding_format == "base64":
            embeddings: list[Any] = [b64_float32(v) for v in vectors]
        else:
            embeddings = vectors.tolist()
        tokens = sum(part.token_counts)
        return _json({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)],
            "model": self.embedder_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    async def encode_endpoint(self, body: EncodeRequest) -> Response:
        self.need_embedder()
        texts = self.texts(body.input)
        if not (body.dense or body.sparse or body.colbert):
            raise APIError(400, "Request at least one of 'dense', 'sparse' or 'colbert'.")
        for head in ("sparse", "colbert"):
            if getattr(body, head) and not self.heads[head]:
                raise APIError(
                    400, f"This model has no {head} head (a BGE-M3 model ships {head}_linear.pt); "
                    f"ask for dense output only.", param=head, code="missing_head",
                )
        top = check_positive(body.sparse_top_tokens, "sparse_top_tokens")
        if top is not None and not body.sparse:
            raise APIError(400, "'sparse_top_tokens' needs 'sparse': true.", param="sparse_top_tokens")
        key = EncodeKey(INPUT_TYPES[body.input_type or "document"], body.dense, body.sparse, body.colbert, top)
        part = await self.encode(texts, key)
        b64 = body.encoding_format == "base64"
        data = []
        for i in range(len(texts)):
            item: dict[str, Any] = {"object": "encoding", "index": i}
            if part.dense is not None:
                item["dense"] = b64_float32(part.dense[i]) if b64 else part.dense[i].tolist()
            if part.sparse is not None:
                item["sparse"] = part.sparse[i].to_qdrant()
                if part.tokens is not None:
                    item["sparse"]["tokens"] = [[t, w] for t, w in part.tokens[i]]
            if part.colbert is not None:
                matrix = part.colbert[i]
                item["colbert"] = b64_float32(matrix) if b64 else matrix.tolist()
                item["colbert_shape"] = list(matrix.shape)
            data.append(item)
        tokens = sum(part.token_counts)
        return _json({
            "object": "list", "data": data, "model": self.embedder_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    async def rerank(self, body: RerankRequest) -> Response:
        self.need_reranker()
        tei = body.texts is not None
        if (body.documents is None) == (body.texts is None):
            raise APIError(400, "Send the candidates as 'documents' (Cohere, Jina) or as 'texts' (TEI), not both.",
                           param="documents")
        s = self.settings
        check_chars(body.query, "query", s.max_input_chars)
        name = "texts" if tei else "documents"
        docs = check_documents(body.texts if tei else body.documents, name,  # type: ignore[arg-type]
                               max_items=s.max_inputs, max_chars=s.max_input_chars)
        top_n = check_positive(body.top_n, "top_n")
        scores: list[float] = []
        if docs:
            assert self.rerank_batcher is not None
            scores = await self.rerank_batcher.submit("pairs", [(body.query, d) for d in docs], s.request_timeout)
        raw = s.rerank_scores == "raw" if body.raw_scores is None else body.raw_scores
        ranked = rank(scores, top_n, "raw" if raw else "sigmoid")
        if tei:
            return _json([
                {"index": i, "score": score, **({"text": docs[i]} if body.return_text else {})} for i, score in ranked
            ])
        results = []
        for i, score in ranked:
            result: dict[str, Any] = {"index": i, "relevance_score": score}
            if body.return_documents:
                result["document"] = {"text": docs[i]}
            results.append(result)
        return _json({"id": str(uuid.uuid4()), "object": "rerank", "model": self.reranker_name, "results": results})

    def models(self) -> Response:
        created = int(time.time())
        data = []
        if self.embedder is not None:
            data.append({"id": self.embedder_name, "object": "model", "created": created, "owned_by": "bge-rag"})
        if self.reranker is not None:
            data.append({"id": self.reranker_name, "object": "model", "created": created, "owned_by": "bge-rag"})
        return _json({"object": "list", "data": data})

    def info(self) -> Response:
        s = self.settings
        embedder, reranker = self.embedder, self.reranker
        return _json({
            "version": __version__,
            "embedding_model": None if embedder is None else {
                "id": self.embedder_name,
                "dimension": embedder.dimension,
                "max_length": embedder.max_length,
                "query_instruction": embedder.query_instruction,
                "normalize": embedder.normalize,
                "outputs": {"dense": True, **self.heads},
            },
            "reranker": None if reranker is None else {
                "id": self.reranker_name,
                "max_length": reranker.max_length,
                "scores": s.rerank_scores,
            },
            "limits": {
                "max_inputs": s.max_inputs, "max_input_chars": s.max_input_chars, "max_body_bytes": s.max_body_bytes,
                "max_batch_items": s.max_batch_items, "max_queue_items": s.max_queue_items,
                "request_timeout": s.request_timeout,
            },
            "auth": s.api_key is not None,
        })


def _page() -> str:
    return (resources.files(__package__) / "index.html").read_text(encoding="utf-8")


def create_app(
    embedder: Optional[Embedder] = None,
    reranker: Optional[Reranker] = None,
    *,
    settings: Optional[ServerSettings] = None,
) -> FastAPI:
    """The ASGI app serving ``embedder`` and/or ``reranker`` (one model each).

    Args:
        embedder: Serves ``/v1/embeddings`` and ``/v1/encode`` (sparse/ColBERT when the model
            has BGE-M3 heads, loaded here).
        reranker: Serves ``/v1/rerank`` and ``/rerank``.
        settings: Limits, API key, CORS (default :class:`ServerSettings`).

    Raises:
        ConfigError: neither an embedder nor a reranker.
    """
    service = _Service(embedder, reranker, settings or ServerSettings())
    page = _page()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await service.close()

    app = FastAPI(
        title="bge-rag", version=__version__, lifespan=lifespan,
        description="OpenAI-compatible embeddings and Cohere/Jina/TEI-style reranking with BGE models.",
    )
    app.state.service = service
    auth = [Depends(service.authorize)]

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/v1/models", dependencies=auth)
    def models() -> Response:
        return service.models()

    @app.get("/info", dependencies=auth)
    def info() -> Response:
        return service.info()

    @app.get("/metrics", dependencies=auth)
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/embeddings", dependencies=auth)
    async def embeddings(body: EmbeddingsRequest) -> Response:
        return await service.embeddings(body)

    @app.post("/v1/encode", dependencies=auth)
    async def encode(body: EncodeRequest) -> Response:
        return await service.encode_endpoint(body)

    @app.post("/v1/rerank", dependencies=auth)
    @app.post("/rerank", dependencies=auth)  # Cohere's and Jina's path, and TEI's
    async def rerank(body: RerankRequest) -> Response:
        return await service.rerank(body)

    _add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.settings.max_body_bytes)
    if service.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(service.settings.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, endpoints=ENDPOINTS)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> Response:
        return _error(400, validation_message(list(exc.errors())), "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        messages = {
            400: f"Malformed JSON body (it must be UTF-8 JSON): {exc.detail}.",  # FastAPI's body-parsing error
            404: "Unknown path; see GET /v1/models and the docs at /docs.",
            405: "Method not allowed.",
        }
        message = messages.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, message, "invalid_request_error", **(exc.headers or {}))

    @app.exception_handler(QueueFullError)
    async def queue_full(_request: Request, exc: QueueFullError) -> Response:
        return _error(429, str(exc), "overloaded_error", "queue_full", **{"Retry-After": "1"})

    @app.exception_handler(RequestTimeoutError)
    async def timed_out(_request: Request, exc: RequestTimeoutError) -> Response:
        return _error(503, str(exc), "overloaded_error", "timeout", **{"Retry-After": "1"})

    @app.exception_handler(BGEOutOfMemoryError)
    async def out_of_memory(_request: Request, exc: BGEOutOfMemoryError) -> Response:
        return _error(503, f"{exc} Send fewer or shorter texts.", "overloaded_error", "out_of_memory")

    @app.exception_handler(MissingHeadError)
    async def missing_head(_request: Request, exc: MissingHeadError) -> Response:
        return _error(400, str(exc), "invalid_request_error", "missing_head")

    @app.exception_handler(InvalidInputError)
    async def invalid_input(_request: Request, exc: InvalidInputError) -> Response:
        return _error(400, str(exc), "invalid_request_error")

    @app.exception_handler(Exception)
    async def server_error(_request: Request, exc: Exception) -> Response:
        # Starlette re-raises the exception after this answer, so uvicorn logs its traceback.
        return _error(500, f"Internal error: {type(exc).__name__}. See the server log.", "server_error")


__all__ = ["ENDPOINTS", "create_app", "served_name"]

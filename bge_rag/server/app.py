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

import asyncio
import hmac
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from bge_core import __version__
from bge_core.embedder import Embedder
from bge_core.aio import run_serialized
from bge_core.errors import BGEOutOfMemoryError, ConfigError, InvalidInputError, MissingHeadError, TextTooLongError
from bge_core.rerank import Reranker
from bge_core import join_parts
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
    unsupported,
    validation_message,
)
from .cohere import add_cohere_routes
from .responses import json_response
from .settings import ServerSettings
from .tei import add_tei_routes
from .work import (
    EncodedPart,
    EncodeKey,
    ServerTokenizer,
    b64_float32,
    encode_process,
    merge_scores,
    rank,
    rerank_process,
    truncate_dims,
)

ENDPOINTS = (
    "/", "/health", "/info", "/metrics", "/v1/models", "/v1/embeddings", "/v1/encode", "/v1/rerank", "/rerank",
    "/query/v1/embeddings", "/embeddings", "/models", "/embed", "/embed_sparse", "/tokenize", "/decode",
    "/v2/embed", "/v2/rerank", "/docs", "/openapi.json",
)
#: Paths answering errors in TEI's shape (``{"error": ..., "error_type": ...}``).
TEI_PATHS = frozenset({"/embed", "/embed_sparse", "/tokenize", "/decode"})
#: The suffix of the served model name that asks for queries (``bge-m3-query``), for OpenAI-shaped
#: clients that cannot send ``input_type``; ``/query/v1`` as base URL does the same.
QUERY_SUFFIX = "-query"


class ClientGone(Exception):
    """The client disconnected before its answer was ready; its queued work was dropped."""


def served_name(engine: Any, name: Optional[str]) -> str:
    """The name clients see: ``name``, else the hub id, else the model folder's name."""
    if name:
        return name
    given = str(engine.model_name)
    return Path(given).name if Path(given).is_dir() else given


_json = json_response


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
        limits = {"max_batch_items": settings.max_batch_items, "max_queue_items": settings.max_queue_items,
                  "max_piece_items": settings.max_piece_items}
        self.embed_tokenizer: Optional[ServerTokenizer] = None
        self.rerank_tokenizer: Optional[ServerTokenizer] = None
        if embedder is not None:
            self.embedder_name = served_name(embedder, settings.model_name)
            self.heads = {name: embedder.has_head(name) for name in ("sparse", "colbert")}  # type: ignore[arg-type]
            embedder.require_heads(**self.heads)  # load them now, not on a first request
            self.embed_tokenizer = ServerTokenizer.for_engine(embedder.tokenizer)
            self.embed_batcher = DynamicBatcher(
                embedder, encode_process(embedder, self.embed_tokenizer if settings.cut_long_texts else None),
                merge=join_parts,  # a split request's EncodedParts, in order
                on_batch=self.metrics.batch_observer("embedder"), **limits,
            )
            self.metrics.queue.labels("embedder").set_function(lambda: self.embed_batcher.queued_items)
        if reranker is not None:
            self.reranker_name = served_name(reranker, settings.reranker_name)
            self.rerank_tokenizer = ServerTokenizer.for_engine(reranker.tokenizer)
            self.rerank_batcher = DynamicBatcher(
                reranker, rerank_process(reranker, self.rerank_tokenizer if settings.cut_long_texts else None),
                merge=merge_scores,
                on_batch=self.metrics.batch_observer("reranker"), **limits,
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

    async def encode(self, texts: list[str], key: EncodeKey, request: Optional[Request] = None) -> EncodedPart:
        assert self.embed_batcher is not None
        part: EncodedPart = await while_connected(
            request, self.embed_batcher.submit(key, texts, self.settings.request_timeout)
        )
        self.metrics.tokens.inc(sum(part.token_counts))
        return part

    async def logits(self, query: str, docs: list[str], request: Optional[Request] = None) -> list[float]:
        """Raw reranker logits of ``(query, doc)`` pairs, in input order."""
        if not docs:
            return []
        assert self.rerank_batcher is not None
        pairs = [(query, d) for d in docs]
        return await while_connected(request, self.rerank_batcher.submit("pairs", pairs, self.settings.request_timeout))

    def query_alias(self, model: Optional[str]) -> bool:
        """Whether ``model`` names the query alias of the embedding model (``<name>-query``)."""
        return bool(model) and self.embedder is not None and model == self.embedder_name + QUERY_SUFFIX

    def kind(self, input_type: Optional[str], *, query: bool) -> str:
        """The engine kind of ``input_type``; ``query`` when the path or model name asks for queries."""
        if not query:
            return INPUT_TYPES[input_type or "document"]
        if input_type is not None and INPUT_TYPES[input_type] != "query":
            raise APIError(
                400, f"'input_type' is {input_type!r}, but this path or model name serves queries "
                f"(/query/v1 or '{self.embedder_name}{QUERY_SUFFIX}'); use /v1 and the plain model name for documents.",
                param="input_type",
            )
        return "query"

    async def tokenize(self, texts: list[str], add_special_tokens: bool) -> list[list[dict[str, Any]]]:
        engine, tok = self._tokenizer()
        return await run_serialized(engine, tok.tokenize, texts, add_special_tokens)

    async def decode(self, ids: list[list[int]], skip_special_tokens: bool) -> list[str]:
        engine, tok = self._tokenizer()
        for i, row in enumerate(ids):
            for token in row:
                if not 0 <= token < tok.vocab_size:
                    raise APIError(400, f"'ids' holds {token} (in sequence {i}); token ids of this model are "
                                   f"0..{tok.vocab_size - 1}.", param="ids")
        return await run_serialized(engine, tok.decode, ids, skip_special_tokens)

    def _tokenizer(self) -> tuple[Any, ServerTokenizer]:
        engine, tok = (self.embedder, self.embed_tokenizer) if self.embedder is not None else (
            self.reranker, self.rerank_tokenizer)
        if tok is None:
            raise APIError(424, "This model has a slow (Python) tokenizer; /tokenize and /decode need a fast one.",
                           code="no_fast_tokenizer")
        return engine, tok

    # ------------------------------------------------------------------ endpoints
    async def embeddings(
        self, body: EmbeddingsRequest, request: Optional[Request] = None, *, query_path: bool = False,
        infinity: bool = False,
    ) -> Response:
        embedder = self.need_embedder()
        if body.modality not in (None, "text"):
            raise unsupported(f"'modality' is {body.modality!r}; this server embeds text only (modality 'text').",
                              "modality")
        texts = self.texts(body.input)
        kind = self.kind(body.input_type, query=query_path or self.query_alias(body.model))
        dims = body.dimensions
        if infinity and dims == 0:  # Infinity's default: all dimensions
            dims = None
        dims = check_positive(dims, "dimensions")
        if dims is not None and dims > embedder.dimension:
            raise APIError(
                400, f"'dimensions' is {dims}, but this model's vectors have {embedder.dimension} dimensions.",
                param="dimensions",
            )
        part = await self.encode(texts, EncodeKey(kind), request)
        vectors = part.dense
        assert vectors is not None
        if dims is not None and dims < vectors.shape[1]:
            vectors = truncate_dims(vectors, dims, embedder.normalize)
        if body.encoding_format == "base64":
            embeddings: list[Any] = [b64_float32(v) for v in vectors]
        else:
            embeddings = list(vectors)  # float32 rows: orjson writes each float32 exactly (responses.py)
        tokens = sum(part.token_counts)
        return _json({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)],
            "model": self.embedder_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "id": f"bge-rag-{uuid.uuid4()}",  # Infinity's fields
            "created": int(time.time()),
        })

    async def encode_endpoint(self, body: EncodeRequest, request: Optional[Request] = None) -> Response:
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
        part = await self.encode(texts, key, request)
        if part.colbert is not None:
            vectors = sum(m.shape[0] for m in part.colbert)
            limit = self.settings.max_colbert_vectors
            if vectors > limit:
                raise APIError(
                    413, f"The ColBERT output of this request has {vectors} vectors (one per token); this server "
                    f"returns at most {limit} per request (--max-colbert-vectors). Send fewer or shorter texts.",
                    param="colbert", code="output_too_large",
                )
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
        return _json({
            "object": "list", "data": data, "model": self.embedder_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    async def rerank(self, body: RerankRequest, request: Optional[Request] = None, *, infinity: bool = False) -> Response:
        """Cohere v1 / Jina (``documents``), TEI (``texts``) and, at ``/rerank``, Infinity."""
        reranker = self.need_reranker()
        tei = body.texts is not None
        if (body.documents is None) == (body.texts is None):
            raise APIError(400, "Send the candidates as 'documents' (Cohere, Jina) or as 'texts' (TEI), not both.",
                           param="documents")
        check_rerank_truncation(body.truncate, body.truncation_direction)
        if body.rank_fields is not None and body.rank_fields != ["text"]:
            raise unsupported(f"'rank_fields' is {body.rank_fields!r}; this server ranks documents by their 'text' "
                              f"only (send rank_fields ['text'] or leave it out).", "rank_fields")
        if body.max_chunks_per_doc is not None:
            raise unsupported(f"'max_chunks_per_doc' is not supported: this server truncates each (query, document) "
                              f"pair to {reranker.max_length} tokens instead of chunking documents.",
                              "max_chunks_per_doc")
        s = self.settings
        check_chars(body.query, "query", s.max_input_chars)
        name = "texts" if tei else "documents"
        docs = check_documents(body.texts if tei else body.documents, name,  # type: ignore[arg-type]
                               max_items=s.max_inputs, max_chars=s.max_input_chars)
        top_n = check_positive(body.top_n, "top_n")
        scores = await self.logits(body.query, docs, request)
        raw = s.rerank_scores == "raw" if body.raw_scores is None else body.raw_scores
        ranked = rank(scores, top_n, "raw" if raw else "sigmoid")
        if tei:
            return _json([
                {"index": i, "score": score, **({"text": docs[i]} if body.return_text else {})} for i, score in ranked
            ])
        results = []
        for i, score in ranked:
            result: dict[str, Any] = {"index": i, "relevance_score": score}
            if body.return_documents:  # Infinity returns the text itself, Cohere v1 and Jina an object
                result["document"] = docs[i] if infinity else {"text": docs[i]}
            results.append(result)
        return _json({
            "id": str(uuid.uuid4()), "object": "rerank", "model": self.reranker_name, "results": results,
            "created": int(time.time()),
        })

    def models(self) -> Response:
        """OpenAI's model list, with Infinity's ``capabilities`` and ``backend``."""
        created = int(time.time())
        data = []
        entry = {"object": "model", "created": created, "owned_by": "bge-rag", "backend": "torch", "stats": {}}
        if self.embedder is not None:
            data.append({"id": self.embedder_name, **entry, "capabilities": ["embed"]})
        if self.reranker is not None:
            data.append({"id": self.reranker_name, **entry, "capabilities": ["rerank"]})
        return _json({"object": "list", "data": data})

    def info(self) -> Response:
        """TEI's ``/info`` fields (``model_id``, ``model_type``, ``max_input_length``, ...), then ours."""
        s = self.settings
        embedder, reranker = self.embedder, self.reranker
        main: Any = embedder if embedder is not None else reranker
        if embedder is not None:
            model_type: dict[str, Any] = {"embedding": {"pooling": embedder.pooling}}
        else:
            model_type = {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
        return _json({
            "model_id": self.embedder_name if embedder is not None else self.reranker_name,
            "model_sha": None,
            "model_dtype": str(main.dtype).removeprefix("torch."),
            "served_model_name": self.embedder_name if embedder is not None else self.reranker_name,
            "model_type": model_type,
            "max_concurrent_requests": s.max_queue_items,
            "max_input_length": main.max_length,
            "max_batch_tokens": main.max_batch_tokens,
            "max_batch_requests": None,
            "max_client_batch_size": s.max_inputs,
            "auto_truncate": True,
            "tokenization_workers": 1,
            "version": __version__,
            "sha": None,
            "docker_label": None,
            "embedding_model": None if embedder is None else {
                "id": self.embedder_name,
                "query_alias": self.embedder_name + QUERY_SUFFIX,
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
                "max_piece_items": s.max_piece_items, "max_colbert_vectors": s.max_colbert_vectors,
                "request_timeout": s.request_timeout, "body_timeout": s.body_timeout,
            },
            "auth": s.api_key is not None,
        })


async def _disconnect(request: Request) -> None:
    """Returns when the client of ``request`` disconnects (its body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def while_connected(request: Optional[Request], work: Any) -> Any:
    """Await ``work`` unless the client disconnects first: then cancel it (dropping its queued
    pieces) and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    if request is None:
        return await task
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the client is gone; nobody reads the result
        pass
    raise ClientGone()


def check_rerank_truncation(truncate: Optional[bool], direction: Optional[str]) -> None:
    """TEI's ``truncate`` / ``truncation_direction`` for rerank: what FlagReranker does is accepted."""
    if truncate is False:
        raise unsupported("'truncate': false is not supported for rerank: this server always truncates each "
                          "(query, document) pair as FlagReranker does (the query to 3/4 of max_length, then the "
                          "document's end). Send truncate true or leave it out.", "truncate")
    if direction is not None and direction.lower() == "left":
        raise unsupported("'truncation_direction': 'left' is not supported for rerank: this server cuts the end of "
                          "the document, as FlagReranker does (send 'right' or leave it out).",
                          "truncation_direction")


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
        title="bge-rag", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
        description="OpenAI-compatible embeddings, TEI, Infinity and Cohere v2 routes, and Cohere/Jina/TEI-style "
        "reranking with BGE models.",
    )
    app.state.service = service
    auth = [Depends(service.authorize)]

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    # The API docs need the API key like the API (FastAPI's own /docs and /openapi.json would not).
    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    def openapi() -> Response:
        return _json(app.openapi())

    @app.get("/docs", dependencies=auth, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="bge-rag API")

    @app.get("/v1/models", dependencies=auth)
    @app.get("/models", dependencies=auth)  # Infinity's path
    def models() -> Response:
        return service.models()

    @app.get("/info", dependencies=auth)
    def info() -> Response:
        return service.info()

    @app.get("/metrics", dependencies=auth)
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/embeddings", dependencies=auth)
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        return await service.embeddings(body, request)

    @app.post("/embeddings", dependencies=auth)  # Infinity's path (dimensions 0: all)
    async def infinity_embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        return await service.embeddings(body, request, infinity=True)

    @app.post("/query/v1/embeddings", dependencies=auth)  # base URL .../query/v1: every input is a query
    async def query_embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        return await service.embeddings(body, request, query_path=True)

    @app.post("/v1/encode", dependencies=auth)
    async def encode(body: EncodeRequest, request: Request) -> Response:
        return await service.encode_endpoint(body, request)

    @app.post("/v1/rerank", dependencies=auth)  # Cohere v1's and Jina's path
    async def rerank(body: RerankRequest, request: Request) -> Response:
        return await service.rerank(body, request)

    @app.post("/rerank", dependencies=auth)  # TEI's path (texts) and Infinity's (documents)
    async def rerank_tei_infinity(body: RerankRequest, request: Request) -> Response:
        return await service.rerank(body, request, infinity=True)

    add_tei_routes(app, service, auth)
    add_cohere_routes(app, service, auth)

    _add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.settings.max_body_bytes,
                       timeout=service.settings.body_timeout)
    if service.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(service.settings.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, endpoints=ENDPOINTS)
    return app


def _shaped(request: Request, status: int, message: str, type: str, code: Optional[str] = None,
            headers: Optional[dict[str, str]] = None) -> Response:
    """An error in the shape of the API family of ``request``'s path: TEI's or OpenAI's."""
    if request.url.path in TEI_PATHS or (request.url.path == "/" and request.method == "POST"):
        tei_type = {413: "Validation", 429: "Overloaded", 503: "Overloaded", 424: "Backend"}.get(status, "Validation")
        if status >= 500 and status != 503:
            tei_type = "Backend"
        return JSONResponse({"error": message, "error_type": tei_type}, status_code=status, headers=headers)
    err = APIError(status, message, type=type, code=code, headers=headers)
    return JSONResponse(err.body(), status_code=status, headers=err.headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        if request.url.path in TEI_PATHS or request.url.path == "/":
            return _shaped(request, exc.status, exc.message, exc.type, exc.code, exc.headers)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return _shaped(request, 400, validation_message(list(exc.errors())), "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {
            400: f"Malformed JSON body (it must be UTF-8 JSON): {exc.detail}.",  # FastAPI's body-parsing error
            404: "Unknown path; see GET /v1/models and the docs at /docs.",
            405: "Method not allowed.",
        }
        message = messages.get(exc.status_code, str(exc.detail))
        return _shaped(request, exc.status_code, message, "invalid_request_error", headers=dict(exc.headers or {}))

    @app.exception_handler(ClientGone)
    async def client_gone(_request: Request, _exc: ClientGone) -> Response:
        # Nobody reads this answer; 499 (nginx's "client closed request") keeps it apart in /metrics.
        return Response(status_code=499)

    @app.exception_handler(QueueFullError)
    async def queue_full(request: Request, exc: QueueFullError) -> Response:
        return _shaped(request, 429, str(exc), "overloaded_error", "queue_full", {"Retry-After": "1"})

    @app.exception_handler(RequestTimeoutError)
    async def timed_out(request: Request, exc: RequestTimeoutError) -> Response:
        return _shaped(request, 503, str(exc), "overloaded_error", "timeout", {"Retry-After": "1"})

    @app.exception_handler(BGEOutOfMemoryError)
    async def out_of_memory(request: Request, exc: BGEOutOfMemoryError) -> Response:
        return _shaped(request, 503, f"{exc} Send fewer or shorter texts.", "overloaded_error", "out_of_memory")

    @app.exception_handler(MissingHeadError)
    async def missing_head(request: Request, exc: MissingHeadError) -> Response:
        return _shaped(request, 400, str(exc), "invalid_request_error", "missing_head")

    @app.exception_handler(TextTooLongError)
    async def too_long(request: Request, exc: TextTooLongError) -> Response:
        # Only requests that asked not to truncate (TEI's truncate=false, Cohere's truncate=NONE) get here.
        return _shaped(request, 413, str(exc), "invalid_request_error", "input_too_long")

    @app.exception_handler(InvalidInputError)
    async def invalid_input(request: Request, exc: InvalidInputError) -> Response:
        return _shaped(request, 400, str(exc), "invalid_request_error")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette re-raises the exception after this answer, so uvicorn logs its traceback.
        return _shaped(request, 500, f"Internal error: {type(exc).__name__}. See the server log.", "server_error")


__all__ = ["ENDPOINTS", "QUERY_SUFFIX", "ClientGone", "create_app", "served_name", "while_connected"]

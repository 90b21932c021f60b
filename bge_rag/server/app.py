"""The HTTP app: the service core, one router per foreign API, the error handlers and middleware.

Endpoints (``/health`` and the web page at ``/`` need no API key; everything else does when
one is set), by router (:mod:`.routers`):

- OpenAI: ``POST /v1/embeddings`` and ``/query/v1/embeddings``, ``GET /v1/models``.
- Infinity: ``POST /embeddings``, ``GET /models``, ``POST /rerank`` (also TEI's rerank path).
- Cohere / Jina: ``POST /v1/rerank``, ``/v2/embed``, ``/v2/rerank``.
- TEI: ``POST /embed``, ``/``, ``/embed_sparse``, ``/tokenize``, ``/decode``.
- This server's own: ``POST /v1/encode`` (dense, sparse and ColBERT outputs), ``GET /``,
  ``/health``, ``/info``, ``/metrics`` (Prometheus), ``/docs``, ``/openapi.json``.

Example:
    >>> from bge_core import Embedder
    >>> from bge_rag.server import ServerSettings
    >>> app = create_app(Embedder("BAAI/bge-m3"), settings=ServerSettings(api_key="secret"))
    >>> import uvicorn
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from bge_core import __version__
from bge_core.embedder import Embedder
from bge_core.rerank import Reranker

from .errors import add_error_handlers
from .middleware import BodyLimitMiddleware, MetricsMiddleware
from .routers import cohere, infinity, native, openai, tei
from .service import Service
from .settings import ServerSettings

#: The routers, in the order their routes are registered: the native ``GET /`` comes before TEI's
#: ``POST /``, so another method on ``/`` is answered (405) in the native (OpenAI's) error shape.
ROUTERS = (native, openai, infinity, cohere, tei)


def create_app(
    embedder: Embedder | Mapping[str, Embedder] | None = None,
    reranker: Reranker | Mapping[str, Reranker] | None = None,
    *,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """The ASGI app serving ``embedder`` and/or ``reranker``.

    Args:
        embedder: Serves ``/v1/embeddings`` and ``/v1/encode`` (sparse/ColBERT when the model
            has BGE-M3 heads, loaded here). Several: ``{served name: Embedder}``; requests choose
            one by their ``model`` field, and the first answers requests without one.
        reranker: Serves ``/v1/rerank`` and ``/rerank``; several as for ``embedder``.
        settings: Limits, API key, CORS (default :class:`ServerSettings`).

    Raises:
        ConfigError: neither an embedder nor a reranker, or served names that requests could not
            tell apart (the same name twice, or one that is another model's ``<name>-query``).
    """
    service = Service(embedder, reranker, settings or ServerSettings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await service.close()

    app = FastAPI(
        title="bge-rag",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        description="OpenAI-compatible embeddings, TEI, Infinity and Cohere v2 routes, and Cohere/Jina/TEI-style "
        "reranking with BGE models.",
    )
    app.state.service = service
    auth = [service.authorize]  # checked before a request's body is read (FamilyRoute)
    for router in ROUTERS:
        router.add_routes(app, service, auth)
    add_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=service.settings.max_body_bytes, timeout=service.settings.body_timeout
    )
    if service.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(service.settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    # Metrics label each route's path (a bounded set); any other path counts as "other".
    endpoints = {route.path for route in app.routes if isinstance(route, APIRoute)}
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, endpoints=endpoints)
    return app


__all__ = ["ROUTERS", "create_app"]

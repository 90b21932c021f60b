"""bge_rag.server: the HTTP server behind ``bge-rag serve`` (``pip install 'bge-rag[server]'``).

OpenAI-compatible ``/v1/embeddings``, Cohere/Jina/TEI-style ``/v1/rerank``, BGE-M3 sparse and
ColBERT outputs at ``/v1/encode``, ``/health``, ``/v1/models``, Prometheus ``/metrics`` and a
small web page at ``/``, with concurrent requests coalesced into batches on each model's worker;
one server may serve several models, chosen by the requests' ``model`` field.

Importing this package imports no web framework (``bge_rag.cli`` registers the ``serve``
command from :mod:`bge_rag.server.command`); :func:`create_app` and :func:`serve_in_thread`
import FastAPI and uvicorn when first used.

Example:
    >>> from bge_core import Embedder, Reranker
    >>> from bge_rag.server import ServerSettings, create_app
    >>> app = create_app(Embedder("BAAI/bge-m3"), Reranker("BAAI/bge-reranker-v2-m3"))
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .settings import API_KEY_ENV, ServerSettings


def __getattr__(name: str) -> Any:
    # These import FastAPI / uvicorn: only when asked for.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve_in_thread":
        from .runner import serve_in_thread

        return serve_in_thread
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["API_KEY_ENV", "ServerSettings", "create_app", "serve_in_thread"]

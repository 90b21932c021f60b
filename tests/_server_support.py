"""Helpers for the server tests: a real uvicorn server on a loopback port, in a thread."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bge_core import Embedder, Reranker
from bge_rag.server import ServerSettings, create_app
from bge_rag.server.runner import serve_in_thread

#: The instruction the test servers' embedder puts before queries (fixture folders have none).
QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


def m3_embedder(models: Any, **options: Any) -> Embedder:
    """The fixture BGE-M3 model (dense + sparse + ColBERT), fp32, with a query instruction."""
    options = {"precision": "fp32", "max_length": 128, "query_instruction": QUERY_INSTRUCTION, **options}
    return Embedder(models.m3, **options)


def reranker(models: Any, **options: Any) -> Reranker:
    return Reranker(models.reranker, **{"precision": "fp32", "max_length": 128, **options})


def serve(app: Any):
    """The real server on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    return serve_in_thread(app)


@contextmanager
def serve_engines(embedder: Embedder | None = None, reranker: Reranker | None = None, **settings: Any) -> Iterator[str]:
    """:func:`serve` for ``create_app(embedder, reranker, settings=ServerSettings(**settings))``."""
    with serve(create_app(embedder, reranker, settings=ServerSettings(**settings))) as url:
        yield url


def find_chromium() -> str | None:
    """A Chromium/Chrome binary: ``$BGE_RAG_CHROMIUM``, else the usual names on ``PATH``."""
    candidates = [os.environ.get("BGE_RAG_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


#: Chromium flags for a sandboxed CI machine with no network: nothing is downloaded or synced.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

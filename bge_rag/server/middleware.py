"""ASGI middleware and Prometheus metrics of the server (per app, no global registry)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

_ITEM_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (several apps per process work).

    Exposed at ``GET /metrics``: requests by endpoint and status, request latency, texts (or
    pairs) and requests per engine call, engine-call time, queued items (these four labelled
    ``model``: ``embedder`` or ``reranker``, and ``name``: the served name), tokens embedded.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "bge_rag_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "bge_rag_request_duration_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_items = Histogram(
            "bge_rag_batch_items",
            "Texts (embedder) or pairs (reranker) per engine call",
            ["model", "name"],
            buckets=_ITEM_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "bge_rag_batch_requests",
            "Requests coalesced into one engine call",
            ["model", "name"],
            buckets=_ITEM_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "bge_rag_batch_duration_seconds",
            "Time of one engine call",
            ["model", "name"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Gauge("bge_rag_queue_items", "Texts or pairs waiting for the model", ["model", "name"], registry=r)
        self.tokens = Counter("bge_rag_prompt_tokens", "Tokens read by the embedding model", registry=r)

    def batch_observer(self, model: str, name: str) -> Callable[[int, int, float], None]:
        """A batcher's ``on_batch`` that records each engine call of one served model.

        Args:
            model: The ``model`` label: the kind, ``"embedder"`` or ``"reranker"``.
            name: The ``name`` label: the model's served name.

        Returns:
            ``on_batch(items, requests, seconds)``.
        """
        items, requests, seconds = (
            self.batch_items.labels(model, name),
            self.batch_requests.labels(model, name),
            self.batch_seconds.labels(model, name),
        )

        def observe(n_items: int, n_requests: int, took: float) -> None:
            items.observe(n_items)
            requests.observe(n_requests)
            seconds.observe(took)

        return observe


class MetricsMiddleware:
    """Counts every response (errors from other middleware included) and its latency."""

    def __init__(self, app: Any, metrics: Metrics, endpoints: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection, recording its request's metrics.

        Args:
            scope: The ASGI scope.
            receive: The ASGI receive channel.
            send: The ASGI send channel.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"  # bounded label values
        status: int | None = None
        started = time.perf_counter()
        gone = False

        async def watch_receive() -> dict[str, Any]:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
            return message

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, watch_receive, send_status)
        except BaseException:
            if status is None and not gone:
                status = 500
            raise
        finally:
            # No answer sent: the client left before there was one (499, nginx's "client closed
            # request"), never a server error.
            self.metrics.requests.labels(endpoint, str(status if status is not None else 499)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Answers 413 to a body over ``max_bytes`` and 408 to a body that arrives too slowly.

    A body over ``max_bytes`` (declared or streamed) is refused before it is parsed; 408 goes to a
    body that does not arrive within ``timeout`` seconds (a slow-body client).
    """

    def __init__(self, app: Any, max_bytes: int, timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection, enforcing the body's size and time limits.

        Args:
            scope: The ASGI scope.
            receive: The ASGI receive channel.
            send: The ASGI send channel.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, 413, self._too_large(), "request_too_large")
            return
        # Read the body here (the endpoint would read it whole anyway) and replay it.
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - asyncio.get_running_loop().time(), 0))
            except asyncio.TimeoutError:
                await self._reject(
                    send, 408, f"The request body did not arrive within {self.timeout:g} s.", "request_timeout"
                )
                return
            if message["type"] != "http.request":  # the client disconnected
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send, 413, self._too_large(), "request_too_large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"The request body is larger than this server accepts ({self.max_bytes} bytes)."

    async def _reject(self, send: Send, status: int, message: str, code: str) -> None:
        payload = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
        data = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


__all__ = ["BodyLimitMiddleware", "Metrics", "MetricsMiddleware"]

"""Run the server with uvicorn: in a thread (tests, notebooks, examples) or as ``bge-rag serve``.

:func:`uvicorn_options` adds what uvicorn lacks: a header timeout (a connection that opens and
sends its request headers slowly, or not at all, is answered 408 and closed) and the connection
limit of :class:`~bge_rag.server.ServerSettings`. The HTTP parser is httptools (C) when installed
(the ``server`` extra installs it), else h11; uvicorn runs on uvloop when that is installed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from .settings import ServerSettings

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: 116\r\n\r\n"
)


def _base_protocol() -> tuple[type[asyncio.Protocol], str]:
    """Uvicorn's httptools protocol when httptools is installed, else h11's.

    httptools is a C parser, several times cheaper per request than h11's pure-Python one, and
    what ``uvicorn[standard]`` picks.
    """
    try:
        return _protocol("httptools"), "httptools"
    except ImportError:  # httptools not installed
        return _protocol("h11"), "h11"


def _protocol(parser: str) -> type[asyncio.Protocol]:
    """Uvicorn's HTTP protocol class for ``parser`` (``"httptools"`` or ``"h11"``)."""
    if parser == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    if parser == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    raise ValueError(f"parser must be 'httptools' or 'h11', not {parser!r}")


def header_timeout_protocol(timeout: float, parser: str | None = None) -> type[asyncio.Protocol]:
    """Uvicorn's HTTP protocol, closing connections whose request headers take over ``timeout`` s.

    ``parser`` is ``"httptools"`` or ``"h11"``; by default httptools when it is installed.
    """
    body = (
        b'{"error":{"message":"The request headers did not arrive in time.","type":"invalid_request_error",'
        b'"param":null,"code":"timeout"}}'
    )
    response = _TIMEOUT_RESPONSE.replace(b"116", str(len(body)).encode()) + body
    if parser is None:
        base, parser = _base_protocol()
    else:
        base = _protocol(parser)

    # base is picked at run time (httptools' or h11's protocol class), which mypy cannot subclass.
    class HeaderTimeoutProtocol(base):  # type: ignore[valid-type,misc]
        _header_timer: asyncio.TimerHandle | None = None
        http_parser = parser

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()

        if parser == "h11":

            def handle_events(self) -> None:
                before = self.cycle
                super().handle_events()
                if self.cycle is not before:  # a request's headers arrived
                    self._disarm()
        else:

            def on_headers_complete(self) -> None:
                self._disarm()  # a request's headers arrived
                super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

    return HeaderTimeoutProtocol


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """``uvicorn.Config`` keywords for ``settings``: header timeout and connection limit."""
    return {"http": header_timeout_protocol(settings.header_timeout), "limit_concurrency": settings.max_connections}


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yield its base URL; always stop it.

    ``port=0`` takes a free port. The socket is bound before uvicorn starts, so the port
    cannot be taken by another process in between. An app from ``create_app`` is served with
    its settings' header timeout and connection limit.

    Example:
        >>> import openai
        >>> from bge_core import Embedder
        >>> from bge_rag.server import create_app
        >>> with serve_in_thread(create_app(Embedder("BAAI/bge-small-en-v1.5"))) as url:
        ...     client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        ...     response = client.embeddings.create(model="any", input=["what is BGE?"])
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    service = getattr(getattr(app, "state", None), "service", None)
    options = uvicorn_options(service.settings) if service is not None else {}
    server = uvicorn.Server(
        uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5, **options)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="bge-rag-server")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server thread did not start; see the log above")
            time.sleep(0.01)
        yield f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


__all__ = ["header_timeout_protocol", "serve_in_thread", "uvicorn_options"]

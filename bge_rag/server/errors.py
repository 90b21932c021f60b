"""The server's one error class and its one set of handlers; each API family picks the error body.

Every failure a request can meet (a bad field, a full queue, an engine error, an unknown path)
becomes an :class:`APIError` (status, message, category, parameter, code, headers) in
:func:`as_api_error`. The route that matched the request (also a route that matched its path
but not its method: the 405 answer) writes that error in its API's shape: each router declares
a route class (a :class:`FamilyRoute`) whose ``error_response`` is its API's error body.
Unknown paths, and routes of plain FastAPI route classes, answer in OpenAI's shape
(:func:`openai_error`), which is also the shape of the middleware's 408 and 413 answers.

A :class:`FamilyRoute` also checks each request before FastAPI reads its body: its guards (the API
key) first, then that the body is UTF-8 JSON, so a request without the key gets 401 whatever its
body holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from bge_core.errors import BGEOutOfMemoryError, InvalidInputError, MissingHeadError, TextTooLongError

from .batcher import QueueFullError, RequestTimeoutError, WorkTimeoutError


class APIError(Exception):
    """An error answered with ``status``; the matched route's API decides the body's shape.

    Args:
        status: The HTTP status.
        message: What went wrong and what to send instead.
        type: The error's category, OpenAI's vocabulary (``invalid_request_error``,
            ``authentication_error``, ``overloaded_error``, ``server_error``).
        param: The request field at fault, if one is.
        code: A short machine-readable code (``queue_full``, ``missing_head``, ...).
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).

    Example:
        >>> error = APIError(400, "'top_n' must be a positive integer, got 0.", param="top_n")
        >>> error.status, error.param
        (400, 'top_n')
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers


class ClientGone(Exception):
    """The client disconnected before its answer was ready; its queued work was dropped."""


def openai_error(err: APIError) -> Response:
    """OpenAI's error body ``{"error": {message, type, param, code}}``.

    It is also Infinity's, and this server's default.
    """
    body = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    return JSONResponse(body, status_code=err.status, headers=err.headers)


#: A check a request must pass before its body is read: raises :class:`APIError` (the API key).
Guard = Callable[[Request], None]


class FamilyRoute(APIRoute):
    """A route of one API family: its errors are written by :meth:`error_response`.

    A router subclasses it once, overriding :meth:`error_response` with its API's error body,
    and registers its routes with that subclass (through :class:`~.routers.Routes`, which sets
    :attr:`guards`).
    """

    #: Checks run on each request before its body is read (the API key; none on public routes).
    guards: tuple[Guard, ...] = ()

    def error_response(self, err: APIError) -> Response:
        """``err`` as this route's API writes errors (here OpenAI's shape)."""
        return openai_error(err)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, run after :attr:`guards` and, for a route with a body, the UTF-8 check.

        FastAPI parses the body before it runs a route's dependencies, so checking the API key
        in a dependency would answer a malformed body without the key with 400 instead of 401.
        """
        handle = super().get_route_handler()
        reads_body = self.body_field is not None

        async def guarded(request: Request) -> Response:
            for guard in self.guards:
                guard(request)
            if reads_body:
                require_utf8(await request.body())  # read once; FastAPI reads it from the request's cache
            return await handle(request)

        return guarded


def require_utf8(body: bytes) -> None:
    """Refuse a JSON body in UTF-16 or UTF-32 (Python's ``json`` would read it; RFC 8259 says UTF-8).

    Raises:
        APIError: 400 naming the body's encoding and UTF-8.
    """
    encoding = json.detect_encoding(body)  # from the first bytes: a BOM, or the zero bytes of "{" in UTF-16/32
    if not encoding.startswith("utf-8"):  # "utf-8-sig" (a UTF-8 BOM) is still UTF-8
        name = "-".join(encoding.split("-")[:2]).upper()
        raise APIError(
            400,
            f"The request body is {name}-encoded; this server reads JSON in UTF-8 only: send the body encoded "
            "as UTF-8.",
            code="invalid_encoding",
        )


def _http_error(exc: StarletteHTTPException) -> APIError:
    messages = {
        400: f"Malformed JSON body (it must be UTF-8 JSON): {exc.detail}.",  # FastAPI's body-parsing error
        404: "Unknown path; see GET /v1/models and the docs at /docs.",
        405: "Method not allowed.",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return APIError(exc.status_code, message, headers=dict(exc.headers or {}))


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One readable sentence from pydantic / FastAPI validation errors."""
    messages = []
    for error in errors[:5]:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        kind = error.get("type", "")
        if kind == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "invalid JSON")
            return f"Malformed JSON body: {detail} (at character {loc[0] if loc else '?'})."
        if not loc and kind in ("missing", "model_attributes_type", "dict_type", "model_type"):
            return "The request body must be a JSON object, sent with 'Content-Type: application/json'."
        if kind == "extra_forbidden":
            messages.append(f"Unrecognized request argument '{'.'.join(loc)}'")
        elif kind == "missing":
            messages.append(f"Missing required argument '{'.'.join(loc)}'")
        else:
            messages.append(f"'{'.'.join(loc)}': {error.get('msg', 'invalid value')}")
    return "; ".join(messages) + "."


def _validation_error(exc: RequestValidationError) -> APIError:
    return APIError(400, validation_message(list(exc.errors())))


#: How each failure becomes an :class:`APIError`, looked up along the exception's MRO (the most
#: specific class first, as Starlette looks up its handlers).
_TRANSLATIONS: dict[type[Exception], Callable[[Any], APIError]] = {
    APIError: lambda exc: exc,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error,
    QueueFullError: lambda exc: APIError(
        429, str(exc), type="overloaded_error", code="queue_full", headers={"Retry-After": "1"}
    ),
    RequestTimeoutError: lambda exc: APIError(
        503, str(exc), type="overloaded_error", code="timeout", headers={"Retry-After": "1"}
    ),
    # Started work that ran out of time: waiting would not bring the discarded part back, so no Retry-After.
    WorkTimeoutError: lambda exc: APIError(503, str(exc), type="overloaded_error", code="work_timeout"),
    BGEOutOfMemoryError: lambda exc: APIError(
        503, f"{exc} Send fewer or shorter texts.", type="overloaded_error", code="out_of_memory"
    ),
    MissingHeadError: lambda exc: APIError(400, str(exc), code="missing_head"),
    # Only requests that asked not to truncate (TEI's truncate=false, Cohere's truncate=NONE) get here.
    TextTooLongError: lambda exc: APIError(413, str(exc), code="input_too_long"),
    InvalidInputError: lambda exc: APIError(400, str(exc)),
    Exception: lambda exc: APIError(
        500, f"Internal error: {type(exc).__name__}. See the server log.", type="server_error"
    ),
}


def as_api_error(exc: BaseException) -> APIError:
    """``exc`` as the :class:`APIError` answered for it (500 for an unexpected exception)."""
    for cls in type(exc).__mro__:
        if cls in _TRANSLATIONS:
            return _TRANSLATIONS[cls](exc)
    return _TRANSLATIONS[Exception](exc)


def error_response(request: Request, err: APIError) -> Response:
    """``err`` in the shape of the API whose route matched ``request`` (OpenAI's when none did)."""
    route = request.scope.get("route")
    return route.error_response(err) if isinstance(route, FamilyRoute) else openai_error(err)


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(request, as_api_error(exc))


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    # Nobody reads this answer; 499 (nginx's "client closed request") keeps it apart in /metrics.
    return Response(status_code=499)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every failure of ``app``'s requests through :func:`as_api_error` and :func:`error_response`.

    The handler for ``Exception`` runs outside the middleware (Starlette re-raises the exception
    after the answer, so uvicorn logs its traceback).
    """
    for cls in _TRANSLATIONS:
        app.add_exception_handler(cls, _handle)
    app.add_exception_handler(ClientGone, _client_gone)


__all__ = [
    "APIError",
    "ClientGone",
    "FamilyRoute",
    "Guard",
    "add_error_handlers",
    "as_api_error",
    "error_response",
    "openai_error",
    "require_utf8",
    "validation_message",
]

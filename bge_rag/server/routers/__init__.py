"""One router per foreign API the server speaks; each owns its routes, request models and error shape.

- :mod:`.openai`: ``/v1/embeddings``, ``/query/v1/embeddings``, ``/v1/models``.
- :mod:`.infinity`: ``/embeddings``, ``/models``, ``/rerank`` (Infinity's paths; TEI's ``/rerank``
  body is answered there too, as the path is shared).
- :mod:`.cohere`: ``/v1/rerank`` (Cohere v1 and Jina), ``/v2/embed``, ``/v2/rerank``.
- :mod:`.tei`: ``/embed``, ``POST /``, ``/embed_sparse``, ``/tokenize``, ``/decode``.
- :mod:`.native`: ``/``, ``/health``, ``/info``, ``/metrics``, ``/docs``, ``/openapi.json``, ``/v1/encode``.

:mod:`.rerank` holds the rerank body that Cohere v1, Jina, TEI and Infinity clients send to the
same paths. Each module has ``add_routes(app, service, auth)``; the routes go on the app's own
router (not ``include_router``), so ``app.routes`` lists them and the first route matching a path
answers a wrong method (405) in its API's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI

from ..errors import FamilyRoute, Guard

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class Routes:
    """Registers one API family's routes on ``app`` with the family's route class.

    Args:
        app: The app whose router gets the routes.
        route_class: The family's route class (its ``error_response`` writes the family's errors).
        auth: The checks of the API key, run before the body is read on every route but those
            registered with ``public=True`` (:attr:`FamilyRoute.guards`).

    Example:
        >>> routes = Routes(app, TEIRoute, [service.authorize])  # doctest: +SKIP
        >>> @routes.post("/embed")  # doctest: +SKIP
        ... async def embed(body: TEIEmbedRequest) -> Response: ...
    """

    def __init__(self, app: FastAPI, route_class: type[FamilyRoute], auth: Sequence[Guard]) -> None:
        self.app = app
        self.route_class = route_class
        self.auth = tuple(auth)

    def get(self, path: str, *, public: bool = False, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Register the decorated function for ``GET path``, and for ``HEAD path`` (the same answer, no body).

        Load balancers and uptime checks probe with HEAD; the HEAD route is left out of the API schema.
        """

        def register(endpoint: Endpoint) -> Endpoint:
            self._route(path, "GET", public, options)(endpoint)
            return self._route(path, "HEAD", public, {**options, "include_in_schema": False})(endpoint)

        return register

    def post(self, path: str, *, public: bool = False, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Register the decorated function for ``POST path``."""
        return self._route(path, "POST", public, options)

    def _route(self, path: str, method: str, public: bool, options: dict[str, Any]) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.app.router.add_api_route(
                path, endpoint, methods=[method], route_class_override=self.route_class, **options
            )
            route = self.app.router.routes[-1]
            assert isinstance(route, FamilyRoute) and route.path == path
            route.guards = () if public else self.auth
            return endpoint

        return register


__all__ = ["Routes"]

"""Hugging Face Text Embeddings Inference (TEI) routes.

They are ``/embed``, ``POST /``, ``/embed_sparse``, ``/tokenize`` and ``/decode`` (``/rerank`` with
TEI's ``texts`` is served by :mod:`.infinity`, whose path it shares, and ``/info`` by :mod:`.native`).

Request and answer shapes follow TEI's router (``router/src/http/types.rs``): ``inputs`` is a
string or a list of strings; ``/embed`` answers ``[[float]]``, ``/embed_sparse``
``[[{index, value}]]`` (BGE-M3's lexical weights), errors ``{"error", "error_type"}`` (also for a
wrong method on these paths). Without an embedder, ``POST /`` reranks (TEI serves its model's main
route there), taking the shared :class:`~.rerank.RerankRequest`.

TEI options and what they do here:

- ``truncate``: ``true`` or absent cuts texts at ``max_length`` tokens (this server reports
  ``auto_truncate: true`` in ``/info``); ``false`` answers 413 for a longer text, as TEI does.
- ``truncation_direction``: ``right`` is what the engine does. ``left`` is served when nothing
  needs cutting, and otherwise refused with a 400 that says so (never cut at the other end).
- ``prompt_name``: ``query`` (or ``search_query``) applies the model's query instruction;
  ``document`` / ``passage`` / absent apply none.
- ``normalize``: ``false`` gives the pooled vectors before L2 normalization.
- ``dimensions``: the first N dimensions (renormalized when normalizing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from bge_core.errors import TextTooLongError

from ..checks import Strict, TruncationDirection, check_dimensions, check_texts, unsupported
from ..errors import APIError, FamilyRoute
from ..responses import json_response
from ..service import Service
from ..work import EncodedPart, EncodeKey, truncate_dims
from . import Routes, rerank

if TYPE_CHECKING:
    from bge_core.embedder import Kind

#: TEI's ``prompt_name`` values this server knows, and the engine kind of each.
PROMPT_NAMES: dict[str, Kind] = {
    "query": "query",
    "search_query": "query",
    "document": "document",
    "passage": "document",
    "search_document": "document",
}


class TEIEmbedRequest(Strict):
    """``POST /embed`` (and ``POST /``), as TEI's ``EmbedRequest``."""

    inputs: Any = Field(description="A string or a list of strings.")
    truncate: bool | None = None
    truncation_direction: TruncationDirection | None = None
    prompt_name: str | None = None
    normalize: bool | None = True
    dimensions: int | None = None


class TEISparseRequest(Strict):
    """``POST /embed_sparse``, as TEI's ``EmbedSparseRequest``."""

    inputs: Any = Field(description="A string or a list of strings.")
    truncate: bool | None = None
    truncation_direction: TruncationDirection | None = None
    prompt_name: str | None = None


class TEITokenizeRequest(Strict):
    """``POST /tokenize``, as TEI's ``TokenizeRequest``."""

    inputs: Any = Field(description="A string or a list of strings.")
    add_special_tokens: bool = True
    prompt_name: str | None = None


class TEIDecodeRequest(Strict):
    """``POST /decode``, as TEI's ``DecodeRequest``."""

    ids: Any = Field(description="A list of token ids, or a list of such lists.")
    skip_special_tokens: bool = True


def tei_error(err: APIError) -> Response:
    """TEI's error body ``{"error": message, "error_type": ...}``, its type from the status."""
    tei_type = {413: "Validation", 429: "Overloaded", 503: "Overloaded", 424: "Backend"}.get(err.status, "Validation")
    if err.status >= 500 and err.status != 503:
        tei_type = "Backend"
    return JSONResponse({"error": err.message, "error_type": tei_type}, status_code=err.status, headers=err.headers)


class TEIRoute(FamilyRoute):
    """A route of TEI's API: errors in TEI's shape."""

    def error_response(self, err: APIError) -> Response:
        """``err`` in TEI's shape."""
        return tei_error(err)


def prompt_kind(prompt_name: str | None) -> Kind:
    """The engine kind of TEI's ``prompt_name`` (documents when absent); 400 for an unknown name."""
    if prompt_name is None:
        return "document"
    if prompt_name not in PROMPT_NAMES:
        raise APIError(
            400,
            f"Unknown 'prompt_name' {prompt_name!r}. This server's prompts are: "
            f"{', '.join(PROMPT_NAMES)} (query ones apply the model's query instruction).",
            param="prompt_name",
        )
    return PROMPT_NAMES[prompt_name]


def _left(direction: str | None) -> bool:
    return direction is not None and direction.lower() == "left"


def _ids(value: Any) -> list[list[int]]:
    def is_ids(row: Any) -> bool:
        return isinstance(row, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in row)

    if is_ids(value):
        return [value]
    if isinstance(value, list) and value and all(is_ids(row) for row in value):
        return value
    raise APIError(400, "'ids' must be a list of token ids or a list of such lists.", param="ids")


def add_routes(app: FastAPI, service: Service, auth: Sequence[Any]) -> None:
    """Register TEI's routes on ``app``."""
    routes = Routes(app, TEIRoute, auth)

    async def encode(body: TEIEmbedRequest | TEISparseRequest, request: Request, *, sparse: bool) -> EncodedPart:
        embedder = service.need_embedder()
        texts = check_texts(
            body.inputs, "inputs", max_items=service.settings.max_inputs, max_chars=service.settings.max_input_chars
        )
        kind = prompt_kind(body.prompt_name)
        left = _left(body.truncation_direction)
        strict = body.truncate is False or left
        normalize = getattr(body, "normalize", None)
        if normalize is None or normalize == embedder.normalize:
            normalize = None  # the embedder's own setting: such requests share engine calls with others
        key = EncodeKey(kind, dense=not sparse, sparse=sparse, normalize=normalize, strict=strict)
        try:
            return await service.encode(texts, key, request)
        except TextTooLongError as exc:
            if body.truncate is False:
                raise
            raise unsupported(
                f"'truncation_direction': 'left' is not supported: this server cuts the end of a "
                f"text, and this one needs cutting ({exc}).",
                "truncation_direction",
            ) from exc

    @routes.post("/embed")
    async def embed(body: TEIEmbedRequest, request: Request) -> Response:
        embedder = service.need_embedder()
        dims = check_dimensions("dimensions", body.dimensions, embedder.dimension)
        part = await encode(body, request, sparse=False)
        vectors = part.dense
        assert vectors is not None
        if dims is not None and dims < vectors.shape[1]:
            vectors = truncate_dims(vectors, dims, embedder.normalize if body.normalize is None else body.normalize)
        return json_response(vectors)

    if service.embedder is not None:
        routes.post("/")(embed)  # TEI serves its model's main route at POST /
    else:

        @routes.post("/")
        async def rerank_root(body: rerank.RerankRequest, request: Request) -> Response:
            return await rerank.answer(service, body, request, document=rerank.cohere_document)

    @routes.post("/embed_sparse")
    async def embed_sparse(body: TEISparseRequest, request: Request) -> Response:
        if not service.need_embedding_model().heads["sparse"]:
            raise APIError(
                424,
                "This model has no sparse head (a BGE-M3 model ships sparse_linear.pt); /embed_sparse needs one.",
                code="missing_head",
            )
        part = await encode(body, request, sparse=True)
        assert part.sparse is not None
        return json_response(
            [
                [{"index": int(i), "value": float(v)} for i, v in zip(vec.indices.tolist(), vec.values.tolist())]
                for vec in part.sparse
            ]
        )

    @routes.post("/tokenize")
    async def tokenize(body: TEITokenizeRequest, request: Request) -> Response:
        s = service.settings
        texts = check_texts(body.inputs, "inputs", max_items=s.max_inputs, max_chars=s.max_input_chars)
        if prompt_kind(body.prompt_name) == "query" and service.embedder is not None:
            texts = service.embedder.with_instruction(texts, "query")
        return json_response(await service.tokenize(texts, body.add_special_tokens, request))

    @routes.post("/decode")
    async def decode(body: TEIDecodeRequest, request: Request) -> Response:
        ids = _ids(body.ids)
        if len(ids) > service.settings.max_inputs:
            raise APIError(
                413,
                f"'ids' has {len(ids)} sequences; this server takes at most {service.settings.max_inputs} per request.",
                param="ids",
            )
        return json_response(await service.decode(ids, body.skip_special_tokens, request))


__all__ = [
    "PROMPT_NAMES",
    "TEIDecodeRequest",
    "TEIEmbedRequest",
    "TEIRoute",
    "TEISparseRequest",
    "TEITokenizeRequest",
    "add_routes",
    "prompt_kind",
    "tei_error",
]

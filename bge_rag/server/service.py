"""The service core behind every router: the engines, their batchers, metrics, limits and API key.

Routers translate their API's requests into the calls here (:meth:`Service.encode`,
:meth:`Service.logits`, :meth:`Service.tokenize`, :meth:`Service.decode`) and the results back
into their API's answers; nothing here knows an API's request or answer shapes. Work for a client
that disconnects is dropped (:func:`while_connected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request

from bge_core import join_parts
from bge_core.aio import run_serialized
from bge_core.embedder import Embedder
from bge_core.errors import ConfigError
from bge_core.rerank import Reranker
from bge_core.storage import Precision

from .batcher import DynamicBatcher
from .checks import check_texts
from .errors import APIError, ClientGone
from .middleware import Metrics
from .quantization import Quantizer, read_calibration
from .settings import ServerSettings
from .work import EncodedPart, EncodeKey, ServerTokenizer, encode_process, merge_scores, rerank_process

#: The suffix of the served model name that asks for queries (``bge-m3-query``), for OpenAI-shaped
#: clients that cannot send ``input_type``; ``/query/v1`` as base URL does the same.
QUERY_SUFFIX = "-query"


def served_name(engine: Any, name: str | None) -> str:
    """The name clients see: ``name``, else the hub id, else the model folder's name."""
    if name:
        return name
    given = str(engine.model_name)
    return Path(given).name if Path(given).is_dir() else given


class Service:
    """The engines, their batchers and the settings behind the routes of one app.

    Args:
        embedder: The embedding model (its sparse / ColBERT heads are loaded here), or ``None``.
        reranker: The reranker, or ``None``.
        settings: Limits, API key, served names.

    Raises:
        ConfigError: neither an embedder nor a reranker.

    Example:
        >>> service = Service(Embedder("BAAI/bge-m3"), None, ServerSettings())
        >>> part = await service.encode(["what is BGE?"], EncodeKey("query"))  # doctest: +SKIP
    """

    def __init__(self, embedder: Embedder | None, reranker: Reranker | None, settings: ServerSettings) -> None:
        if embedder is None and reranker is None:
            raise ConfigError("create_app needs an embedder, a reranker, or both.")
        self.settings = settings
        self.embedder = embedder
        self.reranker = reranker
        self.metrics = Metrics()
        self.embed_batcher: DynamicBatcher[EncodeKey] | None = None
        self.rerank_batcher: DynamicBatcher[str] | None = None
        self.heads = {"sparse": False, "colbert": False}
        limits = {
            "max_batch_items": settings.max_batch_items,
            "max_queue_items": settings.max_queue_items,
            "max_piece_items": settings.max_piece_items,
        }
        self.embed_tokenizer: ServerTokenizer | None = None
        self.rerank_tokenizer: ServerTokenizer | None = None
        self.quantizer: Quantizer | None = None
        if embedder is not None:
            calibration = settings.quantization_calibration
            self.quantizer = Quantizer(embedder, None if calibration is None else read_calibration(calibration))
            self.embedder_name = served_name(embedder, settings.model_name)
            self.heads = {name: embedder.has_head(name) for name in ("sparse", "colbert")}
            embedder.require_heads(**self.heads)  # load them now, not on a first request
            self.embed_tokenizer = ServerTokenizer.for_engine(embedder.tokenizer)
            embed_batcher = self.embed_batcher = DynamicBatcher(
                embedder,
                encode_process(embedder, self.embed_tokenizer if settings.cut_long_texts else None),
                merge=join_parts,  # a split request's EncodedParts, in order
                on_batch=self.metrics.batch_observer("embedder"),
                **limits,
            )
            self.metrics.queue.labels("embedder").set_function(lambda: embed_batcher.queued_items)
        if reranker is not None:
            self.reranker_name = served_name(reranker, settings.reranker_name)
            self.rerank_tokenizer = ServerTokenizer.for_engine(reranker.tokenizer)
            rerank_batcher = self.rerank_batcher = DynamicBatcher(
                reranker,
                rerank_process(reranker, self.rerank_tokenizer if settings.cut_long_texts else None),
                merge=merge_scores,
                on_batch=self.metrics.batch_observer("reranker"),
                **limits,
            )
            self.metrics.queue.labels("reranker").set_function(lambda: rerank_batcher.queued_items)

    async def close(self) -> None:
        """Stop the batchers (queued work fails)."""
        for batcher in (self.embed_batcher, self.rerank_batcher):
            if batcher is not None:
                await batcher.close()

    def authorize(self, request: Request) -> None:
        """Pass a request with the API key (or any request when none is set), else answer 401."""
        key = self.settings.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(
                401,
                "Missing or wrong API key: send the header 'Authorization: Bearer <key>'.",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def need_embedder(self) -> Embedder:
        """The embedder, or a 404 when this server has none."""
        if self.embedder is None:
            raise APIError(404, "This server has no embedding model (start it with --model).", code="no_model")
        return self.embedder

    def need_reranker(self) -> Reranker:
        """The reranker, or a 404 when this server has none."""
        if self.reranker is None:
            raise APIError(404, "This server has no reranker (start it with --reranker).", code="no_reranker")
        return self.reranker

    def texts(self, value: Any, name: str = "input") -> list[str]:
        """``value`` as a list of texts within this server's limits (else 400 / 413)."""
        s = self.settings
        return check_texts(value, name, max_items=s.max_inputs, max_chars=s.max_input_chars)

    def query_alias(self, model: str | None) -> bool:
        """Whether ``model`` names the query alias of the embedding model (``<name>-query``).

        Other model names are answered as this server's model (clients send names of their own),
        except a name that ends in ``-query`` and is not the alias: its sender wants queries, and
        answering it with document vectors would be silently wrong.

        Raises:
            APIError: 404 ``model_not_found`` for such a name, giving the alias to use.
        """
        if not model or self.embedder is None:
            return False
        alias = self.embedder_name + QUERY_SUFFIX
        if model == alias:
            return True
        if model.endswith(QUERY_SUFFIX):
            raise APIError(
                404,
                f"Unknown model {model!r}: this server's query alias is {alias!r} (the served model name "
                f"{self.embedder_name!r} + {QUERY_SUFFIX!r}; start the server with --served-model-name to "
                "choose it), or send input_type='query', or use /query/v1 as the base URL.",
                param="model",
                code="model_not_found",
            )
        return False

    async def encode(self, texts: list[str], key: EncodeKey, request: Request | None = None) -> EncodedPart:
        """``texts`` encoded as ``key`` says, coalesced with other requests; dropped if the client leaves."""
        assert self.embed_batcher is not None
        part: EncodedPart = await while_connected(
            request, self.embed_batcher.submit(key, texts, self.settings.request_timeout)
        )
        self.metrics.tokens.inc(sum(part.token_counts))
        return part

    async def quantize(self, vectors: np.ndarray, precision: Precision) -> np.ndarray:
        """The embedder's float32 ``vectors`` in ``precision`` (int8 / uint8 with the model's fixed ranges)."""
        assert self.quantizer is not None
        return await self.quantizer.quantize(vectors, precision)

    async def logits(self, query: str, docs: list[str], request: Request | None = None) -> list[float]:
        """Raw reranker logits of ``(query, doc)`` pairs, in input order."""
        if not docs:
            return []
        assert self.rerank_batcher is not None
        pairs = [(query, d) for d in docs]
        return await while_connected(request, self.rerank_batcher.submit("pairs", pairs, self.settings.request_timeout))

    async def tokenize(self, texts: list[str], add_special_tokens: bool) -> list[list[dict[str, Any]]]:
        """Per text, ``{id, text, special, start, stop}`` per token (the embedder's tokenizer first)."""
        engine, tok = self._tokenizer()
        return await run_serialized(engine, tok.tokenize, texts, add_special_tokens)

    async def decode(self, ids: list[list[int]], skip_special_tokens: bool) -> list[str]:
        """Token ids back to text; 400 for an id outside the vocabulary."""
        engine, tok = self._tokenizer()
        for i, row in enumerate(ids):
            for token in row:
                if not 0 <= token < tok.vocab_size:
                    raise APIError(
                        400,
                        f"'ids' holds {token} (in sequence {i}); token ids of this model are 0..{tok.vocab_size - 1}.",
                        param="ids",
                    )
        return await run_serialized(engine, tok.decode, ids, skip_special_tokens)

    def _tokenizer(self) -> tuple[Any, ServerTokenizer]:
        engine, tok = (
            (self.embedder, self.embed_tokenizer)
            if self.embedder is not None
            else (self.reranker, self.rerank_tokenizer)
        )
        if tok is None:
            raise APIError(
                424,
                "This model has a slow (Python) tokenizer; /tokenize and /decode need a fast one.",
                code="no_fast_tokenizer",
            )
        return engine, tok


async def _disconnect(request: Request) -> None:
    """Returns when the client of ``request`` disconnects (its body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def while_connected(request: Request | None, work: Awaitable[Any]) -> Any:
    """Await ``work`` unless the client disconnects first.

    Args:
        request: The request whose client is watched; ``None`` awaits ``work`` as it is.
        work: The work to await.

    Returns:
        ``work``'s result.

    Raises:
        ClientGone: the client disconnected first; ``work`` is cancelled (its queued pieces dropped).
    """
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
    with contextlib.suppress(asyncio.CancelledError, Exception):  # the client is gone; nobody reads the result
        await task
    raise ClientGone()


__all__ = ["QUERY_SUFFIX", "Service", "served_name", "while_connected"]

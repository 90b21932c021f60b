"""The service core behind every router: the served models, their batchers, metrics, limits and API key.

Each served model (:class:`EmbedModel`, :class:`RerankModel`) has its own batcher and worker;
requests choose one by name (:meth:`Service.embedding_model`, :meth:`Service.rerank_model`).

Routers translate their API's requests into the calls here (:meth:`Service.encode`,
:meth:`Service.logits`, :meth:`Service.tokenize`, :meth:`Service.decode`) and the results back
into their API's answers; nothing here knows an API's request or answer shapes. Every call goes
through the engine's batcher (model work and tokenizer work alike: queue limit, wait and work
limits), after the admission checks of :mod:`.admission`. Work for a client that disconnects is
dropped (:func:`while_connected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Mapping
from typing import Any

import numpy as np
from starlette.requests import Request

from bge_core.embedder import Embedder
from bge_core.errors import ConfigError
from bge_core.rerank import Reranker
from bge_core.storage import Precision

from . import admission
from .admission import Throughput
from .batcher import DynamicBatcher
from .checks import check_texts
from .errors import APIError, ClientGone
from .middleware import Metrics
from .naming import QUERY_SUFFIX, check_names, default_name, served_name
from .quantization import Quantizer, read_calibration
from .settings import ServerSettings
from .work import (
    CountKey,
    DecodeKey,
    EncodedPart,
    EncodeKey,
    ServerTokenizer,
    TokenizeKey,
    encode_process,
    merge_parts,
    merge_scores,
    rerank_process,
    split_by_weight,
    with_tokenizer_work,
)


class EmbedModel:
    """One served embedding model: its engine, batcher (and worker), tokenizer, quantizer and speed.

    Args:
        name: The served name (what requests put in ``model``).
        engine: The embedding model (its sparse / ColBERT heads are loaded here).
        settings: The server's limits.
        metrics: The server's metrics (this model's series are labelled with ``name``).
        calibration: The int8 / uint8 calibration texts (``None``: the default set).
    """

    def __init__(
        self, name: str, engine: Embedder, settings: ServerSettings, metrics: Metrics, calibration: list[str] | None
    ) -> None:
        self.name = name
        self.engine = engine
        self.quantizer = Quantizer(engine, calibration)
        self.throughput = Throughput()  # this model's seconds per token (admission's estimate)
        self.heads = {head: engine.has_head(head) for head in ("sparse", "colbert")}
        engine.require_heads(**self.heads)  # load them now, not on a first request
        self.tokenizer = ServerTokenizer.for_engine(engine.tokenizer)
        process = encode_process(engine, self.tokenizer if settings.cut_long_texts else None, self.throughput.observe)
        batcher = self.batcher = DynamicBatcher(
            engine,
            with_tokenizer_work(process, self.tokenizer, engine.with_instruction),
            merge=merge_parts,  # a split request's EncodedParts (or token lists), in order
            on_batch=metrics.batch_observer("embedder", name),
            **_limits(settings),
        )
        metrics.queue.labels("embedder", name).set_function(lambda: batcher.queued_items)


class RerankModel:
    """One served reranker: its engine, batcher (and worker) and tokenizer.

    Args:
        name: The served name (what requests put in ``model``).
        engine: The reranker.
        settings: The server's limits.
        metrics: The server's metrics (this model's series are labelled with ``name``).
    """

    def __init__(self, name: str, engine: Reranker, settings: ServerSettings, metrics: Metrics) -> None:
        self.name = name
        self.engine = engine
        self.tokenizer = ServerTokenizer.for_engine(engine.tokenizer)
        batcher = self.batcher = DynamicBatcher(
            engine,
            with_tokenizer_work(
                rerank_process(engine, self.tokenizer if settings.cut_long_texts else None), self.tokenizer
            ),
            merge=merge_scores,
            on_batch=metrics.batch_observer("reranker", name),
            **_limits(settings),
        )
        metrics.queue.labels("reranker", name).set_function(lambda: batcher.queued_items)


def _limits(settings: ServerSettings) -> dict[str, int]:
    return {
        "max_batch_items": settings.max_batch_items,
        "max_queue_items": settings.max_queue_items,
        "max_piece_items": settings.max_piece_items,
    }


def _named(engines: Any, name: str | None, flag: str) -> dict[str, Any]:
    """``{served name: engine}`` from one engine (named ``name``) or a mapping of them."""
    if engines is None:
        return {}
    if isinstance(engines, Mapping):
        if name is not None and engines:
            raise ConfigError(
                f"settings.{flag} names a single model; with several, the mapping's keys are their names."
            )
        return dict(engines)
    return {served_name(engines, name): engines}


class Service:
    """The models, their batchers and the settings behind the routes of one app.

    Each model has its own batcher and worker thread, so one model's queue never holds another's
    requests. The first embedding model and the first reranker are the defaults: they answer
    requests without a ``model`` (and TEI's routes, which have none), and with one model of a
    kind, requests naming any other model (clients send names of their own).

    Args:
        embedder: The embedding model, or ``{served name: model}`` for several (the first is the
            default), or ``None``.
        reranker: The reranker, or ``{served name: reranker}``, or ``None``.
        settings: Limits, API key, served names (of single models).

    Raises:
        ConfigError: no model at all, or served names that requests could not tell apart.

    Example:
        >>> service = Service(Embedder("BAAI/bge-m3"), None, ServerSettings())
        >>> part = await service.encode(["what is BGE?"], EncodeKey("query"))  # doctest: +SKIP
    """

    def __init__(
        self,
        embedder: Embedder | Mapping[str, Embedder] | None,
        reranker: Reranker | Mapping[str, Reranker] | None,
        settings: ServerSettings,
    ) -> None:
        embedders = _named(embedder, settings.model_name, "model_name")
        rerankers = _named(reranker, settings.reranker_name, "reranker_name")
        if not (embedders or rerankers):
            raise ConfigError("create_app needs an embedder, a reranker, or both.")
        check_names(list(embedders), list(rerankers))
        self.settings = settings
        self.metrics = Metrics()
        path = settings.quantization_calibration
        calibration = None if path is None else read_calibration(path)  # read once, for every model
        self.embedders = {
            name: EmbedModel(name, e, settings, self.metrics, calibration) for name, e in embedders.items()
        }
        self.rerankers = {name: RerankModel(name, r, settings, self.metrics) for name, r in rerankers.items()}
        self.default_embedder = next(iter(self.embedders.values()), None)
        self.default_reranker = next(iter(self.rerankers.values()), None)

    @property
    def embedder(self) -> Embedder | None:
        """The default embedding model's engine, if any."""
        return None if self.default_embedder is None else self.default_embedder.engine

    async def close(self) -> None:
        """Stop the batchers (queued work fails)."""
        batchers = [m.batcher for m in self.embedders.values()] + [m.batcher for m in self.rerankers.values()]
        for batcher in batchers:
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

    def need_embedding_model(self) -> EmbedModel:
        """The default embedding model, or a 404 when this server has none."""
        if self.default_embedder is None:
            raise APIError(404, "This server has no embedding model (start it with --model).", code="no_model")
        return self.default_embedder

    def need_embedder(self) -> Embedder:
        """The default embedding model's engine, or a 404 when this server has none."""
        return self.need_embedding_model().engine

    def texts(self, value: Any, name: str = "input") -> list[str]:
        """``value`` as a list of texts within this server's limits (else 400 / 413)."""
        s = self.settings
        return check_texts(value, name, max_items=s.max_inputs, max_chars=s.max_input_chars)

    def embedding_model(self, model: str | None) -> tuple[EmbedModel, bool]:
        """The embedding model a request's ``model`` names, and whether it named its query alias.

        No name gives the default (first) model. A served name gives that model; ``<name>-query``
        gives it for queries. With one embedding model, any other name is answered by it (clients
        send names of their own), except a name that ends in ``-query``: its sender wants queries,
        and answering it with document vectors would be silently wrong.

        Raises:
            APIError: 404 ``no_model`` without an embedding model; 404 ``model_not_found`` for a
                name no model has (with several models), listing the served names.
        """
        default = self.need_embedding_model()
        if not model:
            return default, False
        for served in self.embedders.values():
            if model == served.name:
                return served, False
            if model == served.name + QUERY_SUFFIX:
                return served, True
        if len(self.embedders) > 1:
            names = ", ".join(repr(name) for name in self.embedders)
            raise APIError(
                404,
                f"Unknown model {model!r}: this server's embedding models are {names} (each also as "
                f"'<name>{QUERY_SUFFIX}' for queries); leave 'model' out for {default.name!r}.",
                param="model",
                code="model_not_found",
            )
        if model.endswith(QUERY_SUFFIX):
            alias = default.name + QUERY_SUFFIX
            raise APIError(
                404,
                f"Unknown model {model!r}: this server's query alias is {alias!r} (the served model name "
                f"{default.name!r} + {QUERY_SUFFIX!r}; start the server with --served-model-name to "
                "choose it), or send input_type='query', or use /query/v1 as the base URL.",
                param="model",
                code="model_not_found",
            )
        return default, False

    def rerank_model(self, model: str | None) -> RerankModel:
        """The reranker a request's ``model`` names: as :meth:`embedding_model`, without aliases.

        Raises:
            APIError: 404 ``no_reranker`` without a reranker; 404 ``model_not_found`` for a name
                no reranker has (with several rerankers), listing the served names.
        """
        default = self.default_reranker
        if default is None:
            raise APIError(404, "This server has no reranker (start it with --reranker).", code="no_reranker")
        if not model or len(self.rerankers) == 1:
            return default
        if model in self.rerankers:
            return self.rerankers[model]
        names = ", ".join(repr(name) for name in self.rerankers)
        raise APIError(
            404,
            f"Unknown model {model!r}: this server's rerankers are {names}; leave 'model' out for {default.name!r}.",
            param="model",
            code="model_not_found",
        )

    async def encode(
        self, texts: list[str], key: EncodeKey, request: Request | None = None, model: EmbedModel | None = None
    ) -> EncodedPart:
        """``texts`` encoded by ``model`` (default: the first) as ``key`` says, coalesced with other requests.

        Dropped if the client leaves.

        Raises:
            APIError: 413 before any model work when the ColBERT output would exceed
                ``max_colbert_vectors``, or when the request alone needs more model time than the
                work limit (:func:`.admission.check_work`).
        """
        model = model or self.need_embedding_model()
        await self._admit(model, texts, key, request)
        part: EncodedPart = await self._submit(model.batcher, key, texts, request)
        self.metrics.tokens.inc(sum(part.token_counts))
        return part

    async def quantize(self, vectors: np.ndarray, precision: Precision, model: EmbedModel | None = None) -> np.ndarray:
        """``model``'s float32 ``vectors`` in ``precision`` (int8 / uint8 with the model's fixed ranges)."""
        model = model or self.need_embedding_model()
        return await model.quantizer.quantize(vectors, precision)

    async def _admit(self, model: EmbedModel, texts: list[str], key: EncodeKey, request: Request | None) -> None:
        """Refuse ``texts`` before their model work if their output or their time cannot fit.

        The bounds of ``len(texts) * max_length`` tokens decide most requests; only when they do
        not are the texts' tokens counted on the worker (a tokenizer pass through the batcher).
        """
        s, length = self.settings, model.engine.max_length
        per_token = model.throughput.seconds_per_token
        colbert_unsure = key.colbert and len(texts) * (length - 1) > s.max_colbert_vectors
        time_unsure = per_token is not None and len(texts) * length * per_token > s.work_timeout
        if not (colbert_unsure or time_unsure) or model.tokenizer is None:
            return  # a slow tokenizer: the ColBERT cap is checked after the model ran (routers/native.py)
        counts: list[int] = await self._submit(
            model.batcher, CountKey(key.kind, length), texts, request, pieces=self._char_pieces(texts)
        )
        if key.colbert:
            admission.check_colbert(sum(n - 1 for n in counts), s.max_colbert_vectors)  # CLS gives no vector
        admission.check_work(len(texts), sum(counts), per_token, s.work_timeout)

    async def logits(
        self, query: str, docs: list[str], request: Request | None = None, model: RerankModel | None = None
    ) -> list[float]:
        """Raw logits of ``(query, doc)`` pairs by ``model`` (default: the first reranker), in input order."""
        model = model or self.rerank_model(None)
        if not docs:
            return []
        pairs = [(query, d) for d in docs]
        return await self._submit(model.batcher, "pairs", pairs, request)

    async def tokenize(
        self, texts: list[str], add_special_tokens: bool, request: Request | None = None
    ) -> list[list[dict[str, Any]]]:
        """Per text, ``{id, text, special, start, stop}`` per token (the default embedder's tokenizer first).

        The ids are counted first; an answer over ``max_tokenize_ids`` is refused (413) before
        it is built.
        """
        batcher, _ = self._tokenizer()
        counts: list[int] = await self._submit(
            batcher, CountKey(special_tokens=add_special_tokens), texts, request, pieces=self._char_pieces(texts)
        )
        admission.check_tokenize_ids(sum(counts), self.settings.max_tokenize_ids)
        pieces = split_by_weight(
            list(zip(texts, counts)), self.settings.max_piece_items, admission.TOKENIZER_PIECE_IDS, lambda tc: tc[1]
        )
        by_ids = [[text for text, _ in piece] for piece in pieces]
        return await self._submit(batcher, TokenizeKey(add_special_tokens), texts, request, pieces=by_ids)

    async def decode(
        self, ids: list[list[int]], skip_special_tokens: bool, request: Request | None = None
    ) -> list[str]:
        """Token ids back to text; 400 for an id outside the vocabulary."""
        batcher, tok = self._tokenizer()
        for i, row in enumerate(ids):
            for token in row:
                if not 0 <= token < tok.vocab_size:
                    raise APIError(
                        400,
                        f"'ids' holds {token} (in sequence {i}); token ids of this model are 0..{tok.vocab_size - 1}.",
                        param="ids",
                    )
        pieces = split_by_weight(ids, self.settings.max_piece_items, admission.TOKENIZER_PIECE_IDS, len)
        return await self._submit(batcher, DecodeKey(skip_special_tokens), ids, request, pieces=pieces)

    async def _submit(
        self,
        batcher: DynamicBatcher[Any],
        key: Any,
        items: list[Any],
        request: Request | None,
        pieces: list[Any] | None = None,
    ) -> Any:
        """``items`` through ``batcher`` under this server's wait and work limits, while the client stays."""
        s = self.settings
        work = batcher.submit(key, items, s.request_timeout, work_timeout=s.work_timeout, pieces=pieces)
        return await while_connected(request, work)

    def _char_pieces(self, texts: list[str]) -> list[Any]:
        return split_by_weight(texts, self.settings.max_piece_items, admission.TOKENIZER_PIECE_CHARS, len)

    def _tokenizer(self) -> tuple[DynamicBatcher[Any], ServerTokenizer]:
        """The batcher and tokenizer that answer /tokenize and /decode (the default embedder's first)."""
        model = self.default_embedder or self.default_reranker
        assert model is not None
        if model.tokenizer is None:
            raise APIError(
                424,
                "This model has a slow (Python) tokenizer; /tokenize and /decode need a fast one.",
                code="no_fast_tokenizer",
            )
        return model.batcher, model.tokenizer


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


__all__ = [
    "QUERY_SUFFIX",
    "EmbedModel",
    "RerankModel",
    "Service",
    "check_names",
    "default_name",
    "served_name",
    "while_connected",
]

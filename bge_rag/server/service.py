"""The service core behind every router: the engines, their batchers, metrics, limits and API key.

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
from collections.abc import Awaitable
from pathlib import Path
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
        self.throughput = Throughput()  # the embedder's model seconds per token (admission's estimate)
        self.embed_batcher: DynamicBatcher[Any] | None = None
        self.rerank_batcher: DynamicBatcher[Any] | None = None
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
            process = encode_process(
                embedder, self.embed_tokenizer if settings.cut_long_texts else None, self.throughput.observe
            )
            embed_batcher = self.embed_batcher = DynamicBatcher(
                embedder,
                with_tokenizer_work(process, self.embed_tokenizer, embedder.with_instruction),
                merge=merge_parts,  # a split request's EncodedParts (or token lists), in order
                on_batch=self.metrics.batch_observer("embedder"),
                **limits,
            )
            self.metrics.queue.labels("embedder").set_function(lambda: embed_batcher.queued_items)
        if reranker is not None:
            self.reranker_name = served_name(reranker, settings.reranker_name)
            self.rerank_tokenizer = ServerTokenizer.for_engine(reranker.tokenizer)
            rerank_batcher = self.rerank_batcher = DynamicBatcher(
                reranker,
                with_tokenizer_work(
                    rerank_process(reranker, self.rerank_tokenizer if settings.cut_long_texts else None),
                    self.rerank_tokenizer,
                ),
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
        """``texts`` encoded as ``key`` says, coalesced with other requests; dropped if the client leaves.

        Raises:
            APIError: 413 before any model work when the ColBERT output would exceed
                ``max_colbert_vectors``, or when the request alone needs more model time than the
                work limit (:func:`.admission.check_work`).
        """
        assert self.embed_batcher is not None
        await self._admit(texts, key, request)
        part: EncodedPart = await self._submit(self.embed_batcher, key, texts, request)
        self.metrics.tokens.inc(sum(part.token_counts))
        return part

    async def quantize(self, vectors: np.ndarray, precision: Precision) -> np.ndarray:
        """The embedder's float32 ``vectors`` in ``precision`` (int8 / uint8 with the model's fixed ranges)."""
        assert self.quantizer is not None
        return await self.quantizer.quantize(vectors, precision)

    async def _admit(self, texts: list[str], key: EncodeKey, request: Request | None) -> None:
        """Refuse ``texts`` before their model work if their output or their time cannot fit.

        The bounds of ``len(texts) * max_length`` tokens decide most requests; only when they do
        not are the texts' tokens counted on the worker (a tokenizer pass through the batcher).
        """
        assert self.embedder is not None and self.embed_batcher is not None
        s, length = self.settings, self.embedder.max_length
        per_token = self.throughput.seconds_per_token
        colbert_unsure = key.colbert and len(texts) * (length - 1) > s.max_colbert_vectors
        time_unsure = per_token is not None and len(texts) * length * per_token > s.work_timeout
        if not (colbert_unsure or time_unsure) or self.embed_tokenizer is None:
            return  # a slow tokenizer: the ColBERT cap is checked after the model ran (routers/native.py)
        counts: list[int] = await self._submit(
            self.embed_batcher, CountKey(key.kind, length), texts, request, pieces=self._char_pieces(texts)
        )
        if key.colbert:
            admission.check_colbert(sum(n - 1 for n in counts), s.max_colbert_vectors)  # CLS gives no vector
        admission.check_work(len(texts), sum(counts), per_token, s.work_timeout)

    async def logits(self, query: str, docs: list[str], request: Request | None = None) -> list[float]:
        """Raw reranker logits of ``(query, doc)`` pairs, in input order."""
        if not docs:
            return []
        assert self.rerank_batcher is not None
        pairs = [(query, d) for d in docs]
        return await self._submit(self.rerank_batcher, "pairs", pairs, request)

    async def tokenize(
        self, texts: list[str], add_special_tokens: bool, request: Request | None = None
    ) -> list[list[dict[str, Any]]]:
        """Per text, ``{id, text, special, start, stop}`` per token (the embedder's tokenizer first).

        The ids are counted first; an answer over ``max_tokenize_ids`` is refused (413) before
        it is built.
        """
        batcher = self._tokenizer()
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
        batcher = self._tokenizer()
        tok = self.embed_tokenizer if self.embedder is not None else self.rerank_tokenizer
        assert tok is not None
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

    def _tokenizer(self) -> DynamicBatcher[Any]:
        """The batcher whose engine answers /tokenize and /decode (the embedder's first)."""
        batcher, tok = (
            (self.embed_batcher, self.embed_tokenizer)
            if self.embedder is not None
            else (self.rerank_batcher, self.rerank_tokenizer)
        )
        if tok is None:
            raise APIError(
                424,
                "This model has a slow (Python) tokenizer; /tokenize and /decode need a fast one.",
                code="no_fast_tokenizer",
            )
        assert batcher is not None
        return batcher


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

"""Server settings: limits, authentication, CORS. Plain data, no web framework."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bge_core.errors import ConfigError
from bge_core.storage import PRECISIONS, Precision

#: Environment variable read by ``bge-rag serve`` when ``--api-key`` is not given.
API_KEY_ENV = "BGE_RAG_API_KEY"

RerankScores = Literal["sigmoid", "raw"]

#: Paragraphs of the default int8 / uint8 calibration set (spread over the whole Python language reference).
DEFAULT_CALIBRATION_TEXTS = 256


@dataclass(frozen=True)
class ServerSettings:
    """What one server allows and how it batches.

    Attributes:
        model_name: Name reported for the embedding model (``None``: derived from the model).
        reranker_name: Name reported for the reranker (``None``: derived from the model).
        api_key: Clients must send ``Authorization: Bearer <api_key>``; ``None`` turns auth off.
        cors_origins: Origins allowed to call the API from a browser; empty (the default) sends
            no CORS headers at all. ``("*",)`` allows any origin.
        max_inputs: Texts per embeddings request, documents per rerank request (OpenAI: 2048).
        max_input_chars: Characters per text (the model truncates to its ``max_length`` tokens
            anyway; this bounds the tokenizer's work).
        max_body_bytes: Bytes per request body.
        max_batch_items: Texts (or pairs) that concurrent requests may coalesce into one engine
            call. A request is first split into pieces of ``max_piece_items``, and one call takes at
            most one piece of each request; a piece larger than this (``max_piece_items`` above
            ``max_batch_items``) still runs, alone.
        max_queue_items: Texts (or pairs) waiting for the model; a request that would exceed it
            gets 429 (retry later) instead of waiting without bound.
        request_timeout: Seconds a request may wait for the model before its work starts; then it
            gets 503 with ``Retry-After`` (nothing of it ran). The time its work takes is not counted.
        work_timeout: Seconds a request's work may take, from when its first piece starts until
            its last is done (pieces of other requests running meanwhile included); then it gets
            503 saying how much was done (and discarded). A request whose size alone needs more
            (at this server's measured model seconds per token) is refused up front with 413.
        rerank_scores: ``"sigmoid"`` (0..1, as Cohere, Jina and TEI return) or ``"raw"`` logits
            (FlagReranker's default); TEI-style requests may override it with ``raw_scores``.
        max_piece_items: A request with more texts (or pairs) is split into pieces of this size
            that take turns with other requests on the model, so small requests do not wait
            behind a large one, and what is left of a request whose client left is dropped.
        max_colbert_vectors: ColBERT vectors (one per token) one request may get back; more is a
            413 naming this limit (64 long texts of BGE-M3 are ~60 MiB of JSON), checked from token
            counts before the model runs.
        max_tokenize_ids: Token ids one ``/tokenize`` answer may carry (each is ~60 bytes of JSON);
            more is a 413 naming this limit, checked from token counts before the answer is built.
        body_timeout: Seconds a client may take to send its request body (then 408).
        header_timeout: Seconds a connection may take to send a request's headers, from when it
            opens or its previous answer was sent (then 408 and the connection is closed).
        max_connections: Open connections (and requests in progress) at most; beyond, uvicorn
            answers 503. ``None``: no limit.
        cut_long_texts: Cut a text far longer than ``max_length`` tokens can use to a prefix that
            keeps the same tokens before tokenizing it (the same vectors and scores, tested);
            ``False`` gives the engine every text whole (for comparing, or a tokenizer whose words
            are not split at whitespace).
        embedding_dtype: What Infinity's ``POST /embeddings`` returns, as Infinity's
            ``--embedding-dtype``: ``float32`` (default), ``int8``, ``uint8``, ``binary`` or
            ``ubinary`` (sentence-transformers' ``quantize_embeddings``). Other routes are unchanged.
        quantization_calibration: A UTF-8 file with one text per line, encoded as documents to fix
            the embedding model's int8 / uint8 ranges; ``None``: paragraphs of the Python language
            reference (:mod:`bge_rag.server.quantization`).
    """

    model_name: str | None = None
    reranker_name: str | None = None
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_inputs: int = 2048
    max_input_chars: int = 100_000
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_items: int = 512
    max_queue_items: int = 16384
    request_timeout: float = 60.0
    work_timeout: float = 120.0
    rerank_scores: RerankScores = "sigmoid"
    max_piece_items: int = 32
    max_colbert_vectors: int = 4096
    max_tokenize_ids: int = 131_072
    body_timeout: float = 30.0
    header_timeout: float = 10.0
    max_connections: int | None = None
    cut_long_texts: bool = True
    embedding_dtype: Precision = "float32"
    quantization_calibration: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_inputs",
            "max_input_chars",
            "max_body_bytes",
            "max_batch_items",
            "max_queue_items",
            "max_piece_items",
            "max_colbert_vectors",
            "max_tokenize_ids",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.max_connections is not None and (
            isinstance(self.max_connections, bool)
            or not isinstance(self.max_connections, int)
            or self.max_connections < 1
        ):
            raise ConfigError(f"max_connections must be a positive integer or None, got {self.max_connections!r}")
        for name in ("request_timeout", "work_timeout", "body_timeout", "header_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.rerank_scores not in ("sigmoid", "raw"):
            raise ConfigError(f"Invalid rerank_scores {self.rerank_scores!r}. Valid values are: sigmoid, raw.")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key must not be empty; pass None to turn authentication off.")
        if not isinstance(self.cut_long_texts, bool):
            raise ConfigError(f"cut_long_texts must be True or False, got {self.cut_long_texts!r}")
        if self.embedding_dtype not in PRECISIONS:
            raise ConfigError(
                f"Invalid embedding_dtype {self.embedding_dtype!r}. Valid values are: {', '.join(PRECISIONS)}."
            )
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))


__all__ = ["API_KEY_ENV", "DEFAULT_CALIBRATION_TEXTS", "ServerSettings"]

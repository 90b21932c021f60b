"""The embedding engine: texts in, float32 vectors out, numerically identical to FlagEmbedding."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import batching
from .devices import describe, resolve_device, resolve_precision
from .errors import ConfigError, TextTooLongError
from .inputs import as_texts
from .loading import Backbone, load_backbone, locate, max_positions, resolve_max_length
from .pooling import pool
from .registry import ModelSpec, check_pooling
from .types import Encoded

logger = logging.getLogger(__name__)

Kind = Literal["query", "document"]
_KINDS = ("query", "document")


class Embedder:
    """Dense (and, for BGE-M3, sparse and ColBERT) embeddings from a BGE or compatible model.

    Pooling, query instruction and length limit come from the model registry
    (:mod:`bge_core.registry`) for known models; every one of them can be overridden.

    Args:
        model: A Hugging Face Hub id (``"BAAI/bge-small-en-v1.5"``) or a local folder.
        device: ``"cpu"``, ``"cuda:1"``, ``"mps"``, ... ``None`` picks one device
            (``cuda:0``, then ``mps``, then ``cpu``).
        precision: ``"auto"`` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32),
            ``"fp32"``, ``"fp16"`` or ``"bf16"``. Outputs are float32 in every case.
        batch_size: Most texts in one forward pass.
        max_batch_tokens: Most padded tokens in one forward pass (``None``: a per-device default).
        max_length: Tokens a text is truncated to (default 512, never above the model's limit).
        query_instruction: Instruction put before queries by :meth:`encode_queries`. ``None``
            takes the registry's (e.g. ``"Represent this sentence for searching relevant
            passages: "`` for English BGE v1.5); ``""`` turns it off.
        query_instruction_format: Template joining instruction and query (default ``"{}{}"``).
        document_instruction: Text put before documents; ``None`` takes the registry's (only
            E5 models have one, ``"passage: "``); ``""`` turns it off.
        pooling: ``"cls"``, ``"mean"`` or ``"last_token"``; ``None`` takes the registry's, or the
            folder's sentence-transformers pooling config, else ``"cls"``.
        normalize: L2-normalize dense vectors (after ``truncate_dim``).
        truncate_dim: Keep only the first dimensions (Matryoshka-style), before normalization.
        truncation: With ``False``, a text longer than ``max_length`` raises
            :class:`~bge_core.errors.TextTooLongError` instead of being cut.
        show_progress: Progress bar; ``None`` shows one for inputs of 2048 texts or more.
        trust_remote_code: Allow a model's own code; ``None`` takes the registry's choice.
        cache_dir, revision, token: Passed to the Hugging Face Hub for hub ids.

    Example:
        >>> emb = Embedder("BAAI/bge-small-en-v1.5")
        >>> q = emb.encode_queries("what is BGE?")          # (384,)
        >>> d = emb.encode_documents(["BGE is ...", "..."])  # (2, 384)
        >>> scores = d @ q
    """

    def __init__(
        self,
        model: Union[str, Path],
        *,
        device: Union[str, int, torch.device, None] = None,
        precision: str = "auto",
        batch_size: int = batching.DEFAULT_BATCH_SIZE,
        max_batch_tokens: Optional[int] = None,
        max_length: Optional[int] = None,
        query_instruction: Optional[str] = None,
        query_instruction_format: Optional[str] = None,
        document_instruction: Optional[str] = None,
        pooling: Optional[str] = None,
        normalize: bool = True,
        truncate_dim: Optional[int] = None,
        truncation: bool = True,
        show_progress: Optional[bool] = None,
        trust_remote_code: Optional[bool] = None,
        cache_dir: Optional[Union[str, Path]] = None,
        revision: Optional[str] = None,
        token: Optional[Union[str, bool]] = None,
    ) -> None:
        self.batch_size = batching.check_positive("batch_size", batch_size)
        for name, value in (
            ("query_instruction", query_instruction),
            ("query_instruction_format", query_instruction_format),
            ("document_instruction", document_instruction),
        ):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None, got {type(value).__name__}")
        if pooling is not None:
            check_pooling(pooling)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.max_batch_tokens = (
            batching.default_max_batch_tokens(self.device)
            if max_batch_tokens is None
            else batching.check_positive("max_batch_tokens", max_batch_tokens)
        )

        self.model_name = str(model)
        folder, spec, trust = locate(model, "embedding", trust_remote_code, cache_dir, revision, token)
        self.spec: ModelSpec = spec
        self._backbone: Backbone = load_backbone(
            folder, task="embedding", device=self.device, dtype=self.dtype, trust_remote_code=trust
        )

        self.model_max_length = spec.max_length or max_positions(self._backbone.config, self._backbone.tokenizer)
        self.max_length = resolve_max_length(
            max_length, spec.default_max_length, self.model_max_length, self.model_name
        )
        self.pooling = pooling if pooling is not None else (spec.pooling or "cls")
        self.query_instruction = spec.query_instruction if query_instruction is None else (query_instruction or None)
        self.query_instruction_format = query_instruction_format or spec.query_instruction_format
        self.document_instruction = (
            spec.document_instruction if document_instruction is None else (document_instruction or None)
        )
        self.normalize = bool(normalize)
        hidden = self._backbone.hidden_size
        if truncate_dim is not None:
            truncate_dim = batching.check_positive("truncate_dim", truncate_dim)
            if truncate_dim > hidden:
                raise ConfigError(f"truncate_dim={truncate_dim} exceeds the model's dimension ({hidden}).")
        self.truncate_dim = truncate_dim
        self.truncation = bool(truncation)
        self.show_progress = show_progress

    # ------------------------------------------------------------------ properties
    @property
    def dimension(self) -> int:
        """Length of a dense vector (after ``truncate_dim``)."""
        return self.truncate_dim or self._backbone.hidden_size

    @property
    def folder(self) -> Path:
        """The local folder the model was loaded from."""
        return self._backbone.folder

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer (shared; do not change its settings)."""
        return self._backbone.tokenizer

    def __repr__(self) -> str:
        return (
            f"Embedder(model={self.model_name!r}, device={describe(self.device, self.dtype)!r}, "
            f"pooling={self.pooling!r}, max_length={self.max_length})"
        )

    # ------------------------------------------------------------------ public API
    def encode_queries(self, texts: Union[str, list[str]], **options: Any) -> np.ndarray:
        """Dense vectors of queries, with the query instruction applied.

        Returns:
            float32 array ``(N, D)`` for a list, ``(D,)`` for a single string.
        """
        return self.encode(texts, kind="query", **options).dense  # type: ignore[return-value]

    def encode_documents(self, texts: Union[str, list[str]], **options: Any) -> np.ndarray:
        """Dense vectors of documents (no query instruction).

        Returns:
            float32 array ``(N, D)`` for a list, ``(D,)`` for a single string.
        """
        return self.encode(texts, kind="document", **options).dense  # type: ignore[return-value]

    def encode(
        self,
        texts: Union[str, list[str]],
        *,
        kind: Kind = "document",
        dense: bool = True,
        sparse: bool = False,
        colbert: bool = False,
        batch_size: Optional[int] = None,
        show_progress: Optional[bool] = None,
    ) -> Encoded:
        """Encode texts into the requested outputs with one forward pass per batch.

        Args:
            texts: A string or a list of strings.
            kind: ``"query"`` applies the query instruction; ``"document"`` the document one.
            dense, sparse, colbert: Which outputs to compute (sparse and ColBERT need BGE-M3
                heads).
            batch_size: Overrides the instance's ``batch_size`` for this call.
            show_progress: Overrides the instance's ``show_progress`` for this call.

        Returns:
            :class:`~bge_core.types.Encoded`, in input order; outputs not requested are ``None``.

        Raises:
            InputTypeError: ``texts`` is not a string or a list of strings.
            TextTooLongError: a text exceeds ``max_length`` while ``truncation=False``.
            ConfigError: an invalid ``kind`` or no output requested.
        """
        if kind not in _KINDS:
            raise ConfigError(f"Invalid kind {kind!r}. Valid kinds are: {', '.join(_KINDS)}.")
        if not (dense or sparse or colbert):
            raise ConfigError("Request at least one of dense, sparse or colbert.")
        items, single = as_texts(texts)
        heads = self._heads(sparse=sparse, colbert=colbert)
        size = self.batch_size if batch_size is None else batching.check_positive("batch_size", batch_size)
        if not items:
            return self._empty(dense, sparse, colbert)
        prepared = self._with_instruction(items, kind)
        backbone = self._backbone
        with backbone.lock:
            input_ids = self._tokenize(prepared)
            dense_out = np.empty((len(items), self.dimension), dtype=np.float32) if dense else None
            for positions, out in batching.run_batches(
                input_ids,
                self._forward_fn(dense, heads),
                pad_id=backbone.tokenizer.pad_token_id,
                device=self.device,
                max_batch_size=size,
                max_batch_tokens=self.max_batch_tokens,
                show_progress=self.show_progress if show_progress is None else show_progress,
                desc="Embedding",
            ):
                if dense_out is not None:
                    dense_out[positions] = out["dense"]
        if single:
            return Encoded(dense=None if dense_out is None else dense_out[0])
        return Encoded(dense=dense_out)

    # ------------------------------------------------------------------ steps
    def _with_instruction(self, texts: list[str], kind: Kind) -> list[str]:
        if kind == "query" and self.query_instruction:
            fmt = self.query_instruction_format.replace("\\n", "\n")
            return [fmt.format(self.query_instruction, t) for t in texts]
        if kind == "document" and self.document_instruction:
            return [self.document_instruction + t for t in texts]
        return texts

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        tokenizer = self._backbone.tokenizer
        if self.truncation:
            encoded = tokenizer(
                texts,
                truncation=True,
                max_length=self.max_length,
                return_attention_mask=False,
                return_token_type_ids=False,
            )
            return encoded["input_ids"]
        encoded = tokenizer(texts, truncation=False, return_attention_mask=False, return_token_type_ids=False)
        ids = encoded["input_ids"]
        for i, row in enumerate(ids):
            if len(row) > self.max_length:
                raise TextTooLongError(
                    f"texts[{i}] has {len(row)} tokens, more than max_length={self.max_length}; "
                    f"shorten or chunk it, raise max_length, or pass truncation=True."
                )
        return ids

    def _forward_fn(self, dense: bool, heads: dict[str, Any]):
        model = self._backbone.model
        pooling = self.pooling
        truncate_dim = self.truncate_dim
        normalize = self.normalize

        def forward(batch: batching.Batch) -> dict[str, Any]:
            hidden = model(**batch.model_inputs(), return_dict=True).last_hidden_state
            out: dict[str, Any] = {}
            if dense:
                vectors = pool(hidden, batch.attention_mask, pooling)
                if truncate_dim is not None:
                    vectors = vectors[:, :truncate_dim]
                if normalize:
                    vectors = F.normalize(vectors, dim=-1)
                out["dense"] = vectors.cpu().numpy()
            return out

        return forward

    def _heads(self, *, sparse: bool, colbert: bool) -> dict[str, Any]:
        if sparse or colbert:
            raise ConfigError("sparse and ColBERT outputs need BGE-M3 heads, which this version does not load.")
        return {}

    def _empty(self, dense: bool, sparse: bool, colbert: bool) -> Encoded:
        return Encoded(
            dense=np.empty((0, self.dimension), dtype=np.float32) if dense else None,
            sparse=[] if sparse else None,
            colbert=[] if colbert else None,
        )


__all__ = ["Embedder"]

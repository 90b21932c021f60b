"""The embedding engine: texts in, float32 vectors out.

At ``precision="fp32"`` the vectors equal FlagEmbedding's (``FlagModel``, ``BGEM3FlagModel``,
``FlagLLMModel``, ``FlagICLModel``; tested to 1e-5). The default ``precision="auto"`` runs bf16
on CPUs with native bf16: there dense vectors keep a cosine of at least 0.99987 to fp32 (minimum
measured over 204 texts on the BERT, XLM-R, Qwen2 and Mistral fixtures by
``benchmarks/bf16_deviation.py``); pass ``precision="fp32"`` for FlagEmbedding's numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from . import batching, icl
from .checks import check_positive
from .chunking import ChunkedEncoded, window_tokenize
from .devices import describe, resolve_device, resolve_precision
from .errors import ConfigError, InputTypeError, TextTooLongError, UnsupportedModelError
from .frozen import FrozenAfterInit
from .heads import HEAD_FILES, M3Heads, colbert_vectors, load_head, sparse_vectors, unused_token_ids
from .inputs import as_pairs, as_texts
from .loading import Backbone, open_model, resolve_max_length
from .pooling import pool
from .registry import ModelSpec, Pooling, check_pooling
from .scoring import check_weights, colbert_scores, hybrid_scores
from .st_modules import NormalizeLayer, PostPooling, load_post_pooling
from .truncation import TruncationWarner, count_truncated
from .types import Encoded, SparseVector, join_parts

logger = logging.getLogger(__name__)

Kind = Literal["query", "document"]
_KINDS = ("query", "document")


class Embedder(FrozenAfterInit):
    r"""Dense (and, for BGE-M3, sparse and ColBERT) embeddings from a BGE or compatible model.

    Pooling, query instruction and length limit come from the model registry
    (:mod:`bge_core.registry`) for known models; every one of them can be overridden.

    Settings are read-only after construction: an Embedder may be shared by several callers
    (threads, adapters, the server), so assigning an attribute raises
    :class:`~bge_core.errors.ReadOnlySettingError`. What varies per call (``normalize``,
    ``truncation``, ``batch_size``, ``show_progress``) is an argument of :meth:`encode`.

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
            folder's sentence-transformers pooling config, else ``"last_token"`` for a decoder-only
            (LLM) model and ``"cls"`` for an encoder.
        normalize: L2-normalize dense vectors (after ``truncate_dim``). A sentence-transformers
            folder's own modules after pooling (``Dense``, ``Normalize``) are applied before it.
        truncate_dim: Keep only the first dimensions (Matryoshka-style), before normalization.
        truncation: With ``False``, a text longer than ``max_length`` raises
            :class:`~bge_core.errors.TextTooLongError` instead of being cut.
        show_progress: Progress bar; ``None`` shows one for inputs of 2048 texts or more.
        trust_remote_code: Allow a model's own code; ``None`` takes the registry's choice.
        cache_dir, revision, token: Passed to the Hugging Face Hub for hub ids.
        examples: bge-en-icl only: in-context examples put before every query, as
            ``FlagICLModel``'s ``examples_for_task``: a list of dicts with ``"query"``,
            ``"response"`` and optionally ``"instruct"`` (default: the query instruction).
        examples_instruction_format: bge-en-icl only: template of one example (default
            ``"<instruct>{}\n<query>{}\n<response>{}"``).

    Raises:
        ConfigError: an invalid argument (named in the message).
        UnsupportedModelError: a model or a sentence-transformers module bge_core cannot run
            exactly (it never returns vectors that skip part of a model).

    Example:
        >>> emb = Embedder("BAAI/bge-small-en-v1.5")
        >>> q = emb.encode_queries("what is BGE?")          # (384,)
        >>> d = emb.encode_documents(["BGE is ...", "..."])  # (2, 384)
        >>> scores = d @ q
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | int | torch.device | None = None,
        precision: str = "auto",
        batch_size: int = batching.DEFAULT_BATCH_SIZE,
        max_batch_tokens: int | None = None,
        max_length: int | None = None,
        query_instruction: str | None = None,
        query_instruction_format: str | None = None,
        document_instruction: str | None = None,
        pooling: str | None = None,
        normalize: bool = True,
        truncate_dim: int | None = None,
        truncation: bool = True,
        show_progress: bool | None = None,
        trust_remote_code: bool | None = None,
        cache_dir: str | Path | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        examples: Sequence[Mapping[str, str]] | None = None,
        examples_instruction_format: str | None = None,
    ) -> None:
        self.batch_size = check_positive("batch_size", batch_size)
        for name, value in (
            ("query_instruction", query_instruction),
            ("query_instruction_format", query_instruction_format),
            ("document_instruction", document_instruction),
            ("examples_instruction_format", examples_instruction_format),
        ):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None, got {type(value).__name__}")
        pooling_mode = None if pooling is None else check_pooling(pooling)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self._executor = batching.executor_for(self.device)  # BGE_RAG_* read once, here
        self.model_name = str(model)
        self.spec: ModelSpec
        self._backbone: Backbone
        self.spec, self._backbone, self.model_max_length = open_model(
            model,
            "embedding",
            device=self.device,
            dtype=self.dtype,
            trust_remote_code=trust_remote_code,
            cache_dir=cache_dir,
            revision=revision,
            token=token,
        )
        self.max_batch_tokens = batching.resolve_max_batch_tokens(max_batch_tokens, self.device, self._backbone.config)
        spec = self.spec
        self.max_length = resolve_max_length(max_length, spec, self._backbone, self.model_max_length, self.model_name)
        self.pooling: Pooling = pooling_mode if pooling_mode is not None else (spec.pooling or "cls")
        self.query_instruction = spec.query_instruction if query_instruction is None else (query_instruction or None)
        self.query_instruction_format = query_instruction_format or spec.query_instruction_format
        self.document_instruction = (
            spec.document_instruction if document_instruction is None else (document_instruction or None)
        )
        self.normalize = bool(normalize)
        self._check_prompt_pooling()
        self._post = self._post_pooling()
        hidden = self._post.output_dim(self._backbone.hidden_size)
        self._setup_icl(examples, examples_instruction_format)
        self._truncation_warner = TruncationWarner("Embedder")
        if truncate_dim is not None:
            truncate_dim = check_positive("truncate_dim", truncate_dim)
            if truncate_dim > hidden:
                raise ConfigError(f"truncate_dim={truncate_dim} exceeds the model's dimension ({hidden}).")
        self.truncate_dim = truncate_dim
        self.truncation = bool(truncation)
        self.show_progress = show_progress
        self._freeze()

    # ------------------------------------------------------------------ properties
    @property
    def dimension(self) -> int:
        """Length of a dense vector (after the folder's ``Dense`` modules and ``truncate_dim``)."""
        return self.truncate_dim or self._post.output_dim(self._backbone.hidden_size)

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
    def encode_queries(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        normalize: bool | None = None,
        truncation: bool | None = None,
    ) -> np.ndarray:
        """Dense vectors of queries, with the query instruction applied.

        Args:
            texts: A string or a list of strings.
            batch_size: Overrides the instance's ``batch_size`` for this call.
            show_progress: Overrides the instance's ``show_progress`` for this call.
            normalize: L2-normalize this call's vectors; ``None`` takes the instance's ``normalize``.
            truncation: ``False`` raises :class:`~bge_core.errors.TextTooLongError` for a text longer
                than ``max_length`` in this call; ``None`` takes the instance's ``truncation``.

        Returns:
            float32 array ``(N, D)`` for a list, ``(D,)`` for a single string.
        """
        out = self.encode(
            texts,
            kind="query",
            batch_size=batch_size,
            show_progress=show_progress,
            normalize=normalize,
            truncation=truncation,
        )
        return out.dense  # type: ignore[return-value]

    def encode_documents(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        normalize: bool | None = None,
        truncation: bool | None = None,
    ) -> np.ndarray:
        """Dense vectors of documents (no query instruction).

        Args:
            texts: A string or a list of strings.
            batch_size: Overrides the instance's ``batch_size`` for this call.
            show_progress: Overrides the instance's ``show_progress`` for this call.
            normalize: L2-normalize this call's vectors; ``None`` takes the instance's ``normalize``.
            truncation: ``False`` raises :class:`~bge_core.errors.TextTooLongError` for a text longer
                than ``max_length`` in this call; ``None`` takes the instance's ``truncation``.

        Returns:
            float32 array ``(N, D)`` for a list, ``(D,)`` for a single string.
        """
        out = self.encode(
            texts,
            kind="document",
            batch_size=batch_size,
            show_progress=show_progress,
            normalize=normalize,
            truncation=truncation,
        )
        return out.dense  # type: ignore[return-value]

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        kind: Kind = "document",
        dense: bool = True,
        sparse: bool = False,
        colbert: bool = False,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        normalize: bool | None = None,
        truncation: bool | None = None,
    ) -> Encoded:
        """Encode texts into the requested outputs with one forward pass per batch.

        Args:
            texts: A string or a list of strings.
            kind: ``"query"`` applies the query instruction; ``"document"`` the document one.
            dense: Dense vectors (float32, L2-normalized unless normalization is off).
            sparse: BGE-M3 lexical weights (:class:`~bge_core.types.SparseVector`).
            colbert: BGE-M3 ColBERT vectors (a float32 ``(tokens - 1, dim)`` matrix per text).
            batch_size: Overrides the instance's ``batch_size`` for this call.
            show_progress: Overrides the instance's ``show_progress`` for this call.
            normalize: L2-normalize the dense vectors of this call; ``None`` takes the instance's
                ``normalize``. Other calls on the same (possibly shared) Embedder are unaffected.
            truncation: ``False`` raises :class:`~bge_core.errors.TextTooLongError` for a text
                longer than ``max_length`` in this call instead of cutting it; ``None`` takes the
                instance's ``truncation``.

        Returns:
            :class:`~bge_core.types.Encoded`, in input order; outputs not requested are ``None``.

        Raises:
            InputTypeError: ``texts`` is not a string or a list of strings.
            MissingHeadError: sparse or ColBERT requested from a model without that head file.
            TextTooLongError: a text exceeds ``max_length`` while truncation is off.
            ConfigError: an invalid ``kind`` or no output requested.
        """
        normalize = self.normalize if normalize is None else bool(normalize)
        truncation = self.truncation if truncation is None else bool(truncation)
        if kind not in _KINDS:
            raise ConfigError(f"Invalid kind {kind!r}. Valid kinds are: {', '.join(_KINDS)}.")
        if not (dense or sparse or colbert):
            raise ConfigError("Request at least one of dense, sparse or colbert.")
        items, single = as_texts(texts)
        heads = self._heads(sparse=sparse, colbert=colbert)
        size = self.batch_size if batch_size is None else check_positive("batch_size", batch_size)
        if not items:
            return self._empty(dense, sparse, colbert)
        with self._backbone.lock:
            if truncation and self._tokenizes_ahead(items, kind):
                out, counts = self._encode_ahead(items, kind, dense, heads, size, show_progress, normalize)
            else:
                input_ids = self._tokenize_kind(items, kind, truncation)
                out = self._run(input_ids, dense, heads, size, show_progress, normalize)
                counts = [len(row) for row in input_ids]
        if single:
            return Encoded(
                dense=None if out.dense is None else out.dense[0],
                sparse=None if out.sparse is None else out.sparse[0],  # type: ignore[index]
                colbert=None if out.colbert is None else out.colbert[0],
                token_counts=counts[0],
            )
        return replace(out, token_counts=counts)

    def encode_chunked(
        self,
        texts: str | Sequence[str],
        *,
        max_tokens: int | None = None,
        overlap: int = 0,
        dense: bool = True,
        sparse: bool = False,
        colbert: bool = False,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        normalize: bool | None = None,
    ) -> ChunkedEncoded:
        """Encode long documents as overlapping token windows, keeping character offsets.

        Each window holds at most ``max_tokens`` tokens (special tokens included; default
        ``max_length``); consecutive windows of a document share ``overlap`` tokens. A
        document that fits in one window gives exactly ``encode``'s output. Use
        :meth:`ChunkedEncoded.aggregate` for one output per document. No text is ever cut, so
        there is no ``truncation`` option; ``normalize``, ``batch_size`` and ``show_progress`` act
        as in :meth:`encode`, for this call.

        Raises:
            ConfigError: ``max_tokens`` above ``max_length`` or ``overlap`` out of range, or a
                model with a document instruction (E5), whose prefix would not fit chunking.
        """
        normalize = self.normalize if normalize is None else bool(normalize)
        items, _ = as_texts(texts)
        heads = self._heads(sparse=sparse, colbert=colbert)
        if not (dense or sparse or colbert):
            raise ConfigError("Request at least one of dense, sparse or colbert.")
        if self.document_instruction:
            raise ConfigError("encode_chunked does not support models with a document instruction (E5).")
        window = self.max_length if max_tokens is None else check_positive("max_tokens", max_tokens)
        if window > self.max_length:
            raise ConfigError(f"max_tokens={window} exceeds max_length={self.max_length}; raise max_length first.")
        if isinstance(overlap, bool) or not isinstance(overlap, int):
            raise ConfigError(f"overlap must be an integer, got {overlap!r}")
        size = self.batch_size if batch_size is None else check_positive("batch_size", batch_size)
        if not items:
            return ChunkedEncoded([], self._empty(dense, sparse, colbert), np.zeros(1, np.int64), normalize)
        with self._backbone.lock:
            input_ids, chunks = window_tokenize(self._backbone.tokenizer, items, window, overlap)
            out = self._run(input_ids, dense, heads, size, show_progress, normalize)
        counts = np.bincount([c.document for c in chunks], minlength=len(items))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ChunkedEncoded(chunks, out, offsets, normalize)

    def compute_score(
        self,
        pairs: tuple[str, str] | Sequence[tuple[str, str]],
        *,
        weights: Sequence[float] | None = None,
        max_query_length: int | None = None,
        max_passage_length: int | None = None,
        batch_size: int | None = None,
    ) -> dict[str, float | list[float]]:
        """BGE-M3 scores of (query, passage) pairs, as ``BGEM3FlagModel.compute_score``.

        Each distinct text is encoded once with all three outputs. Queries are encoded as
        they are, without the query instruction, exactly as ``BGEM3FlagModel.compute_score``
        does (BGE-M3 has none; one set with ``query_instruction=`` is not applied here).

        Args:
            pairs: One ``(query, passage)`` pair or a list of them.
            weights: ``[dense, sparse, colbert]`` weights of the hybrid scores (default 1, 1, 1).
            max_query_length: Truncation length of the queries (default ``max_length``).
            max_passage_length: Truncation length of the passages (default ``max_length``).
            batch_size: Overrides the instance's ``batch_size`` for this call.

        Returns:
            ``{"colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"}`` mapped to
            Python floats (one pair) or lists of them (a list of pairs), in input order; five
            empty lists for an empty list of pairs.
        """
        items, single = as_pairs(pairs)
        w = check_weights(weights)
        heads = self._heads(sparse=True, colbert=True)
        size = self.batch_size if batch_size is None else check_positive("batch_size", batch_size)
        q_len, p_len = self._length(max_query_length), self._length(max_passage_length)
        if not items:
            return {k: [] for k in ("colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense")}
        queries = list(dict.fromkeys(q for q, _ in items))
        passages = list(dict.fromkeys(p for _, p in items))
        with self._backbone.lock:
            q_out = self._run(self._tokenize(queries, q_len, self.truncation), True, heads, size, None, self.normalize)
            p_out = self._run(self._tokenize(passages, p_len, self.truncation), True, heads, size, None, self.normalize)
        q_pos = {q: i for i, q in enumerate(queries)}
        p_pos = {p: i for i, p in enumerate(passages)}
        qi = np.array([q_pos[q] for q, _ in items], dtype=np.int64)
        pi = np.array([p_pos[p] for _, p in items], dtype=np.int64)
        d = np.einsum("ij,ij->i", q_out.dense[qi], p_out.dense[pi])  # type: ignore[index]
        s = np.array([q_out.sparse[a].dot(p_out.sparse[b]) for a, b in zip(qi, pi)])  # type: ignore[index]
        c = np.array([colbert_scores(q_out.colbert[a], p_out.colbert[b]) for a, b in zip(qi, pi)])  # type: ignore[index]
        scores = {
            "colbert": c,
            "sparse": s,
            "dense": d,
            # FlagEmbedding divides by w0 + w1 here; with both zero that is 0 / 0 (NaN), not an error.
            "sparse+dense": (
                hybrid_scores(dense=d, sparse=s, weights=(w[0], w[1], 0.0))
                if w[0] + w[1] > 0
                else np.full(len(items), np.nan, dtype=np.float32)
            ),
            "colbert+sparse+dense": hybrid_scores(dense=d, sparse=s, colbert=c, weights=w),
        }
        as_lists = {k: np.asarray(v, dtype=np.float32).tolist() for k, v in scores.items()}
        return {k: v[0] for k, v in as_lists.items()} if single else as_lists

    def has_head(self, name: Literal["sparse", "colbert"]) -> bool:
        """Whether the model folder ships the BGE-M3 ``"sparse"`` or ``"colbert"`` head file."""
        if name not in HEAD_FILES:
            raise ConfigError(f"Invalid head {name!r}. Valid heads are: {', '.join(HEAD_FILES)}.")
        return (self.folder / HEAD_FILES[name]).is_file()

    def require_heads(self, *, sparse: bool = False, colbert: bool = False) -> None:
        """Load the requested BGE-M3 heads now (they otherwise load on first use).

        Raises:
            MissingHeadError: a requested head file is missing from the model folder.
        """
        self._heads(sparse=sparse, colbert=colbert)

    def decode_sparse(self, vector: SparseVector, top_k: int | None = None) -> list[tuple[str, float]]:
        """A token-string view of a sparse vector, heaviest first, for display.

        Distinct token ids can decode to the same string (e.g. a word-piece and a whole word),
        so this returns ``(token, weight)`` pairs rather than a dict that would merge them.
        """
        if not isinstance(vector, SparseVector):
            raise InputTypeError(f"vector must be a SparseVector, got {type(vector).__name__}")
        order = np.argsort(-vector.values, kind="stable")[:top_k]
        tokens = self._backbone.tokenizer.convert_ids_to_tokens(vector.indices[order].tolist())
        return [(str(t), float(w)) for t, w in zip(tokens, vector.values[order].tolist())]

    # ------------------------------------------------------------------ steps
    def _length(self, requested: int | None) -> int:
        """A per-call truncation length, checked like ``max_length`` (default: ``max_length``)."""
        if requested is None:
            return self.max_length
        return resolve_max_length(requested, self.spec, self._backbone, self.model_max_length, self.model_name)

    def with_instruction(self, texts: list[str], kind: Kind) -> list[str]:
        """``texts`` as ``encode(texts, kind=kind)`` gives them to the tokenizer.

        The query instruction (in ``query_instruction_format``) goes before queries, the document
        instruction (E5) before documents, else the texts are unchanged. bge-en-icl queries also
        get their few-shot prefix at tokenization, which this does not add.
        """
        if kind == "query" and self.query_instruction:
            fmt = self.query_instruction_format.replace("\\n", "\n")
            return [fmt.format(self.query_instruction, t) for t in texts]
        if kind == "document" and self.document_instruction:
            return [self.document_instruction + t for t in texts]
        return texts

    def _tokenizes_ahead(self, items: list[str], kind: Kind) -> bool:
        """Whether this call may tokenize its next chunk on a helper thread while the model runs.

        On an accelerator (or ``BGE_RAG_TOKENIZE_AHEAD=1``), for calls of more than one chunk,
        and not bge-en-icl queries (their paths tokenize differently). Only calls with truncation
        on do (``encode`` checks the call's ``truncation``).
        """
        return (
            self._executor.tokenize_ahead
            and len(items) > batching.TOKENIZE_AHEAD_TEXTS
            and not (kind == "query" and self.spec.icl)
        )

    def _encode_ahead(
        self,
        items: list[str],
        kind: Kind,
        dense: bool,
        heads: M3Heads,
        batch_size: int,
        show_progress: bool | None,
        normalize: bool,
    ) -> tuple[Encoded, list[int]]:
        """``encode`` in chunks of ``TOKENIZE_AHEAD_TEXTS`` texts, tokenizing one chunk ahead.

        While the model runs chunk k, a helper thread tokenizes chunk k + 1 (fast tokenizers
        release the GIL), so an accelerator does not wait for the CPU to tokenize a whole large
        call first. Each text gets the same tokens as in one call; texts are sorted by length
        within their chunk.
        """
        from concurrent.futures import ThreadPoolExecutor

        texts = self.with_instruction(items, kind)
        step = batching.TOKENIZE_AHEAD_TEXTS
        pieces = [texts[i : i + step] for i in range(0, len(texts), step)]
        max_length = self.max_length
        progress = batching.progress_bar(
            len(texts), self.show_progress if show_progress is None else show_progress, "Embedding"
        )
        parts: list[Encoded] = []
        counts: list[int] = []
        truncated = 0
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bge-rag-tokenize") as pool:
                future = pool.submit(self._tokenize_truncated, pieces[0], max_length)
                for k in range(len(pieces)):
                    ids, cut = future.result()
                    if k + 1 < len(pieces):
                        future = pool.submit(self._tokenize_truncated, pieces[k + 1], max_length)
                    parts.append(self._run(ids, dense, heads, batch_size, False, normalize))
                    counts.extend(len(row) for row in ids)
                    truncated += cut
                    if progress is not None:
                        progress.update(len(ids))
        finally:
            if progress is not None:
                progress.close()
        self._truncation_warner.report(
            truncated=truncated, total=len(texts), max_length=max_length, limit=self.model_max_length
        )
        return join_parts(parts), counts

    def _tokenize_kind(self, items: list[str], kind: Kind, truncation: bool) -> list[list[int]]:
        """Token ids of texts as ``kind``: ICL queries (bge-en-icl) or instruction + text."""
        if kind == "query" and self.spec.icl:
            return self._tokenize_icl(items, truncation)
        return self._tokenize(self.with_instruction(items, kind), self.max_length, truncation)

    def _tokenize_truncated(self, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
        """Token ids cut at ``max_length``, and how many texts were cut.

        The count is 0 once the warning has been given (counting needs a second tokenizer pass).
        """
        tokenizer = self._backbone.tokenizer
        ids = tokenizer(
            texts, truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=False
        )["input_ids"]
        cut = 0 if self._truncation_warner.warned else count_truncated(tokenizer, texts, ids, max_length)
        return ids, cut

    def _tokenize(self, texts: list[str], max_length: int, truncation: bool) -> list[list[int]]:
        """Token ids of ``texts``, cut at ``max_length`` when ``truncation`` (with the one-time warning).

        With ``truncation=False`` texts are tokenized whole, and one longer than ``max_length`` raises
        :class:`~bge_core.errors.TextTooLongError`.
        """
        if truncation:
            ids, cut = self._tokenize_truncated(texts, max_length)  # cut is 0 once warned: report is a no-op
            self._truncation_warner.report(
                truncated=cut, total=len(texts), max_length=max_length, limit=self.model_max_length
            )
            return ids
        # verbose=False: no "Token indices sequence length is longer than ..." before our error.
        ids = self._backbone.tokenizer(
            texts, truncation=False, verbose=False, return_attention_mask=False, return_token_type_ids=False
        )["input_ids"]
        for i, row in enumerate(ids):
            if len(row) > max_length:
                raise TextTooLongError(
                    f"texts[{i}] has {len(row)} tokens, more than max_length={max_length}; "
                    f"shorten or chunk it (encode_chunked), raise max_length, or pass truncation=True."
                )
        return ids

    def _tokenize_icl(self, items: list[str], truncation: bool) -> list[list[int]]:
        """bge-en-icl queries, tokenized exactly as ``FlagICLModel.encode_queries``."""
        texts = self.with_instruction(items, "query")
        tokenizer = self._backbone.tokenizer
        ids, cut = icl.tokenize_queries(tokenizer, texts, self._icl_prefix, self.max_length)
        truncated = [i for i, n in enumerate(cut) if n]
        if truncated and not truncation:
            i = truncated[0]
            raise TextTooLongError(
                f"texts[{i}] has {cut[i]} tokens with its instruction, more than the "
                f"{icl.query_token_limit(tokenizer, self.max_length)} a bge-en-icl query keeps at "
                f"max_length={self.max_length}; shorten it, raise max_length, or pass truncation=True."
            )
        self._truncation_warner.report(
            truncated=len(truncated),
            total=len(texts),
            max_length=self.max_length,
            limit=self.model_max_length,
            unit="queries",
        )
        return ids

    def _run(
        self,
        input_ids: list[list[int]],
        dense: bool,
        heads: M3Heads,
        batch_size: int,
        show_progress: bool | None,
        normalize: bool,
    ) -> Encoded:
        """Forward token ids in token-budget batches; outputs in input order.

        Dense vectors are L2-normalized when ``normalize`` (the call's value, not the instance's).
        """
        n = len(input_ids)
        dense_out = np.empty((n, self.dimension), dtype=np.float32) if dense else None
        sparse_out: list[Any] | None = [None] * n if heads.sparse is not None else None
        colbert_out: list[Any] | None = [None] * n if heads.colbert is not None else None
        for positions, out in batching.run_batches(
            input_ids,
            self._forward_fn(dense, heads, normalize),
            pad_id=self._backbone.tokenizer.pad_token_id,
            device=self.device,
            max_batch_size=batch_size,
            max_batch_tokens=self.max_batch_tokens,
            show_progress=self.show_progress if show_progress is None else show_progress,
            desc="Embedding",
            executor=self._executor,
        ):
            if dense_out is not None:
                dense_out[positions] = out["dense"]
            for name, target in (("sparse", sparse_out), ("colbert", colbert_out)):
                if target is not None:
                    for pos, item in zip(positions.tolist(), out[name]):
                        target[pos] = item
        return Encoded(dense=dense_out, sparse=sparse_out, colbert=colbert_out)

    def _forward_fn(self, dense: bool, heads: M3Heads, normalize: bool) -> Callable[[batching.Batch], dict[str, Any]]:
        """One batch's forward pass, as a function for the batcher.

        It gives pooled dense vectors (L2-normalized when ``normalize``) and the requested M3
        heads' outputs.
        """
        model = self._backbone.model
        pooling, truncate_dim, post = self.pooling, self.truncate_dim, self._post

        def forward(batch: batching.Batch) -> dict[str, Any]:
            hidden = model(**batch.model_inputs(), return_dict=True).last_hidden_state
            out: dict[str, Any] = {}
            if dense:
                vectors = pool(hidden, batch.attention_mask, pooling)
                if post:
                    vectors = post(vectors)
                if truncate_dim is not None:
                    vectors = vectors[:, :truncate_dim]
                if normalize:
                    vectors = F.normalize(vectors, dim=-1)
                out["dense"] = vectors.cpu().numpy()
            if heads.sparse is not None:
                assert heads.unused_ids is not None  # _heads sets them together with the sparse head
                out["sparse"] = sparse_vectors(
                    hidden, batch.input_ids, batch.attention_mask, heads.sparse, heads.unused_ids
                )
            if heads.colbert is not None:
                out["colbert"] = colbert_vectors(hidden, batch.attention_mask, heads.colbert, truncate_dim)
            return out

        return forward

    def _post_pooling(self) -> PostPooling:
        """The folder's sentence-transformers modules after Pooling, loaded once per model.

        Registered models keep FlagEmbedding's semantics for normalization (``normalize=``
        decides), so a ``Normalize`` module of theirs is left out; ``Dense`` always applies.
        """
        backbone = self._backbone
        with backbone.lock:
            post = backbone.extras.get("post_pooling")
            if post is None:
                post = load_post_pooling(backbone.folder, backbone.hidden_size, self.device)
                backbone.extras["post_pooling"] = post
        if self.spec.registered and any(isinstance(layer, NormalizeLayer) for layer in post.layers):
            kept = [
                (layer, name) for layer, name in zip(post.layers, post.names) if not isinstance(layer, NormalizeLayer)
            ]
            post = PostPooling(tuple(k[0] for k in kept), tuple(k[1] for k in kept))
        return post

    def _check_prompt_pooling(self) -> None:
        """Refuse what sentence-transformers' ``include_prompt: false`` would make silently wrong."""
        if self.spec.pooling_includes_prompt or self.pooling not in ("mean",):
            return
        if self.query_instruction or self.document_instruction:
            raise UnsupportedModelError(
                f"{self.model_name}: its sentence-transformers Pooling config has include_prompt=false, so the "
                f"instruction's tokens are left out of mean pooling, which bge_core does not implement. Pass "
                f"query_instruction='' (no instruction), or use sentence-transformers for this model."
            )

    def _setup_icl(self, examples: Any, fmt: str | None) -> None:
        """Validate the bge-en-icl options and build the examples prefix of every query."""
        if not self.spec.icl:
            if examples is not None or fmt is not None:
                raise ConfigError(
                    f"examples and examples_instruction_format apply only to in-context-learning models "
                    f"(bge-en-icl); {self.model_name} is not one."
                )
            self.examples, self.examples_instruction_format, self._icl_prefix = None, None, ""
            return
        self.examples = None if examples is None else icl.check_examples(examples, self.query_instruction)
        self.examples_instruction_format = fmt if fmt is not None else icl.DEFAULT_EXAMPLES_FORMAT
        self._icl_prefix = icl.examples_prefix(self.examples, self.examples_instruction_format)

    def _heads(self, *, sparse: bool, colbert: bool) -> M3Heads:
        """The requested BGE-M3 heads, loaded once per model and shared."""
        if not (sparse or colbert):
            return M3Heads()
        backbone = self._backbone
        with backbone.lock:
            loaded = backbone.extras.setdefault("heads", {})
            for name, wanted in (("sparse", sparse), ("colbert", colbert)):
                if wanted and name not in loaded:
                    loaded[name] = load_head(backbone.folder, name, backbone.hidden_size, self.device, self.dtype)
        return M3Heads(
            sparse=loaded["sparse"] if sparse else None,
            colbert=loaded["colbert"] if colbert else None,
            unused_ids=unused_token_ids(backbone.tokenizer) if sparse else None,
        )

    def _empty(self, dense: bool, sparse: bool, colbert: bool) -> Encoded:
        return Encoded(
            dense=np.empty((0, self.dimension), dtype=np.float32) if dense else None,
            sparse=[] if sparse else None,
            colbert=[] if colbert else None,
            token_counts=[],
        )


__all__ = ["Embedder"]

"""Cross-encoder reranking with FlagReranker's exact pair formatting.

FlagReranker tokenizes the query without special tokens, capped at ``query_max_length``
(3/4 of ``max_length`` unless given), the passage without special tokens capped at
``max_length``, then joins the two token-id lists with the tokenizer's pair template
(``[CLS] q [SEP] p [SEP]`` for BERT, ``<s> q </s></s> p </s>`` for XLM-R), removing tokens from
the end of the passage only until the pair fits ``max_length``. Transformers 5 removed the
``prepare_for_model`` call that did the joining; here it is done on token ids with the fast
tokenizer's own post-processor, so no text is decoded and tokenized again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from . import batching
from .devices import describe, resolve_device, resolve_precision
from .errors import ConfigError, InputTypeError, ModelLoadError, TextTooLongError
from .inputs import as_pairs, as_texts
from .llm_rerank import LLMPairEncoder, LLMScorer, check_layers, detect_kind, load_llm
from .loading import Backbone, load_backbone, locate, max_positions, resolve_max_length
from .registry import ModelSpec
from .scoring import sigmoid
from .truncation import TruncationWarner
from .types import Ranked

logger = logging.getLogger(__name__)

#: Pairs per batch at most by default (FlagReranker's default).
DEFAULT_RERANK_BATCH_SIZE = 128


class PairEncoder:
    """Turns (query, passage) pairs into model input ids exactly as FlagReranker does.

    Uses a private copy of the fast tokenizer with padding and truncation turned off, so the
    shared Hugging Face tokenizer's settings are never touched.
    """

    def __init__(self, tokenizer: Any, max_length: int, query_max_length: int) -> None:
        backend = getattr(tokenizer, "_tokenizer", None)
        if backend is None:
            raise ModelLoadError(
                "Reranking needs a fast (Rust) tokenizer, i.e. a tokenizer.json in the model folder."
            )
        from tokenizers import Tokenizer

        self._rust = Tokenizer.from_str(backend.to_str())
        self._rust.no_padding()
        self._rust.no_truncation()
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.n_special = self._rust.num_special_tokens_to_add(True)
        #: How many pairs of the last ``encode`` call were cut (query cap, passage cap or pair fit).
        self.last_truncated = 0
        self.with_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())

    def encode(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[list[int]], Optional[list[list[int]]]]:
        queries = self._rust.encode_batch([q for q, _ in pairs], add_special_tokens=False)
        passages = self._rust.encode_batch([p for _, p in pairs], add_special_tokens=False)
        ids: list[list[int]] = []
        types: list[list[int]] = []
        self.last_truncated = 0
        for query, passage in zip(queries, passages):
            cut = len(query) > self.query_max_length or len(passage) > self.max_length
            if len(query) > self.query_max_length:
                query.truncate(self.query_max_length)
            if len(passage) > self.max_length:
                passage.truncate(self.max_length)
            excess = len(query) + len(passage) + self.n_special - self.max_length
            # As the old prepare_for_model(truncation="only_second"): cut the passage's end; if
            # the passage is too short to absorb the excess, leave the pair as it is.
            if 0 < excess < len(passage):
                passage.truncate(len(passage) - excess)
                cut = True
            self.last_truncated += cut
            pair = self._rust.post_process(query, passage, add_special_tokens=True)
            ids.append(pair.ids)
            types.append(pair.type_ids)
        return ids, (types if self.with_types else None)


class Reranker:
    """Relevance scores for (query, passage) pairs, as FlagReranker and FlagLLMReranker compute them.

    One class for cross-encoders (``FlagReranker``: bge-reranker-base/large/v2-m3) and LLM
    rerankers (``FlagLLMReranker``: bge-reranker-v2-gemma; ``LayerWiseFlagLLMReranker``:
    bge-reranker-v2-minicpm-layerwise; ``LightWeightFlagLLMReranker``:
    bge-reranker-v2.5-gemma2-lightweight), told apart by the folder's config (see
    :mod:`bge_core.llm_rerank`). Scores are raw logits (an LLM reranker's: the "Yes" logit).

    Args:
        model: A Hugging Face Hub id (``"BAAI/bge-reranker-v2-m3"``) or a local folder of a
            sequence-classification model with one output, or of an LLM reranker.
        normalize: Apply a sigmoid to the raw logits (scores in 0..1). Default: raw logits, as
            FlagReranker returns them.
        max_length: Tokens per (query, passage) pair (default 512); for an LLM reranker, tokens of
            the passage (FlagLLMReranker's ``max_length``; the prompt comes on top).
        query_max_length: Tokens of the query at most (default 3/4 of ``max_length``).
        prompt: LLM rerankers only: the instruction after the pair (default: FlagEmbedding's).
        cutoff_layers: Layer-wise and lightweight LLM rerankers: the layer(s) whose score head is
            used (default: the last). With several layers, use :meth:`score_layers`.
        compress_ratio, compress_layers: Lightweight LLM reranker only: passage-token compression
            ratio (1, 2, 4 or 8) and the layers where it applies (default ``[8]``), as
            LightWeightFlagLLMReranker takes them.
        truncation: Pairs are cut as FlagEmbedding cuts them (a warning once per Reranker says how
            many); with ``False`` a pair that would be cut raises :class:`TextTooLongError`.
        device, precision: As for :class:`~bge_core.Embedder`.
        batch_size: Most pairs in one forward pass.
        max_batch_tokens: Most padded tokens in one forward pass (``None``: per-device default).
        show_progress: Progress bar; ``None`` shows one for 2048 pairs or more.
        trust_remote_code, cache_dir, revision, token: As for :class:`~bge_core.Embedder`.

    Example:
        >>> rr = Reranker("BAAI/bge-reranker-v2-m3")
        >>> rr.score([("what is a panda?", "The giant panda is a bear.")])
        [5.26...]
        >>> best = rr.rerank("what is a panda?", docs, top_k=3)[0]
        >>> best.index, best.score, best.text
    """

    def __init__(
        self,
        model: Union[str, Path],
        *,
        normalize: bool = False,
        max_length: Optional[int] = None,
        query_max_length: Optional[int] = None,
        device: Union[str, int, torch.device, None] = None,
        precision: str = "auto",
        batch_size: int = DEFAULT_RERANK_BATCH_SIZE,
        max_batch_tokens: Optional[int] = None,
        show_progress: Optional[bool] = None,
        trust_remote_code: Optional[bool] = None,
        cache_dir: Optional[Union[str, Path]] = None,
        revision: Optional[str] = None,
        token: Optional[Union[str, bool]] = None,
        prompt: Optional[str] = None,
        cutoff_layers: Union[int, Sequence[int], None] = None,
        compress_ratio: int = 1,
        compress_layers: Union[int, Sequence[int], None] = None,
        truncation: bool = True,
    ) -> None:
        self.normalize = bool(normalize)
        self.truncation = bool(truncation)
        self._truncation_warner = TruncationWarner("Reranker", unit="pairs")
        self.batch_size = batching.check_positive("batch_size", batch_size)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self._executor = batching.executor_for(self.device)  # BGE_RAG_* read once, here
        self.show_progress = show_progress
        self.model_name = str(model)
        self.spec: ModelSpec
        self._backbone: Backbone
        folder, self.spec, trust = locate(model, "reranking", trust_remote_code, cache_dir, revision, token)
        #: ``None`` for a cross-encoder, else the LLM reranker kind ("llm", "layerwise", "lightweight").
        self.llm_kind = detect_kind(folder, self.spec.name)
        self._llm: Optional[LLMScorer] = None
        if self.llm_kind is None:
            if prompt is not None or cutoff_layers is not None or compress_layers is not None or compress_ratio != 1:
                raise ConfigError(
                    "prompt, cutoff_layers, compress_ratio and compress_layers apply to LLM rerankers only; "
                    f"{self.model_name!r} is a cross-encoder."
                )
            self._backbone = load_backbone(
                folder, task="reranking", device=self.device, dtype=self.dtype, trust_remote_code=trust
            )
        else:
            llm, tokenizer = load_llm(folder, self.llm_kind, dtype=self.dtype, trust_remote_code=trust)
            llm.to(self.device).eval().requires_grad_(False)
            self._backbone = Backbone(folder, "reranking", llm, tokenizer, self.device, self.dtype)
        self.model_max_length = self.spec.max_length or max_positions(self._backbone.config, self._backbone.tokenizer)
        self.max_batch_tokens = batching.resolve_max_batch_tokens(
            max_batch_tokens, self.device, self._backbone.config
        )
        labels = 1 if self.llm_kind else getattr(self._backbone.config, "num_labels", 1)
        if labels != 1:
            raise ModelLoadError(
                f"{self.model_name!r} has {labels} output labels; a reranker must have exactly one score."
            )
        self.max_length = resolve_max_length(
            max_length, self.spec, self._backbone, self.model_max_length, self.model_name
        )
        if query_max_length is None:
            query_max_length = self.max_length * 3 // 4
        self.query_max_length = batching.check_positive("query_max_length", query_max_length)
        if self.llm_kind is None:
            self._pairs = PairEncoder(self._backbone.tokenizer, self.max_length, self.query_max_length)
        else:
            if prompt is not None and not isinstance(prompt, str):
                raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
            self._llm_pairs = LLMPairEncoder(
                self._backbone.tokenizer, self.llm_kind, self.max_length, self.query_max_length, prompt
            )
            self._llm = LLMScorer(
                self._backbone.model, self._backbone.tokenizer, self.llm_kind, yes_id=self._llm_pairs.yes_id,
                cutoff_layers=check_layers("cutoff_layers", cutoff_layers), compress_ratio=compress_ratio,
                compress_layers=check_layers("compress_layers", compress_layers),
            )

    def __repr__(self) -> str:
        return (
            f"Reranker(model={self.model_name!r}, device={describe(self.device, self.dtype)!r}, "
            f"max_length={self.max_length}, normalize={self.normalize})"
        )

    @property
    def folder(self) -> Path:
        """The local folder the model was loaded from."""
        return self._backbone.folder

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer (shared; do not change its settings)."""
        return self._backbone.tokenizer

    def score(
        self,
        pairs: Union[tuple[str, str], Sequence[tuple[str, str]]],
        *,
        normalize: Optional[bool] = None,
        batch_size: Optional[int] = None,
        show_progress: Optional[bool] = None,
    ) -> Union[float, list[float]]:
        """Relevance scores of (query, passage) pairs, in input order.

        Args:
            pairs: One ``(query, passage)`` pair or a list of them.
            normalize: Overrides the instance's ``normalize`` for this call.
            batch_size: Overrides the instance's ``batch_size`` for this call.
            show_progress: Overrides the instance's ``show_progress`` for this call.

        Returns:
            A Python float for a single pair, else a list of Python floats.

        Raises:
            InputTypeError: ``pairs`` is not a pair of strings or a list of them.
        """
        items, single = as_pairs(pairs)
        size = self.batch_size if batch_size is None else batching.check_positive("batch_size", batch_size)
        scores = self._logits(items, size, self.show_progress if show_progress is None else show_progress)
        if self.normalize if normalize is None else normalize:
            scores = [sigmoid(s) for s in scores]
        return scores[0] if single else scores

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: Optional[int] = None,
        *,
        normalize: Optional[bool] = None,
        batch_size: Optional[int] = None,
        show_progress: Optional[bool] = None,
    ) -> list[Ranked]:
        """Documents ordered by relevance to ``query``, best first (ties keep input order).

        Args:
            query: The query text.
            documents: The candidate texts.
            top_k: Keep only the best ``top_k`` (``None``: all).
            normalize: Overrides the instance's ``normalize`` for this call.
            batch_size, show_progress: Override the instance's settings for this call.

        Returns:
            :class:`~bge_core.types.Ranked` items with the document's input index, its score
            (a Python float) and its text.
        """
        if not isinstance(query, str):
            raise InputTypeError(f"query must be a string, got {type(query).__name__ if query is not None else 'None'}")
        docs, _ = as_texts(documents, "documents")
        if top_k is not None:
            top_k = batching.check_positive("top_k", top_k)
        if not docs:
            return []
        scores = self.score(
            [(query, d) for d in docs], normalize=normalize, batch_size=batch_size, show_progress=show_progress
        )
        order = sorted(range(len(docs)), key=lambda i: -scores[i])  # stable: ties keep input order
        return [Ranked(index=i, score=scores[i], text=docs[i]) for i in order[:top_k]]

    def score_layers(
        self,
        pairs: Union[tuple[str, str], Sequence[tuple[str, str]]],
        *,
        normalize: Optional[bool] = None,
        batch_size: Optional[int] = None,
        show_progress: Optional[bool] = None,
    ) -> dict[int, Union[float, list[float]]]:
        """Scores from each of ``cutoff_layers`` (layer-wise and lightweight LLM rerankers).

        FlagEmbedding returns one list per cutoff layer; this returns ``{layer: scores}`` in the
        order the layers were given, each value shaped as :meth:`score` shapes it.

        Raises:
            ConfigError: the model is not a layer-wise or lightweight LLM reranker, or no
                ``cutoff_layers`` were given.
        """
        if self._llm is None or self._llm.kind == "llm" or not self._llm.cutoff_layers:
            raise ConfigError("score_layers needs a layer-wise or lightweight LLM reranker built with cutoff_layers=.")
        items, single = as_pairs(pairs)
        size = self.batch_size if batch_size is None else batching.check_positive("batch_size", batch_size)
        table = self._llm_scores(items, size, self.show_progress if show_progress is None else show_progress)
        use_sigmoid = self.normalize if normalize is None else normalize
        out: dict[int, Union[float, list[float]]] = {}
        for layer, row in zip(self._llm.cutoff_layers, table):
            values = [sigmoid(v) for v in row] if use_sigmoid else list(row)
            out[layer] = values[0] if single else values
        return out

    def _llm_scores(self, pairs: list[tuple[str, str]], batch_size: int, show_progress: Optional[bool]) -> list[list[float]]:
        """LLM reranker scores, one list per output layer, in input order."""
        scorer = self._llm
        assert scorer is not None
        if not pairs:
            return [[] for _ in range(scorer.n_outputs)]
        backbone = self._backbone
        scores = np.empty((scorer.n_outputs, len(pairs)), dtype=np.float32)
        with backbone.lock:
            encoded = self._llm_pairs.encode(pairs)
            self._check_truncation(encoded.truncated, len(pairs))
            rows = encoded.input_ids

            def forward(batch: batching.Batch) -> np.ndarray:
                picked = [rows[i] for i in batch.positions]
                ids, mask = scorer.pad(picked, self.device)
                lengths = [encoded.query_lengths[i] for i in batch.positions]
                return scorer.forward(ids, mask, lengths, encoded.prompt_length)

            for positions, out in self._batches(rows, forward, batch_size, show_progress):
                scores[:, positions] = out
        return self._checked(scores).tolist()

    def _check_truncation(self, truncated: int, total: int) -> None:
        if truncated and not self.truncation:
            raise TextTooLongError(
                f"{truncated} of {total} pairs are longer than the reranker's limits (query_max_length="
                f"{self.query_max_length}, max_length={self.max_length}) and truncation=False; shorten them or "
                f"raise max_length."
            )
        self._truncation_warner.report(
            truncated=truncated, total=total, max_length=self.max_length, limit=self.model_max_length
        )

    def _logits(self, pairs: list[tuple[str, str]], batch_size: int, show_progress: Optional[bool]) -> list[float]:
        if not pairs:
            return []
        if self._llm is not None:
            if self._llm.n_outputs > 1:
                raise ConfigError(
                    f"This reranker scores at {len(self._llm.cutoff_layers or ())} cutoff layers; "
                    "use score_layers() for one score list per layer, or give one layer."
                )
            return self._llm_scores(pairs, batch_size, show_progress)[0]
        backbone = self._backbone
        model = backbone.model
        scores = np.empty(len(pairs), dtype=np.float32)

        def forward(batch: batching.Batch) -> np.ndarray:
            logits = model(**batch.model_inputs(), return_dict=True).logits
            return logits.view(-1).float().cpu().numpy()

        with backbone.lock:
            input_ids, token_type_ids = self._pairs.encode(pairs)
            self._check_truncation(self._pairs.last_truncated, len(pairs))
            for positions, out in self._batches(input_ids, forward, batch_size, show_progress, token_type_ids):
                scores[positions] = out
        return self._checked(scores).tolist()

    def _batches(self, rows, forward, batch_size: int, show_progress: Optional[bool], token_type_ids=None):
        """``batching.run_batches`` with this reranker's padding, device and token budget."""
        return batching.run_batches(
            rows,
            forward,
            pad_id=self._backbone.tokenizer.pad_token_id,
            device=self.device,
            max_batch_size=batch_size,
            max_batch_tokens=self.max_batch_tokens,
            token_type_ids=token_type_ids,
            show_progress=show_progress,
            desc="Reranking",
            executor=self._executor,
        )

    def _checked(self, scores: np.ndarray) -> np.ndarray:
        """Warn (once per call) when low precision produced non-finite scores."""
        if not np.all(np.isfinite(scores)):
            where = describe(self.device, self.dtype)
            logger.warning("The reranker produced non-finite scores on %s; try precision='fp32'.", where)
        return scores


__all__ = ["PairEncoder", "Reranker"]

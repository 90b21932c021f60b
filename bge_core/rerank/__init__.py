"""Reranking: relevance scores of (query, passage) pairs, as FlagEmbedding's rerankers compute them.

:class:`Reranker` is the one public class. At load it picks the scorer of the model's kind from
:data:`SCORERS` and delegates to it:

- :mod:`~bge_core.rerank.cross_encoder`: cross-encoders (``FlagReranker``), FlagReranker's pair formatting;
- :mod:`~bge_core.rerank.llm`: LLM rerankers scored by the "Yes" logit (``FlagLLMReranker``);
- :mod:`~bge_core.rerank.layerwise`: layer-wise LLM rerankers (``LayerWiseFlagLLMReranker``);
- :mod:`~bge_core.rerank.lightweight`: lightweight LLM rerankers (``LightWeightFlagLLMReranker``).

Each scorer (:class:`~bge_core.rerank.base.PairScorer`) takes and checks only its own options;
:mod:`~bge_core.rerank.decoder` holds what the LLM kinds share (detection, loading, prompt rows).
A new kind is a new scorer module and one entry in :data:`SCORERS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from .. import batching
from ..checks import check_positive
from ..devices import describe, resolve_device, resolve_precision
from ..errors import ConfigError, InputTypeError, TextTooLongError
from ..frozen import FrozenAfterInit
from ..inputs import as_pairs, as_texts
from ..loading import Backbone, locate, max_positions, resolve_max_length
from ..registry import ModelSpec
from ..scoring import sigmoid
from ..truncation import TruncationWarner
from ..types import Ranked
from .base import PairScorer, given_options
from .cross_encoder import CrossEncoderScorer, PairEncoder
from .decoder import detect_kind
from .layerwise import LayerwiseScorer
from .lightweight import LightweightScorer
from .llm import YesLogitScorer

logger = logging.getLogger(__name__)

#: Pairs per batch at most by default (FlagReranker's default).
DEFAULT_RERANK_BATCH_SIZE = 128

#: The scorer class of each model kind (:func:`~bge_core.rerank.decoder.detect_kind` names the LLM kinds).
SCORERS: Mapping[str, type[PairScorer]] = {
    scorer.kind: scorer for scorer in (CrossEncoderScorer, YesLogitScorer, LayerwiseScorer, LightweightScorer)
}


def scorer_class(folder: Path, name: str | None = None) -> type[PairScorer]:
    """The scorer class for a model folder (``name``: its registry name, if any).

    Raises:
        UnsupportedModelError: a decoder-only folder that bge_core cannot run exactly.
    """
    return SCORERS[detect_kind(folder, name) or CrossEncoderScorer.kind]


class Reranker(FrozenAfterInit):
    """Relevance scores for (query, passage) pairs, as FlagReranker and FlagLLMReranker compute them.

    One class for cross-encoders (``FlagReranker``: bge-reranker-base/large/v2-m3) and LLM
    rerankers (``FlagLLMReranker``: bge-reranker-v2-gemma; ``LayerWiseFlagLLMReranker``:
    bge-reranker-v2-minicpm-layerwise; ``LightWeightFlagLLMReranker``:
    bge-reranker-v2.5-gemma2-lightweight), told apart by the folder's config; each kind is a scorer
    class of its own (:data:`SCORERS`). Scores are raw logits (an LLM reranker's: the "Yes" logit).
    Settings are read-only after construction (:class:`~bge_core.errors.ReadOnlySettingError`);
    ``normalize``, ``batch_size`` and ``show_progress`` can be given per call instead.

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

    Raises:
        ConfigError: an option of another model kind (e.g. ``prompt`` for a cross-encoder,
            ``compress_ratio`` for a layer-wise reranker; checked before the weights load), a wrong
            option value, or remote code needed without ``trust_remote_code=True``.
        ModelLoadError: the folder is not a complete reranker (no classifier head, several labels,
            missing weights).
        UnsupportedModelError: a decoder-only model bge_core cannot score exactly, or remote code
            that cannot run on this transformers version.

    Example:
        >>> rr = Reranker("BAAI/bge-reranker-v2-m3")
        >>> rr.score([("what is a panda?", "The giant panda is a bear.")])
        [5.26...]
        >>> docs = ["The giant panda is a bear.", "Pandas eat bamboo.", "Paris is in France.", "Hi."]
        >>> best = rr.rerank("what is a panda?", docs, top_k=3)[0]
        >>> best.index, best.score, best.text
    """

    def __init__(
        self,
        model: str | Path,
        *,
        normalize: bool = False,
        max_length: int | None = None,
        query_max_length: int | None = None,
        device: str | int | torch.device | None = None,
        precision: str = "auto",
        batch_size: int = DEFAULT_RERANK_BATCH_SIZE,
        max_batch_tokens: int | None = None,
        show_progress: bool | None = None,
        trust_remote_code: bool | None = None,
        cache_dir: str | Path | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        prompt: str | None = None,
        cutoff_layers: int | Sequence[int] | None = None,
        compress_ratio: int = 1,
        compress_layers: int | Sequence[int] | None = None,
        truncation: bool = True,
    ) -> None:
        self.normalize = bool(normalize)
        self.truncation = bool(truncation)
        self._truncation_warner = TruncationWarner("Reranker", unit="pairs")
        self.batch_size = check_positive("batch_size", batch_size)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self._executor = batching.executor_for(self.device)  # BGE_RAG_* read once, here
        self.show_progress = show_progress
        self.model_name = str(model)
        self.spec: ModelSpec
        self._backbone: Backbone
        folder, self.spec, trust = locate(model, "reranking", trust_remote_code, cache_dir, revision, token)
        kind = scorer_class(folder, self.spec.name)
        options = given_options(
            prompt=prompt, cutoff_layers=cutoff_layers, compress_ratio=compress_ratio, compress_layers=compress_layers
        )
        kind.check_options(options, self.model_name)
        self._backbone = kind.load(
            folder, model_name=self.model_name, device=self.device, dtype=self.dtype, trust_remote_code=trust
        )
        self.model_max_length = self.spec.max_length or max_positions(self._backbone.config, self._backbone.tokenizer)
        self.max_batch_tokens = batching.resolve_max_batch_tokens(max_batch_tokens, self.device, self._backbone.config)
        self.max_length = resolve_max_length(
            max_length, self.spec, self._backbone, self.model_max_length, self.model_name
        )
        if query_max_length is None:
            query_max_length = self.max_length * 3 // 4
        self.query_max_length = check_positive("query_max_length", query_max_length)
        self._scorer: PairScorer = kind(
            self._backbone, max_length=self.max_length, query_max_length=self.query_max_length, **options
        )
        self._freeze()

    def __repr__(self) -> str:
        return (
            f"Reranker(model={self.model_name!r}, device={describe(self.device, self.dtype)!r}, "
            f"max_length={self.max_length}, normalize={self.normalize})"
        )

    @property
    def llm_kind(self) -> str | None:
        """``None`` for a cross-encoder, else the LLM reranker kind (``"llm"``, ``"layerwise"``, ``"lightweight"``)."""
        kind = self._scorer.kind
        return None if kind == CrossEncoderScorer.kind else kind

    @property
    def folder(self) -> Path:
        """The local folder the model was loaded from."""
        return self._backbone.folder

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer (shared; do not change its settings)."""
        return self._backbone.tokenizer

    @overload
    def score(
        self,
        pairs: tuple[str, str],
        *,
        normalize: bool | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> float: ...

    @overload
    def score(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        normalize: bool | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[float]: ...

    def score(
        self,
        pairs: tuple[str, str] | Sequence[tuple[str, str]],
        *,
        normalize: bool | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> float | list[float]:
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
        size = self.batch_size if batch_size is None else check_positive("batch_size", batch_size)
        scores = self._logits(items, size, self.show_progress if show_progress is None else show_progress)
        if self.normalize if normalize is None else normalize:
            scores = [sigmoid(s) for s in scores]
        return scores[0] if single else scores

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        *,
        normalize: bool | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[Ranked]:
        """Documents ordered by relevance to ``query``, best first (ties keep input order).

        Args:
            query: The query text.
            documents: The candidate texts.
            top_k: Keep only the best ``top_k`` (``None``: all).
            normalize: Overrides the instance's ``normalize`` for this call.
            batch_size: Overrides the instance's ``batch_size`` for this call.
            show_progress: Overrides the instance's ``show_progress`` for this call.

        Returns:
            :class:`~bge_core.types.Ranked` items with the document's input index, its score
            (a Python float) and its text.
        """
        if not isinstance(query, str):
            raise InputTypeError(f"query must be a string, got {type(query).__name__ if query is not None else 'None'}")
        docs, _ = as_texts(documents, "documents")
        if top_k is not None:
            top_k = check_positive("top_k", top_k)
        if not docs:
            return []
        scores = self.score(
            [(query, d) for d in docs], normalize=normalize, batch_size=batch_size, show_progress=show_progress
        )
        order = sorted(range(len(docs)), key=lambda i: -scores[i])  # stable: ties keep input order
        return [Ranked(index=i, score=scores[i], text=docs[i]) for i in order[:top_k]]

    @overload
    def score_layers(
        self,
        pairs: tuple[str, str],
        *,
        normalize: bool | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> dict[int, float]: ...

    @overload
    def score_layers(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        normalize: bool | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> dict[int, list[float]]: ...

    def score_layers(
        self,
        pairs: tuple[str, str] | Sequence[tuple[str, str]],
        *,
        normalize: bool | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> dict[int, float] | dict[int, list[float]]:
        """Scores from each of ``cutoff_layers`` (layer-wise and lightweight LLM rerankers).

        FlagEmbedding returns one list per cutoff layer; this returns ``{layer: scores}`` in the
        order the layers were given, each value shaped as :meth:`score` shapes it.

        Args:
            pairs: One ``(query, passage)`` pair or a list of them.
            normalize: Overrides the instance's ``normalize`` for this call.
            batch_size: Overrides the instance's ``batch_size`` for this call.
            show_progress: Overrides the instance's ``show_progress`` for this call.

        Returns:
            ``{layer: score}`` for a single pair, else ``{layer: [scores]}``.

        Raises:
            ConfigError: the model is not a layer-wise or lightweight LLM reranker, or no
                ``cutoff_layers`` were given.
        """
        layers = self._scorer.cutoff_layers
        if not layers:
            raise ConfigError("score_layers needs a layer-wise or lightweight LLM reranker built with cutoff_layers=.")
        items, single = as_pairs(pairs)
        size = self.batch_size if batch_size is None else check_positive("batch_size", batch_size)
        table = self._scores(items, size, self.show_progress if show_progress is None else show_progress).tolist()
        use_sigmoid = self.normalize if normalize is None else normalize
        rows = [[sigmoid(v) for v in row] if use_sigmoid else list(row) for row in table]
        if single:
            return {layer: row[0] for layer, row in zip(layers, rows)}
        return dict(zip(layers, rows))

    def _scores(self, pairs: list[tuple[str, str]], batch_size: int, show_progress: bool | None) -> np.ndarray:
        """Scores of ``pairs``: float32, one row per scorer output, one column per pair in input order."""
        scorer = self._scorer
        scores = np.empty((scorer.n_outputs, len(pairs)), dtype=np.float32)
        if not pairs:
            return scores
        with self._backbone.lock:
            prepared = scorer.prepare(pairs)
            self._check_truncation(prepared.truncated, len(pairs))
            for positions, out in self._batches(
                prepared.input_ids, prepared.forward, batch_size, show_progress, prepared.token_type_ids
            ):
                scores[:, positions] = out
        return self._checked(scores)

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

    def _logits(self, pairs: list[tuple[str, str]], batch_size: int, show_progress: bool | None) -> list[float]:
        if not pairs:
            return []
        if self._scorer.n_outputs > 1:
            raise ConfigError(
                f"This reranker scores at {len(self._scorer.cutoff_layers or ())} cutoff layers; "
                "use score_layers() for one score list per layer, or give one layer."
            )
        scores: list[float] = self._scores(pairs, batch_size, show_progress)[0].tolist()
        return scores

    def _batches(
        self,
        rows: Sequence[Sequence[int]],
        forward: Callable[[batching.Batch], np.ndarray],
        batch_size: int,
        show_progress: bool | None,
        token_type_ids: Sequence[Sequence[int]] | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
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


__all__ = ["DEFAULT_RERANK_BATCH_SIZE", "SCORERS", "PairEncoder", "Reranker", "scorer_class"]

"""``BGERanker``: cross-encoder reranking of Documents with a BGE reranker."""

# No `from __future__ import annotations` here: Haystack reads run()'s annotations as socket types.

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.utils import ComponentDevice, Secret
from haystack_integrations.components.embedders.bge._common import (
    DEFAULT_TOKEN,
    check_documents,
    common_settings,
    deduplicate_documents,
    document_texts,
    engine_options,
    init_parameters,
    resolve_device,
    shared_reranker,
)

from bge_core.checks import check_positive
from bge_core.errors import ConfigError, InputTypeError

if TYPE_CHECKING:
    from bge_core import Reranker


@component
class BGERanker:
    """Ranks Documents by a BGE cross-encoder's relevance score for the query.

    Scores are FlagReranker's exactly at ``precision="fp32"`` (same pair formatting and truncation;
    the default ``"auto"``, bf16 on CPUs with native bf16, moved logits by up to 0.018 on the MiniLM
    test fixture). With
    ``scale_score=True`` (the default, as Haystack's rankers) each score is
    ``sigmoid(logit * calibration_factor)``, in 0..1; with ``False`` it is the raw logit. Before
    ranking, Documents are deduplicated by id (the highest-scoring duplicate is kept), as
    Haystack's rankers do. Returns new Documents (``dataclasses.replace``) with ``score`` set to
    a Python float, best first; ties keep their input order.

    Usage example:

    ```python
    from haystack import Document
    from haystack_integrations.components.rankers.bge import BGERanker

    ranker = BGERanker(model="BAAI/bge-reranker-base", top_k=2)
    docs = [Document(content="Paris is in France."), Document(content="Berlin is in Germany.")]
    best = ranker.run(query="City in Germany", documents=docs)["documents"][0]   # Berlin, score ~0.99
    ```
    """

    def __init__(
        self,
        *,
        model: str = "BAAI/bge-reranker-base",
        device: ComponentDevice | None = None,
        token: Secret | None = DEFAULT_TOKEN,
        top_k: int = 10,
        scale_score: bool = True,
        calibration_factor: float = 1.0,
        score_threshold: float | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        batch_size: int = 128,
        max_length: int | None = None,
        precision: str = "auto",
        trust_remote_code: bool | None = None,
        revision: str | None = None,
    ) -> None:
        """Create a BGERanker. Nothing is loaded until `warm_up()` (or the first `run()`).

        :param model: A Hugging Face Hub id or a local folder of a one-logit cross-encoder
            (`BAAI/bge-reranker-base`, `-large`, `-v2-m3`, ...).
        :param device: The device to run on; `None` takes Haystack's default device.
        :param token: Hugging Face token for private models (default: `HF_API_TOKEN` or `HF_TOKEN` if set).
        :param top_k: Most Documents returned.
        :param scale_score: `True`: scores are `sigmoid(logit * calibration_factor)` in 0..1;
            `False`: raw logits, as FlagReranker's `compute_score` returns them.
        :param calibration_factor: Multiplies the logit before the sigmoid (used only with `scale_score`).
        :param score_threshold: Return only Documents scoring at least this (after scaling, if any).
        :param meta_fields_to_embed: Meta fields whose values are put before the content in the passage.
        :param embedding_separator: Separator between those meta values and the content.
        :param batch_size: Most (query, document) pairs in one forward pass.
        :param max_length: Tokens per (query, passage) pair (`None`: 512); the query is capped at 3/4 of it.
        :param precision: `"auto"` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), `"fp32"`,
            `"fp16"` or `"bf16"`.
        :param trust_remote_code: Allow a model's own code; `None` takes the registry's choice.
        :param revision: A model revision (branch, tag or commit) on the Hub.
        :raises ConfigError: `top_k` or `batch_size` is not a positive integer, or
            `calibration_factor` is not a positive number (a `ValueError`).
        """
        if (
            isinstance(calibration_factor, bool)
            or not isinstance(calibration_factor, (int, float))
            or not (math.isfinite(calibration_factor) and calibration_factor > 0)
        ):
            raise ConfigError(f"calibration_factor must be a positive number, got {calibration_factor!r}")
        self.model = str(model)
        self.device = resolve_device(device)
        self.token = token
        self.top_k = check_positive("top_k", top_k)
        self.scale_score = scale_score
        self.calibration_factor = float(calibration_factor)
        self.score_threshold = score_threshold
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self.batch_size = check_positive("batch_size", batch_size)
        self.max_length = max_length
        self.precision = precision
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self._reranker: Reranker | None = None

    def warm_up(self) -> None:
        """Load the model (once; rankers with the same settings share it)."""
        if self._reranker is None:
            self._reranker = shared_reranker(self.model, **engine_options(**common_settings(self)))

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        scale_score: bool | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, Any]:
        """Rank Documents by relevance to the query.

        :param query: The query.
        :param documents: The candidate Documents (deduplicated by id before ranking).
        :param top_k: Most Documents returned; overrides the init value when given.
        :param scale_score: Sigmoid-scaled (`True`) or raw (`False`) scores; overrides the init value when given.
        :param score_threshold: Minimum score of a returned Document; overrides the init value when given.
        :returns: A dictionary with `documents`: new Documents, best first, with `score` set.
        :raises InputTypeError: `query` is not a string or `documents` not a list of Documents (a `TypeError`).
        :raises ConfigError: `top_k` is not a positive integer (a `ValueError`).
        """
        if not isinstance(query, str):
            raise InputTypeError(f"BGERanker expects query to be a string, got {type(query).__name__}.")
        check_documents(documents, "BGERanker")
        top_k = self.top_k if top_k is None else check_positive("top_k", top_k)
        scale = self.scale_score if scale_score is None else scale_score
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if not documents:
            return {"documents": []}
        self.warm_up()
        assert self._reranker is not None
        candidates = deduplicate_documents(documents)
        texts = document_texts(candidates, self.meta_fields_to_embed, self.embedding_separator)
        from bge_core import sigmoid

        ranked = []
        # Raw logits, best first; the sigmoid (calibration_factor > 0) keeps that order.
        for hit in self._reranker.rerank(query, texts, normalize=False, batch_size=self.batch_size):
            score = sigmoid(hit.score * self.calibration_factor) if scale else hit.score
            if threshold is not None and score < threshold:
                break
            ranked.append(replace(candidates[hit.index], score=score))
            if len(ranked) == top_k:
                break
        return {"documents": ranked}

    def to_dict(self) -> dict[str, Any]:
        """Serialize this component to a dictionary."""
        return default_to_dict(self, **init_parameters(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BGERanker":
        """Deserialize this component from a dictionary (the token and device included)."""
        return default_from_dict(cls, data)

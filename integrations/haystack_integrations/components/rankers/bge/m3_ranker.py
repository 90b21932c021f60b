"""``BGEM3Ranker``: rescoring of Documents with BGE-M3's dense, lexical and ColBERT scores."""

# No `from __future__ import annotations` here: Haystack reads run()'s annotations as socket types.

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
    embedder_options,
    init_parameters,
    require_m3_heads,
    resolve_device,
    shared_embedder,
)

from bge_core.checks import check_positive
from bge_core.errors import ConfigError, InputTypeError

if TYPE_CHECKING:
    from bge_core import Embedder

#: The scores ``Embedder.compute_score`` returns, as ``BGEM3FlagModel.compute_score`` names them.
MODES = ("dense", "sparse", "colbert", "sparse+dense", "colbert+sparse+dense")


@component
class BGEM3Ranker:
    """Ranks Documents with BGE-M3's own scores, for pipelines without a cross-encoder.

    Each (query, document) pair is scored as ``BGEM3FlagModel.compute_score`` does: dense
    similarity, lexical matching, ColBERT max-sim, or their weighted mix
    (``(w_dense * dense + w_sparse * sparse + w_colbert * colbert) / sum(w)``). ColBERT vectors
    are not stored in Haystack Documents, so the candidates are encoded here (one forward pass per
    batch gives all three outputs). Documents are deduplicated by id first, as Haystack's rankers
    do; new Documents are returned, best first, with ``score`` set to a Python float.

    Usage example:

    ```python
    from haystack_integrations.components.rankers.bge import BGEM3Ranker

    ranker = BGEM3Ranker(model="BAAI/bge-m3", mode="colbert+sparse+dense", weights=[0.4, 0.2, 0.4])
    result = ranker.run(query="What is BGE-M3?", documents=candidates)
    ```
    """

    def __init__(
        self,
        *,
        model: str = "BAAI/bge-m3",
        device: ComponentDevice | None = None,
        token: Secret | None = DEFAULT_TOKEN,
        top_k: int = 10,
        mode: str = "colbert+sparse+dense",
        weights: list[float] | None = None,
        score_threshold: float | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        batch_size: int = 256,
        max_length: int | None = None,
        precision: str = "auto",
        trust_remote_code: bool | None = None,
        revision: str | None = None,
    ) -> None:
        """Create a BGEM3Ranker. Nothing is loaded until `warm_up()` (or the first `run()`).

        :param model: A Hugging Face Hub id or a local folder of a BGE-M3 model (with `sparse_linear.pt`
            and `colbert_linear.pt`).
        :param device: The device to run on; `None` takes Haystack's default device.
        :param token: Hugging Face token for private models (default: `HF_API_TOKEN` or `HF_TOKEN` if set).
        :param top_k: Most Documents returned.
        :param mode: The score to rank by: one of `"dense"`, `"sparse"`, `"colbert"`, `"sparse+dense"`,
            `"colbert+sparse+dense"`.
        :param weights: `[dense, sparse, colbert]` weights of the mixed modes (`None`: `[0.4, 0.2, 0.4]`,
            the BGE-M3 paper's).
        :param score_threshold: Return only Documents scoring at least this.
        :param meta_fields_to_embed: Meta fields whose values are put before the content.
        :param embedding_separator: Separator between those meta values and the content.
        :param batch_size: Most texts in one forward pass.
        :param max_length: Tokens a query or passage is truncated to (`None`: 512).
        :param precision: `"auto"`, `"fp32"`, `"fp16"` or `"bf16"`; scores are computed in float32.
        :param trust_remote_code: Allow a model's own code; `None` takes the registry's choice.
        :param revision: A model revision (branch, tag or commit) on the Hub.
        :raises ConfigError: an unknown `mode`, invalid `weights`, or a `top_k` / `batch_size` that is
            not a positive integer (a `ValueError`).
        """
        if mode not in MODES:
            raise ConfigError(f"Invalid mode {mode!r}. Valid modes are: {', '.join(MODES)}.")
        weights = [0.4, 0.2, 0.4] if weights is None else [float(w) for w in weights]
        if len(weights) != 3 or any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"weights must be three non-negative numbers [dense, sparse, colbert], got {weights!r}")
        self.model = str(model)
        self.device = resolve_device(device)
        self.token = token
        self.top_k = check_positive("top_k", top_k)
        self.mode = mode
        self.weights = weights
        self.score_threshold = score_threshold
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self.batch_size = check_positive("batch_size", batch_size)
        self.max_length = max_length
        self.precision = precision
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self._embedder: Embedder | None = None

    def warm_up(self) -> None:
        """Load the model and its sparse and ColBERT heads (once).

        The loaded model is shared with BGE-M3 embedders of the same settings.
        """
        if self._embedder is None:
            embedder = shared_embedder(self.model, **embedder_options(**common_settings(self)))
            require_m3_heads(embedder, colbert=True)
            self._embedder = embedder

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, Any]:
        """Rank Documents by BGE-M3 score.

        :param query: The query.
        :param documents: The candidate Documents (deduplicated by id before ranking).
        :param top_k: Most Documents returned; overrides the init value when given.
        :param score_threshold: Minimum score of a returned Document; overrides the init value when given.
        :returns: A dictionary with `documents`: new Documents, best first (ties keep input order),
            with `score` set.
        :raises InputTypeError: `query` is not a string or `documents` not a list of Documents (a `TypeError`).
        """
        if not isinstance(query, str):
            raise InputTypeError(f"BGEM3Ranker expects query to be a string, got {type(query).__name__}.")
        check_documents(documents, "BGEM3Ranker")
        top_k = self.top_k if top_k is None else check_positive("top_k", top_k)
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if not documents:
            return {"documents": []}
        self.warm_up()
        assert self._embedder is not None
        candidates = deduplicate_documents(documents)
        texts = document_texts(candidates, self.meta_fields_to_embed, self.embedding_separator)
        scores = self._embedder.compute_score(
            [(query, text) for text in texts], weights=self.weights, batch_size=self.batch_size
        )[self.mode]
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])  # type: ignore[index]  # stable
        ranked = [
            replace(candidates[i], score=scores[i])  # type: ignore[index]
            for i in order
            if threshold is None or scores[i] >= threshold  # type: ignore[index,operator]
        ]
        return {"documents": ranked[:top_k]}

    def to_dict(self) -> dict[str, Any]:
        """Serialize this component to a dictionary."""
        return default_to_dict(self, **init_parameters(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BGEM3Ranker":
        """Deserialize this component from a dictionary (the token and device included)."""
        return default_from_dict(cls, data)

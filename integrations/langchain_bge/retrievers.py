"""``BGEM3Retriever``: in-memory hybrid retrieval with BGE-M3's dense, sparse and ColBERT outputs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from bge_core import (
    ConfigError,
    InvalidInputError,
    colbert_scores,
    dense_scores,
    hybrid_scores,
    lexical_scores,
    reciprocal_rank_fusion,
)
from bge_core.aio import run_serialized
from bge_core.scoring import check_weights
from bge_core.slot import EngineSlot, settings_key

from ._engine import EngineOwner, engine_options, load_embedder
from ._inputs import check_text
from .rerankers import SCORE_KEY
from .sparse import DEFAULT_M3_MODEL_NAME

if TYPE_CHECKING:
    from bge_core import Embedder, Encoded

Fusion = Literal["weighted", "rrf"]
_MODES = ("dense", "sparse", "colbert")
#: The fields that select the engine (the others select documents and scoring).
_ENGINE_FIELDS = (
    "device",
    "precision",
    "batch_size",
    "max_length",
    "trust_remote_code",
    "cache_folder",
    "revision",
    "token",
    "show_progress",
)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


class BGEM3Retriever(EngineOwner, BaseRetriever):
    """Hybrid retrieval over documents held in memory, with BGE-M3's three outputs.

    The documents are encoded once, when the retriever is created (dense vectors, sparse
    lexical weights and ColBERT token vectors, each only when its weight is above zero). A
    query is scored against every document in each mode, with FlagEmbedding's definitions,
    and the modes are combined either as a weighted sum (``fusion="weighted"``:
    ``(w_d * dense + w_s * sparse + w_c * colbert) / (w_d + w_s + w_c)``, as
    ``BGEM3FlagModel.compute_score``) or by reciprocal-rank fusion (``fusion="rrf"``: each
    mode ranks the documents, ``score = sum_m w_m / (rrf_k + rank_m)``). Results are new
    ``Document`` objects, best first, with the fused score in ``metadata["relevance_score"]``.

    For people without a hybrid vector store; memory grows with the ColBERT vectors (tokens x
    1024 float32 per document with BGE-M3), so for large collections set the ColBERT weight to
    0 or use a vector store with :class:`~langchain_bge.BGESparseEmbeddings`. The fields are
    frozen; ``model_copy(update={"docs": ...})`` gives a retriever that encodes and scores the
    new documents, and pickles and copies re-encode (on first use) only what their fields say.

    Example:
        ```python
        from langchain_bge import BGEM3Retriever

        retriever = BGEM3Retriever.from_texts(texts, k=5, weights=(0.4, 0.2, 0.4))
        retriever.invoke("what is BGE-M3?")          # or .invoke(query, k=10)
        ```
    """

    docs: list[Document] = Field(repr=False)
    """The documents searched (encoded when the retriever is created)."""
    k: int = Field(default=4, gt=0)
    """Documents returned per query (``invoke(query, k=...)`` overrides it per call)."""
    model_name: str = Field(default=DEFAULT_M3_MODEL_NAME, alias="model")
    """Hugging Face Hub id or local folder of a BGE-M3 model (alias: ``model``)."""
    weights: tuple[float, float, float] = (0.4, 0.2, 0.4)
    """Weights of the ``(dense, sparse, colbert)`` scores; a mode with weight 0 is not computed."""
    fusion: Fusion = "weighted"
    """``"weighted"``: weighted mean of the scores; ``"rrf"``: weighted reciprocal-rank fusion."""
    rrf_k: int = Field(default=60, ge=0)
    """The reciprocal-rank-fusion constant (used with ``fusion="rrf"``)."""
    device: str | None = None
    """``"cpu"``, ``"cuda:1"``, ``"mps"``, ...; ``None`` picks one (``cuda:0``, ``mps``, ``cpu``)."""
    precision: str = "auto"
    """``"auto"`` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), ``"fp32"``, ``"fp16"`` or ``"bf16"``."""
    batch_size: int | None = None
    """Most texts in one forward pass (also capped by a token budget); ``None``: the engine's default
    (``bge_core.Embedder``'s ``batch_size``)."""
    max_length: int | None = None
    """Tokens a text is truncated to; ``None`` takes the model's default (512)."""
    trust_remote_code: bool | None = None
    """Allow the model folder's own code; ``None`` takes the registry's choice."""
    cache_folder: str | None = None
    """Hugging Face cache folder for hub ids (``None``: the Hub's default)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub ids."""
    token: SecretStr | bool | None = None
    """Hub token for private or gated models (``True``: the stored login); never shown in ``repr``."""
    show_progress: bool = False
    """Show a progress bar while encoding the documents."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=(), arbitrary_types_allowed=True
    )

    _slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)

    def __init__(self, **data: Any) -> None:
        """Validate the settings, load the model (shared with identical settings), encode the documents.

        Raises:
            MissingHeadError: a mode with a weight above 0 needs a head file the model folder lacks.
        """
        super().__init__(**data)
        check_weights(self.weights)
        self._engine.require_heads(sparse=self.weights[1] > 0, colbert=self.weights[2] > 0)
        _ = self._index

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        metadatas: Iterable[dict] | None = None,
        ids: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> BGEM3Retriever:
        """A retriever over ``texts`` (with optional metadata and ids); ``kwargs`` are its fields."""
        texts = list(texts)
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        id_list: list[str | None] = list(ids) if ids is not None else [None] * len(texts)
        if not len(texts) == len(metadatas) == len(id_list):
            raise InvalidInputError(f"got {len(texts)} texts, {len(metadatas)} metadatas and {len(id_list)} ids")
        docs = [Document(page_content=t, metadata=m, id=i) for t, m, i in zip(texts, metadatas, id_list)]
        return cls(docs=docs, **kwargs)

    @classmethod
    def from_documents(cls, documents: Iterable[Document], **kwargs: Any) -> BGEM3Retriever:
        """A retriever over ``documents``; ``kwargs`` are its fields."""
        return cls(docs=list(documents), **kwargs)

    def _engine_options(self) -> dict[str, Any]:
        return engine_options({name: getattr(self, name) for name in _ENGINE_FIELDS})

    @property
    def _engine(self) -> Embedder:
        return self._slot.load(load_embedder, self.model_name, self._engine_options())

    def _outputs(self) -> dict[str, bool]:
        return {mode: weight > 0 for mode, weight in zip(_MODES, self.weights)}

    @property
    def _index(self) -> Encoded:
        """The documents' encodings, for the current documents, model settings and active modes."""
        engine, outputs = self._engine, self._outputs()
        texts = tuple(doc.page_content for doc in self.docs)
        key = (settings_key(self.model_name, self._engine_options()), tuple(outputs.items()), texts)
        return self._slot.get(key, lambda: engine.encode(list(texts), kind="document", **outputs), name="index")

    def _search(self, query: str, k: int | None) -> list[Document]:
        query = check_text(query, "query")
        k = self.k if k is None else _check_k(k)
        if not self.docs:
            return []
        index = self._index
        q = self._engine.encode(query, kind="query", **self._outputs())
        scores = {
            "dense": None if q.dense is None else dense_scores(q.dense, index.dense),
            # An empty query vector (every token weighs 0) scores 0 against every document.
            "sparse": None if q.sparse is None else lexical_scores(q.sparse, index.sparse),
            "colbert": None if q.colbert is None else colbert_scores(q.colbert, index.colbert),
        }
        if self.fusion == "weighted":
            fused = hybrid_scores(**scores, weights=self.weights)
            order = np.argsort(-fused, kind="stable")[:k].tolist()
            ranked = [(i, float(fused[i])) for i in order]
        else:
            active = [(np.asarray(s), w) for s, w in zip(scores.values(), self.weights) if s is not None]
            rankings = [np.argsort(-s, kind="stable").tolist() for s, _ in active]
            fused_ranks = reciprocal_rank_fusion(rankings, k=self.rrf_k, weights=[w for _, w in active])
            ranked = [(int(i), float(s)) for i, s in fused_ranks[:k]]  # type: ignore[call-overload]
        return [
            self.docs[i].model_copy(update={"metadata": {**self.docs[i].metadata, SCORE_KEY: score}})
            for i, score in ranked
        ]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        return self._search(query, k)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        return await run_serialized(self._engine, self._search, query, k)


__all__ = ["BGEM3Retriever"]

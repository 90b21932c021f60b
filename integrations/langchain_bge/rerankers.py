"""``BGEReranker`` (a document compressor and a cross-encoder) and ``BGERerankRetriever``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.cross_encoders import BaseCrossEncoder
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever, RetrieverLike
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from bge_core import InputTypeError
from bge_core.aio import run_serialized
from bge_core.slot import EngineSlot

from ._engine import EngineOwner, engine_options, load_reranker
from ._inputs import check_documents, check_text, type_name

if TYPE_CHECKING:
    from bge_core import Reranker

DEFAULT_RERANKER_NAME = "BAAI/bge-reranker-v2-m3"
SCORE_KEY = "relevance_score"
#: The fields that select the engine (the others select what ``compress_documents`` keeps).
_ENGINE_FIELDS = (
    "normalize",
    "device",
    "precision",
    "batch_size",
    "max_length",
    "query_max_length",
    "prompt",
    "cutoff_layers",
    "compress_ratio",
    "compress_layers",
    "trust_remote_code",
    "cache_folder",
    "revision",
    "token",
    "show_progress",
)


class BGEReranker(EngineOwner, BaseDocumentCompressor, BaseCrossEncoder):
    """Reranks documents with a BGE reranker, as FlagEmbedding's ``FlagReranker`` does.

    Any reranker :class:`bge_core.Reranker` runs works by model name, the LLM rerankers
    included. At ``precision="fp32"`` the scores are FlagEmbedding's; the default
    (``precision="auto"``, bf16 on CPUs with native bf16) moves them slightly (see "Differences from
    FlagEmbedding" in the documentation, ``docs/models/differences.md``).

    As a document compressor (for ``ContextualCompressionRetriever`` or
    :class:`BGERerankRetriever`) it returns new ``Document`` objects, best first, each with the
    original metadata plus ``metadata["relevance_score"]`` (a Python float); ties keep the input
    order and the input documents are never changed. As a ``BaseCrossEncoder`` its
    :meth:`score` gives one float per (query, passage) pair.

    Scores are sigmoid-normalized to 0..1 by default, like LangChain's other rerankers;
    ``normalize=False`` gives FlagReranker's raw logits.

    Example:
        ```python
        from langchain_bge import BGEReranker

        reranker = BGEReranker(model_name="BAAI/bge-reranker-v2-m3", top_n=3)
        best = reranker.compress_documents(documents, "what is BGE?")
        best[0].metadata["relevance_score"]     # 0.97...
        ```
    """

    model_name: str = Field(default=DEFAULT_RERANKER_NAME, alias="model")
    """Hugging Face Hub id or local folder of the cross-encoder (alias: ``model``)."""
    top_n: int | None = Field(default=3, gt=0)
    """Documents kept by ``compress_documents``, best first; ``None`` keeps all."""
    score_threshold: float | None = None
    """Drop documents scoring below this (on the scale ``normalize`` selects); ``None`` keeps all."""
    normalize: bool = True
    """Sigmoid scores in 0..1; ``False`` gives the raw logits FlagReranker returns."""
    device: str | None = None
    """``"cpu"``, ``"cuda:1"``, ``"mps"``, ...; ``None`` picks one (``cuda:0``, ``mps``, ``cpu``)."""
    precision: str = "auto"
    """``"auto"`` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), ``"fp32"``, ``"fp16"`` or ``"bf16"``."""
    batch_size: int | None = None
    """Most pairs in one forward pass (also capped by a token budget); ``None``: the engine's default."""
    max_length: int | None = None
    """Tokens per (query, passage) pair (LLM rerankers: of the passage); ``None`` takes the model's default (512)."""
    query_max_length: int | None = None
    """Tokens of the query at most; ``None``: 3/4 of ``max_length``, as FlagReranker."""
    prompt: str | None = None
    """LLM rerankers only: the instruction after the pair; ``None`` takes FlagEmbedding's."""
    cutoff_layers: int | list[int] | None = None
    """Layer-wise and lightweight LLM rerankers: the layer whose score head is used (``None``: the last)."""
    compress_ratio: int | None = None
    """Lightweight LLM reranker only: passage-token compression ratio (1, 2, 4 or 8; ``None``: 1)."""
    compress_layers: int | list[int] | None = None
    """Lightweight LLM reranker only: the layers where compression applies (``None``: ``[8]``)."""
    trust_remote_code: bool | None = None
    """Allow the model folder's own code; ``None`` takes the registry's choice."""
    cache_folder: str | None = None
    """Hugging Face cache folder for hub ids (``None``: the Hub's default)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub ids."""
    token: SecretStr | bool | None = None
    """Hub token for private or gated models (``True``: the stored login); never shown in ``repr``."""
    show_progress: bool = False
    """Show a progress bar while scoring."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=())

    _slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)

    def __init__(self, **data: Any) -> None:
        """Validate the settings and load the model (shared with identical settings)."""
        super().__init__(**data)
        _ = self._engine

    def _engine_options(self) -> dict[str, Any]:
        return engine_options({name: getattr(self, name) for name in _ENGINE_FIELDS})

    @property
    def _engine(self) -> Reranker:
        return self._slot.load(load_reranker, self.model_name, self._engine_options())

    def score(self, text_pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Relevance scores of (query, passage) pairs, in input order, as Python floats.

        Raises:
            InputTypeError: ``text_pairs`` is not a list of pairs of strings (a single pair
                must be wrapped in a list).
        """
        if isinstance(text_pairs, tuple) and len(text_pairs) == 2 and all(isinstance(t, str) for t in text_pairs):
            raise InputTypeError("text_pairs must be a list of (query, passage) pairs; wrap a single pair in a list")
        if text_pairs is None or isinstance(text_pairs, str):
            raise InputTypeError(f"text_pairs must be a list of (query, passage) pairs, got {type_name(text_pairs)}")
        return self._engine.score(list(text_pairs))  # type: ignore[return-value]

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Documents reranked for ``query``: best first, scored, thresholded and cut to ``top_n``.

        Args:
            documents: The candidates; an empty list gives ``[]``.
            query: The query they are scored against.
            callbacks: Unused (scoring makes no LLM or tool calls).

        Returns:
            New ``Document`` objects with the same ``id``, content and metadata, plus
            ``metadata["relevance_score"]``.

        Raises:
            InputTypeError: ``query`` is not a string or ``documents`` not a list of Documents.
        """
        query = check_text(query, "query")
        docs = check_documents(documents)
        if not docs:
            return []
        ranked = self._engine.rerank(query, [doc.page_content for doc in docs])  # best first, ties in input order
        if self.score_threshold is not None:
            ranked = [r for r in ranked if r.score >= self.score_threshold]
        return [
            docs[r.index].model_copy(update={"metadata": {**docs[r.index].metadata, SCORE_KEY: r.score}})
            for r in ranked[: self.top_n]
        ]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: runs on the model's worker thread, never on the event loop."""
        check_text(query, "query")
        docs = check_documents(documents)
        return await run_serialized(self._engine, self.compress_documents, docs, query)


class BGERerankRetriever(BaseRetriever):
    """A retriever that reranks another retriever's results with a :class:`BGEReranker`.

    The ``langchain-core``-only counterpart of ``langchain_classic``'s
    ``ContextualCompressionRetriever(base_compressor=reranker, base_retriever=...)``: fetch
    candidates with ``base_retriever`` (ask it for more than you keep), rerank them, keep the
    reranker's ``top_n``, best first, each with ``metadata["relevance_score"]``.

    Example:
        ```python
        from langchain_core.vectorstores import InMemoryVectorStore
        from langchain_bge import BGEEmbeddings, BGEReranker, BGERerankRetriever

        store = InMemoryVectorStore.from_texts(texts, BGEEmbeddings())
        retriever = BGERerankRetriever(
            base_retriever=store.as_retriever(search_kwargs={"k": 20}),
            reranker=BGEReranker(top_n=3),
        )
        retriever.invoke("what is BGE?")
        ```
    """

    base_retriever: RetrieverLike
    """The retriever (any runnable from a query to documents) whose results are reranked."""
    reranker: BGEReranker
    """The reranker; its ``top_n`` and ``score_threshold`` decide what is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        docs = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()})
        return list(self.reranker.compress_documents(docs, query))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        docs = await self.base_retriever.ainvoke(query, config={"callbacks": run_manager.get_child()})
        return list(await self.reranker.acompress_documents(docs, query))


__all__ = ["BGEReranker", "BGERerankRetriever"]

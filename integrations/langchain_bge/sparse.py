"""``BGESparseEmbeddings``: BGE-M3 lexical weights in the shapes LangChain's vector stores take.

LangChain has no sparse-embedding interface in ``langchain-core``; each vector store defines
its own, with the same method names and different return types:

- ``langchain_qdrant.SparseEmbeddings``: ``embed_query(text) -> SparseVector`` with ``.indices``
  (``list[int]``) and ``.values`` (``list[float]``). ``QdrantVectorStore`` only reads those two
  attributes, so :class:`SparseEmbedding` objects (``output_format="qdrant"``, the default) work
  as they are.
- ``langchain_milvus.BaseSparseEmbedding``: ``embed_query(text) -> dict[int, float]``
  (``output_format="milvus"``). ``Milvus`` recognises a sparse model with ``isinstance``, so
  register the class once: ``BaseSparseEmbedding.register(BGESparseEmbeddings)``.

Neither store package is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from bge_core import Embedder, SparseVector, shared_embedder
from bge_core.aio import run_serialized
from bge_core.batching import DEFAULT_BATCH_SIZE

from ._inputs import check_text, check_texts

DEFAULT_M3_MODEL_NAME = "BAAI/bge-m3"

OutputFormat = Literal["qdrant", "milvus"]


@dataclass(frozen=True)
class SparseEmbedding:
    """One text's lexical weights as Python lists: the shape of Qdrant's ``SparseVector``.

    Attributes:
        indices: Token ids, unique and ascending.
        values: The matching positive weights.
    """

    indices: list[int]
    values: list[float]

    @classmethod
    def from_vector(cls, vector: SparseVector) -> SparseEmbedding:
        """Convert a :class:`bge_core.SparseVector` (numpy arrays) to Python lists."""
        return cls(indices=vector.indices.tolist(), values=vector.values.tolist())

    def to_dict(self) -> dict[int, float]:
        """``{token_id: weight}``: the shape Milvus (and LlamaIndex) take."""
        return dict(zip(self.indices, self.values))


SparseOutput = Union[SparseEmbedding, dict[int, float]]


class BGESparseEmbeddings(BaseModel):
    """BGE-M3 sparse (lexical) embeddings for hybrid search in Qdrant, Milvus and others.

    A weight per token id, computed exactly as FlagEmbedding's ``BGEM3FlagModel`` does; the
    model folder must contain ``sparse_linear.pt`` (BGE-M3 does), otherwise embedding raises
    :class:`bge_core.MissingHeadError`.

    Example:
        ```python
        from langchain_qdrant import QdrantVectorStore, RetrievalMode
        from langchain_bge import BGEEmbeddings, BGESparseEmbeddings

        store = QdrantVectorStore.from_texts(
            texts, embedding=BGEEmbeddings(model_name="BAAI/bge-m3"),
            sparse_embedding=BGESparseEmbeddings(), retrieval_mode=RetrievalMode.HYBRID,
            location=":memory:", collection_name="docs",
        )
        ```
    """

    model_name: str = Field(default=DEFAULT_M3_MODEL_NAME, alias="model")
    """Hugging Face Hub id or local folder of a BGE-M3 model (alias: ``model``)."""
    output_format: OutputFormat = "qdrant"
    """``"qdrant"``: :class:`SparseEmbedding` objects (``.indices``, ``.values``); ``"milvus"``: ``{id: weight}``."""
    device: Optional[str] = None
    """``"cpu"``, ``"cuda:1"``, ``"mps"``, ...; ``None`` picks one (``cuda:0``, ``mps``, ``cpu``)."""
    precision: str = "auto"
    """``"auto"`` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), ``"fp32"``, ``"fp16"`` or ``"bf16"``."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Most texts in one forward pass (batches are also capped by a token budget)."""
    max_length: Optional[int] = None
    """Tokens a text is truncated to; ``None`` takes the model's default (512)."""
    show_progress: bool = False
    """Show a progress bar while embedding."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=())

    _embedder: Optional[Embedder] = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        """Validate the settings and load the model (shared with identical settings)."""
        super().__init__(**data)
        _ = self._engine

    @property
    def _engine(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder(
                self.model_name,
                device=self.device,
                precision=self.precision,
                batch_size=self.batch_size,
                max_length=self.max_length,
                show_progress=self.show_progress,
            )
        return self._embedder

    def _convert(self, vector: SparseVector) -> SparseOutput:
        return vector.to_dict() if self.output_format == "milvus" else SparseEmbedding.from_vector(vector)

    def embed_documents(self, texts: list[str]) -> list[Any]:
        """Sparse vectors of documents, in input order; an empty list gives ``[]``.

        Returns:
            :class:`SparseEmbedding` objects, or ``{token_id: weight}`` dicts with
            ``output_format="milvus"``.

        Raises:
            InputTypeError: ``texts`` is not a list of strings.
            MissingHeadError: the model folder has no ``sparse_linear.pt``.
        """
        out = self._engine.encode(check_texts(texts), kind="document", dense=False, sparse=True)
        return [self._convert(v) for v in out.sparse]  # type: ignore[union-attr]

    def embed_query(self, text: str) -> Any:
        """The sparse vector of one query (BGE-M3 has no query instruction)."""
        out = self._engine.encode(check_text(text), kind="query", dense=False, sparse=True)
        return self._convert(out.sparse)  # type: ignore[arg-type]

    async def aembed_documents(self, texts: list[str]) -> list[Any]:
        """Async :meth:`embed_documents`: runs on the model's worker thread, never on the event loop."""
        check_texts(texts)
        return await run_serialized(self._engine, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> Any:
        """Async :meth:`embed_query`: runs on the model's worker thread, never on the event loop."""
        check_text(text)
        return await run_serialized(self._engine, self.embed_query, text)


__all__ = ["BGESparseEmbeddings", "SparseEmbedding"]

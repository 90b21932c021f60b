"""BGE-M3 lexical (sparse) weights for LlamaIndex and for the vector stores that take them.

One model, three shapes:

- :class:`BGESparseEmbedding` is LlamaIndex's ``BaseSparseEmbedding`` (``{token_id: weight}``);
- its :meth:`~BGESparseEmbedding.sparse_doc_fn` / :meth:`~BGESparseEmbedding.sparse_query_fn`
  are Qdrant's ``SparseEncoderCallable`` (``QdrantVectorStore(enable_hybrid=True, ...)``);
- :class:`BGEMilvusSparseFunction` (also :meth:`~BGESparseEmbedding.milvus_function`) is Milvus's
  ``BaseSparseEmbeddingFunction`` (``MilvusVectorStore(enable_sparse=True,
  sparse_embedding_function=...)``), returning ``{token_id: weight}`` dicts.

No vector store package is imported by this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.base.embeddings.base_sparse import BaseSparseEmbedding, SparseEmbedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr

from bge_core.checks import check_sparse_weights
from bge_core.errors import InputTypeError
from bge_core.slot import EngineSlot

from ._runtime import EngineOwner, engine_options, shared_embedder

if TYPE_CHECKING:
    from bge_core import Embedder

DEFAULT_SPARSE_MODEL = "BAAI/bge-m3"

#: Qdrant's ``BatchSparseEncoding``: the token ids of each text, and their weights.
QdrantBatch = tuple[list[list[int]], list[list[float]]]


class BGESparseEmbedding(EngineOwner, BaseSparseEmbedding):
    """BGE-M3 lexical weights as LlamaIndex sparse embeddings (``dict[int, float]``).

    Weights are FlagEmbedding's exactly at ``precision="fp32"`` (bf16, the CPU default, moves
    them slightly): ``relu(sparse_linear(h))`` per token, the tokenizer's
    cls/eos/pad/unk ids dropped, repeated tokens merged by maximum, only weights > 0 kept.
    The model folder must have BGE-M3's ``sparse_linear.pt`` (``MissingHeadError`` otherwise;
    a random head is never made up).

    Args:
        model_name: Hugging Face Hub id or local folder of a BGE-M3 model.
        device, precision, max_length, trust_remote_code: As for ``BGEEmbedding``.
        query_instruction: ``None`` takes the registry's (none for BGE-M3), ``""`` means none.
        document_instruction: ``None`` takes the registry's (none for BGE-M3), ``""`` means none.
        embed_batch_size: Texts per engine call in batch methods (default 64).

    Example:
        >>> sparse = BGESparseEmbedding("BAAI/bge-m3")
        >>> sparse.get_query_embedding("what is BGE-M3?")          # {token_id: weight}
        >>> from llama_index.vector_stores.qdrant import QdrantVectorStore
        >>> from qdrant_client import QdrantClient
        >>> client = QdrantClient(":memory:")
        >>> store = QdrantVectorStore(client=client, collection_name="docs", enable_hybrid=True,
        ...                           sparse_doc_fn=sparse.sparse_doc_fn, sparse_query_fn=sparse.sparse_query_fn)
    """

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(default=DEFAULT_SPARSE_MODEL, description="Hub id or local folder of a BGE-M3 model.")
    embed_batch_size: int = Field(default=64, gt=0, le=2048, description="Texts per engine call in batch methods.")
    device: str | None = Field(default=None, description="Device ('cpu', 'cuda:1', 'mps'); None picks one.")
    precision: str = Field(default="auto", description="'auto', 'fp32', 'fp16' or 'bf16'.")
    max_length: int | None = Field(default=None, description="Tokens per text; None takes the registry's.")
    query_instruction: str | None = Field(
        default=None, description="Query instruction: None takes the registry's, '' means none."
    )
    document_instruction: str | None = Field(
        default=None, description="Document instruction: None takes the registry's, '' means none."
    )
    trust_remote_code: bool | None = Field(default=None, description="Allow the model's own code.")

    _slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)

    def __init__(self, model_name: str = DEFAULT_SPARSE_MODEL, **data: Any) -> None:
        super().__init__(model_name=model_name, **data)
        self._engine()  # load now, so that a wrong name or folder fails here

    @classmethod
    def class_name(cls) -> str:
        """Name of this class in LlamaIndex's serialization (``to_dict()``'s ``class_name``)."""
        return "BGESparseEmbedding"

    @property
    def engine(self) -> Embedder:
        """The shared ``bge_core.Embedder`` (loaded on first access after unpickling)."""
        return self._engine()

    def _engine(self) -> Embedder:
        options = engine_options(  # normalize=True as BGEEmbedding's default: one shared engine for both
            device=self.device,
            precision=self.precision,
            max_length=self.max_length,
            query_instruction=self.query_instruction,
            document_instruction=self.document_instruction,
            normalize=True,
            trust_remote_code=self.trust_remote_code,
        )
        return self._slot.load(shared_embedder, self.model_name, options)

    def _vectors(self, texts: Any, kind: str) -> Any:
        """``SparseVector`` (a string in) or a list of them (a list in)."""
        return self._engine().encode(texts, kind=kind, dense=False, sparse=True, show_progress=False).sparse

    def _batch(self, texts: list[str], kind: str) -> list[Any]:
        if isinstance(texts, str):
            raise InputTypeError("expected a list of strings, got a single str; wrap it in a list")
        return self._vectors(texts, kind)  # type: ignore[no-any-return]

    def sparse_dicts(self, texts: list[str], kind: Literal["query", "document"]) -> list[SparseEmbedding]:
        """``{token_id: weight}`` per text, in input order (the shape Milvus stores).

        Args:
            texts: The texts; a single string is refused (wrap it in a list).
            kind: ``"query"`` (the query instruction applies, if any) or ``"document"``.

        Raises:
            InputTypeError: ``texts`` is a single string.
        """
        return [vector.to_dict() for vector in self._batch(texts, kind)]

    async def asparse_dicts(self, texts: list[str], kind: Literal["query", "document"]) -> list[SparseEmbedding]:
        """Async :meth:`sparse_dicts`, on the model's worker thread."""
        return await self._serialized(self.sparse_dicts, texts, kind)

    # ------------------------------------------------------------------ BaseSparseEmbedding
    def _get_query_embedding(self, query: str) -> SparseEmbedding:
        return self._vectors(query, "query").to_dict()  # type: ignore[no-any-return]

    def _get_text_embedding(self, text: str) -> SparseEmbedding:
        return self._vectors(text, "document").to_dict()  # type: ignore[no-any-return]

    def _get_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        return self.sparse_dicts(texts, "document")

    async def _aget_query_embedding(self, query: str) -> SparseEmbedding:
        return await self._serialized(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> SparseEmbedding:
        return await self._serialized(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        return await self._serialized(self.sparse_dicts, texts, "document")

    # ------------------------------------------------------------------ Qdrant
    def sparse_doc_fn(self, texts: list[str]) -> QdrantBatch:
        """Qdrant's ``SparseEncoderCallable`` for documents: ``(indices per text, values per text)``.

        Pass as ``QdrantVectorStore(enable_hybrid=True, sparse_doc_fn=sparse.sparse_doc_fn, ...)``.
        """
        return self._qdrant(texts, "document")

    def sparse_query_fn(self, texts: list[str]) -> QdrantBatch:
        """Qdrant's ``SparseEncoderCallable`` for queries (the query instruction applies, if any)."""
        return self._qdrant(texts, "query")

    def _qdrant(self, texts: list[str], kind: str) -> QdrantBatch:
        vectors = self._batch(texts, kind)
        return [v.indices.tolist() for v in vectors], [v.values.tolist() for v in vectors]

    # ------------------------------------------------------------------ Milvus
    def milvus_function(self) -> BGEMilvusSparseFunction:
        """This model as Milvus's ``BaseSparseEmbeddingFunction`` (same as ``BGEMilvusSparseFunction(self)``).

        Pass as ``MilvusVectorStore(enable_sparse=True, sparse_embedding_function=...)``.
        """
        return BGEMilvusSparseFunction(self)


_EMPTY_ADVICE = (
    "Drop such nodes before indexing them. MilvusVectorStore encodes one node per call: it stops at the "
    "first such node, before inserting any node of the batch it was adding."
)


class BGEMilvusSparseFunction:
    """Milvus's sparse embedding-function contract over a :class:`BGESparseEmbedding`.

    ``llama-index-vector-stores-milvus`` takes a ``BaseSparseEmbeddingFunction`` (an ABC in
    ``llama_index.vector_stores.milvus.utils``): ``encode_queries`` / ``encode_documents``
    returning one ``{token_id: weight}`` dict per text (what a Milvus ``SPARSE_FLOAT_VECTOR``
    field stores), and their ``async_`` variants. This class implements it without importing
    Milvus at module import. Constructing one registers the class as a virtual subclass of
    that ABC when the Milvus store package is installed (``ABC.register``, idempotent), so
    ``MilvusVectorStore`` accepts it with no step of yours.

    A Milvus collection refuses a sparse row without a nonzero weight, and one such row fails the
    whole insert. :meth:`encode_documents` therefore raises :class:`bge_core.EmptySparseVectorError`
    for a document with no token of nonzero weight (an empty or punctuation-only text), naming it,
    before ``MilvusVectorStore`` inserts anything; drop such nodes before indexing. A query with no
    weighted token gives ``{}`` (Milvus then finds no document by the sparse field).

    Its outputs are always dicts of Python ``int`` -> ``float``; Qdrant's
    ``(indices, values)`` batches (:meth:`BGESparseEmbedding.sparse_doc_fn`) are a different
    method and never come out of this class.

    Args:
        embedding: The BGE-M3 sparse embedding to run.

    Raises:
        InputTypeError: ``embedding`` is not a :class:`BGESparseEmbedding`.

    Example:
        >>> from llama_index.vector_stores.milvus import MilvusVectorStore
        >>> sparse = BGESparseEmbedding("BAAI/bge-m3")
        >>> store = MilvusVectorStore(uri="./milvus.db", db_name="default", dim=1024, enable_sparse=True,
        ...                           use_async_client=False,
        ...                           sparse_embedding_function=BGEMilvusSparseFunction(sparse))
    """

    def __init__(self, embedding: BGESparseEmbedding) -> None:
        if not isinstance(embedding, BGESparseEmbedding):
            raise InputTypeError(f"BGEMilvusSparseFunction wraps a BGESparseEmbedding, got {type(embedding).__name__}")
        self.embedding = embedding
        self.register_with_milvus()

    @staticmethod
    def register_with_milvus() -> bool:
        """Register with Milvus's ABC; ``False`` when the Milvus store package is not installed.

        Called by the constructor; you never need to call it yourself.
        """
        try:
            from llama_index.vector_stores.milvus.utils import BaseSparseEmbeddingFunction
        except ImportError:
            return False
        BaseSparseEmbeddingFunction.register(BGEMilvusSparseFunction)
        return True

    def encode_queries(self, queries: list[str]) -> list[dict[int, float]]:
        """``{token_id: weight}`` per query (the query instruction applies, if any)."""
        return self.embedding.sparse_dicts(queries, "query")

    def encode_documents(self, documents: list[str]) -> list[dict[int, float]]:
        """``{token_id: weight}`` per document.

        Raises:
            InputTypeError: ``documents`` is a single string.
            EmptySparseVectorError: A document has no token with a nonzero weight (Milvus would
                refuse the whole insert); the error names every such document (``.indices``).
        """
        texts = documents if isinstance(documents, str) else list(documents)
        vectors = self.embedding._batch(texts, "document")
        check_sparse_weights(vectors, texts, advice=_EMPTY_ADVICE)
        return [vector.to_dict() for vector in vectors]

    async def async_encode_queries(self, queries: list[str]) -> list[dict[int, float]]:
        """:meth:`encode_queries` on the model's worker thread."""
        return await self.embedding.asparse_dicts(queries, "query")

    async def async_encode_documents(self, documents: list[str]) -> list[dict[int, float]]:
        """:meth:`encode_documents` on the model's worker thread."""
        return await self.embedding._serialized(self.encode_documents, documents)


__all__ = ["BGEMilvusSparseFunction", "BGESparseEmbedding", "QdrantBatch"]

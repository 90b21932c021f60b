"""``BGESparseEmbeddings``: BGE-M3 lexical weights in the shapes LangChain's vector stores take.

LangChain has no sparse-embedding interface in ``langchain-core``; each vector store defines
its own, with the same method names and different return types:

- ``langchain_qdrant.SparseEmbeddings``: ``embed_query(text)`` returns an object with
  ``.indices`` (``list[int]``) and ``.values`` (``list[float]``); ``QdrantVectorStore`` reads
  only those two attributes.
- ``langchain_milvus.BaseSparseEmbedding``: ``embed_query(text)`` returns a sparse row that
  pymilvus accepts (a ``{id: weight}`` dict or a list of ``(id, weight)`` pairs), and ``Milvus``
  recognises a sparse model with ``isinstance``.

The default output, :class:`SparseEmbedding`, satisfies both: it is a list of
``(token_id, weight)`` pairs with ``.indices`` and ``.values``, so the same object works in
Qdrant and in Milvus, with the same weights. When ``langchain-milvus`` is installed, creating a
:class:`BGESparseEmbeddings` registers the class as a virtual subclass of its
``BaseSparseEmbedding`` (no manual ``register`` step); otherwise no store package is imported.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from bge_core.aio import run_serialized
from bge_core.checks import check_sparse_weights
from bge_core.slot import EngineSlot

from ._engine import EngineOwner, engine_options, load_embedder
from ._inputs import check_text, check_texts

if TYPE_CHECKING:
    from bge_core import Embedder, SparseVector

logger = logging.getLogger(__name__)

DEFAULT_M3_MODEL_NAME = "BAAI/bge-m3"

OutputFormat = Literal["qdrant", "milvus"]
EmptyDocuments = Literal["raise", "keep"]
#: The fields that select the engine (``output_format`` only converts its output).
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


class SparseEmbedding(list):
    """One text's lexical weights: a list of ``(token_id, weight)`` pairs, ids ascending.

    The attributes ``indices`` and ``values`` give the two columns as Python lists: the shape of
    Qdrant's ``SparseVector``. As a list of ``(int, float)`` pairs it is also a sparse row that
    pymilvus (and so ``langchain_milvus.Milvus``) takes as it is.

    Attributes:
        indices: Token ids, unique and ascending.
        values: The matching positive weights.
    """

    def __init__(self, indices: Iterable[int] = (), values: Iterable[float] = ()) -> None:
        ids, weights = list(indices), list(values)
        if len(ids) != len(weights):
            from bge_core import InvalidInputError

            raise InvalidInputError(f"got {len(ids)} indices and {len(weights)} values")
        super().__init__(zip(ids, weights))

    @property
    def indices(self) -> list[int]:
        """Token ids, unique and ascending."""
        return [pair[0] for pair in self]

    @property
    def values(self) -> list[float]:
        """The weights, in the order of :attr:`indices`."""
        return [pair[1] for pair in self]

    @classmethod
    def from_vector(cls, vector: SparseVector) -> SparseEmbedding:
        """Convert a :class:`bge_core.SparseVector` (numpy arrays) to Python ints and floats."""
        return cls(vector.indices.tolist(), vector.values.tolist())

    def to_dict(self) -> dict[int, float]:
        """``{token_id: weight}``: the shape Milvus (and LlamaIndex) take."""
        return dict(self)

    def __repr__(self) -> str:
        return f"SparseEmbedding(indices={self.indices!r}, values={self.values!r})"


SparseOutput = SparseEmbedding | dict[int, float]

_EMPTY_ADVICE = (
    "Remove or fix these documents before adding them, or, for a store that accepts empty sparse "
    'vectors (Qdrant), create BGESparseEmbeddings(empty_documents="keep", ...).'
)


def register_with_langchain_milvus(cls: type) -> bool:
    """Make ``cls`` a virtual subclass of ``langchain_milvus``'s ``BaseSparseEmbedding``, if installed.

    Returns:
        Whether it is registered (``False`` when ``langchain-milvus`` is not installed).
    """
    if importlib.util.find_spec("langchain_milvus") is None:
        return False
    try:
        from langchain_milvus.utils.sparse import BaseSparseEmbedding
    except ImportError as exc:  # installed but broken (e.g. an incompatible pymilvus)
        logger.warning(
            "langchain-milvus is installed but cannot be imported (%s); Milvus will not "
            "recognise BGESparseEmbeddings as a sparse model.",
            exc,
        )
        return False
    if not issubclass(cls, BaseSparseEmbedding):
        BaseSparseEmbedding.register(cls)
    return True


class BGESparseEmbeddings(EngineOwner, BaseModel):
    """BGE-M3 sparse (lexical) embeddings for hybrid search in Qdrant, Milvus and others.

    A weight per token id, computed exactly as FlagEmbedding's ``BGEM3FlagModel`` does (at
    ``precision="fp32"``; the bf16 default moves weights slightly: see "Differences from FlagEmbedding"
    in the documentation, ``docs/models/differences.md``). The model folder must
    contain ``sparse_linear.pt`` (BGE-M3 does): creating the object raises
    :class:`bge_core.MissingHeadError` otherwise.

    Example:
        ```python
        from langchain_qdrant import QdrantVectorStore, RetrievalMode
        from langchain_bge import BGEEmbeddings, BGESparseEmbeddings

        store = QdrantVectorStore.from_texts(
            texts, embedding=BGEEmbeddings(model_name="BAAI/bge-m3"),
            sparse_embedding=BGESparseEmbeddings(), retrieval_mode=RetrievalMode.HYBRID,
            location=":memory:", collection_name="docs",
        )
        # Milvus takes the same object: Milvus(embedding_function=[dense, sparse], ...)
        ```
    """

    model_name: str = Field(default=DEFAULT_M3_MODEL_NAME, alias="model")
    """Hugging Face Hub id or local folder of a BGE-M3 model (alias: ``model``)."""
    output_format: OutputFormat = "qdrant"
    """``"qdrant"``: :class:`SparseEmbedding` (``.indices``/``.values``, also a Milvus row);
    ``"milvus"``: plain ``{id: weight}``."""
    empty_documents: EmptyDocuments = "raise"
    """A document with no token of nonzero weight (an empty or punctuation-only text): ``"raise"``
    :class:`bge_core.EmptySparseVectorError` naming them all (Milvus refuses such a row and fails the
    whole insert); ``"keep"`` returns its empty vector (Qdrant stores it; dense search still finds it)."""
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
    """Show a progress bar while embedding."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=())

    _slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)

    def __init__(self, **data: Any) -> None:
        """Validate the settings and load the model and its sparse head (shared with identical settings).

        Raises:
            MissingHeadError: the model folder has no ``sparse_linear.pt``.
        """
        super().__init__(**data)
        self._engine.require_heads(sparse=True)
        register_with_langchain_milvus(type(self))

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        register_with_langchain_milvus(type(self))  # unpickled in a process that never created one

    def _engine_options(self) -> dict[str, Any]:
        return engine_options({name: getattr(self, name) for name in _ENGINE_FIELDS})

    @property
    def _engine(self) -> Embedder:
        return self._slot.load(load_embedder, self.model_name, self._engine_options())

    def _convert(self, vector: SparseVector) -> SparseOutput:
        return vector.to_dict() if self.output_format == "milvus" else SparseEmbedding.from_vector(vector)

    def embed_documents(self, texts: list[str]) -> list[Any]:
        """Sparse vectors of documents, in input order; an empty list gives ``[]``.

        Returns:
            :class:`SparseEmbedding` objects, or ``{token_id: weight}`` dicts with
            ``output_format="milvus"``.

        Raises:
            InputTypeError: ``texts`` is not a list of strings.
            EmptySparseVectorError: With ``empty_documents="raise"`` (the default), a document has no
                token with a nonzero weight; the error names every such document (``.indices``).
        """
        texts = list(check_texts(texts))
        encoded = self._engine.encode(texts, kind="document", dense=False, sparse=True)
        vectors: list[SparseVector] = encoded.sparse  # type: ignore[assignment]
        if self.empty_documents == "raise":
            check_sparse_weights(vectors, texts, advice=_EMPTY_ADVICE)
        return [self._convert(v) for v in vectors]

    def embed_query(self, text: str) -> Any:
        """The sparse vector of one query (BGE-M3 has no query instruction).

        A query with no weighted token gives an empty vector, never an error: Milvus and Qdrant
        search with it and find no document by the sparse field.
        """
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

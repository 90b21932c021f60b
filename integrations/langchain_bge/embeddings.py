"""``BGEEmbeddings``: LangChain's ``Embeddings`` interface over :class:`bge_core.Embedder`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from bge_core.aio import run_serialized
from bge_core.slot import EngineSlot

from ._engine import EngineOwner, engine_options, load_embedder
from ._inputs import check_text, check_texts

if TYPE_CHECKING:
    from bge_core import Embedder

DEFAULT_MODEL_NAME = "BAAI/bge-small-en-v1.5"

#: Fields resolved from the registry when left at ``None`` (shown resolved, rebuilt from ``None``).
_RESOLVED = ("query_instruction", "document_instruction")
#: The fields passed to the engine (all but ``model_name``, which is its first argument).
_ENGINE_FIELDS = (
    "device",
    "precision",
    "batch_size",
    "max_length",
    "query_instruction",
    "document_instruction",
    "pooling",
    "normalize",
    "truncate_dim",
    "examples",
    "examples_instruction_format",
    "trust_remote_code",
    "cache_folder",
    "revision",
    "token",
    "show_progress",
)


class BGEEmbeddings(EngineOwner, BaseModel, Embeddings):
    """Dense embeddings from a BGE model (or any model :class:`bge_core.Embedder` runs).

    Queries get the model's query instruction (from bge_core's registry: the English one for
    English BGE models, the Chinese one for Chinese BGE models, none for BGE-M3); documents
    never do (except E5's ``"passage: "``). ``embed_query`` equals ``Embedder.encode_queries``
    and ``embed_documents`` equals ``Embedder.encode_documents``, as Python floats; at
    ``precision="fp32"`` both are identical to FlagEmbedding's, and the default
    (``precision="auto"``: bf16 on CPUs with native bf16, fp16 on CUDA) is not identical (the tests
    hold bf16 to a cosine of at least 0.999 to fp32; see "Differences from FlagEmbedding" in the
    documentation, ``docs/models/differences.md``).

    The model loads when the object is created (``import langchain_bge`` does not import
    torch); objects with identical settings share one loaded model. The settings are frozen:
    ``model_copy(update={...})`` builds a validated copy with its own engine, and copies,
    deep copies and pickles follow their fields (an unpickled object loads its model on first
    use).

    Example:
        ```python
        from langchain_bge import BGEEmbeddings

        embeddings = BGEEmbeddings(model_name="BAAI/bge-small-en-v1.5")
        query_vector = embeddings.embed_query("what is BGE?")          # instruction applied
        doc_vectors = embeddings.embed_documents(["BGE is an embedding model."])
        ```
    """

    model_name: str = Field(default=DEFAULT_MODEL_NAME, alias="model")
    """Hugging Face Hub id or local folder of the embedding model (alias: ``model``)."""
    device: str | None = None
    """``"cpu"``, ``"cuda:1"``, ``"mps"``, ...; ``None`` picks one (``cuda:0``, ``mps``, ``cpu``)."""
    precision: str = "auto"
    """``"auto"`` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), ``"fp32"``, ``"fp16"`` or ``"bf16"``."""
    batch_size: int | None = None
    """Most texts in one forward pass (also capped by a token budget); ``None``: the engine's default
    (``bge_core.Embedder``'s ``batch_size``)."""
    max_length: int | None = None
    """Tokens a text is truncated to; ``None`` takes the model's default (512 for BGE)."""
    query_instruction: str | None = None
    """Text put before queries; ``None`` takes the registry's and is replaced by it, ``""`` turns it off."""
    document_instruction: str | None = None
    """Text put before documents; ``None`` takes the registry's (E5: ``"passage: "``, else none),
    ``""`` turns it off."""
    pooling: str | None = None
    """``"cls"``, ``"mean"`` or ``"last_token"``; ``None`` takes the registry's or the folder's own config."""
    normalize: bool = True
    """L2-normalize the vectors (cosine similarity equals inner product)."""
    truncate_dim: int | None = None
    """Keep only the first dimensions (Matryoshka-style), before normalization; ``None`` keeps all."""
    examples: list[dict[str, str]] | None = None
    """In-context examples for bge-en-icl queries: ``{"query", "response"}`` and optional ``"instruct"``."""
    examples_instruction_format: str | None = None
    """Template of one in-context example (bge-en-icl); ``None`` takes FlagICLModel's."""
    trust_remote_code: bool | None = None
    """Allow the model folder's own code; ``None`` takes the registry's choice (off for unknown models)."""
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
    _given: tuple[str, ...] = PrivateAttr(default=())

    def __init__(self, **data: Any) -> None:
        """Validate the settings and load the model (shared with identical settings)."""
        super().__init__(**data)
        self._given = tuple(name for name in _RESOLVED if getattr(self, name) is not None)
        engine = self._engine
        # Show the instructions actually applied: the registry's text, or "" for none.
        if self.query_instruction is None:
            object.__setattr__(self, "query_instruction", engine.query_instruction or "")
        if self.document_instruction is None:
            object.__setattr__(self, "document_instruction", engine.document_instruction or "")

    def _constructor_data(self) -> dict[str, Any]:
        data = super()._constructor_data()
        for name in _RESOLVED:
            if name not in self._given:
                data[name] = None
        return data

    def _engine_options(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in _ENGINE_FIELDS}
        for name in _RESOLVED:
            if name not in self._given:
                fields[name] = None  # the registry's, as when the object was created
        return engine_options(fields)

    @property
    def _engine(self) -> Embedder:
        return self._slot.load(load_embedder, self.model_name, self._engine_options())

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return self._engine.dimension

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (no instruction).

        Args:
            texts: The texts to embed; an empty list gives ``[]``.

        Returns:
            One list of Python floats per text, in input order.

        Raises:
            InputTypeError: ``texts`` is not a list of strings (the message names the bad index).
        """
        return self._engine.encode_documents(check_texts(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query, with the query instruction applied.

        Raises:
            InputTypeError: ``text`` is not a string.
        """
        return self._engine.encode_queries(check_text(text)).tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`: runs on the model's worker thread, never on the event loop."""
        check_texts(texts)
        return await run_serialized(self._engine, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`: runs on the model's worker thread, never on the event loop."""
        check_text(text)
        return await run_serialized(self._engine, self.embed_query, text)


__all__ = ["BGEEmbeddings"]

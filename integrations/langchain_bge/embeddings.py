"""``BGEEmbeddings``: LangChain's ``Embeddings`` interface over :class:`bge_core.Embedder`."""

from __future__ import annotations

from typing import Any, Optional

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from bge_core import Embedder, shared_embedder
from bge_core.aio import run_serialized
from bge_core.batching import DEFAULT_BATCH_SIZE

from ._inputs import check_text, check_texts

DEFAULT_MODEL_NAME = "BAAI/bge-small-en-v1.5"


class BGEEmbeddings(BaseModel, Embeddings):
    """Dense embeddings from a BGE model (or any model :class:`bge_core.Embedder` runs).

    Queries get the model's query instruction (from bge_core's registry: the English one for
    English BGE models, the Chinese one for Chinese BGE models, none for BGE-M3); documents
    never do. ``embed_query`` equals ``Embedder.encode_queries`` and ``embed_documents`` equals
    ``Embedder.encode_documents``, as Python floats. The model loads when the object is
    created; objects with identical settings share one loaded model, and the settings cannot
    be changed afterwards (create a new object instead).

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
    device: Optional[str] = None
    """``"cpu"``, ``"cuda:1"``, ``"mps"``, ...; ``None`` picks one (``cuda:0``, ``mps``, ``cpu``)."""
    precision: str = "auto"
    """``"auto"`` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), ``"fp32"``, ``"fp16"`` or ``"bf16"``."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Most texts in one forward pass (batches are also capped by a token budget)."""
    max_length: Optional[int] = None
    """Tokens a text is truncated to; ``None`` takes the model's default (512 for BGE)."""
    query_instruction: Optional[str] = None
    """Text put before queries; ``None`` takes the registry's and is replaced by it, ``""`` turns it off."""
    normalize: bool = True
    """L2-normalize the vectors (cosine similarity equals inner product)."""
    show_progress: bool = False
    """Show a progress bar while embedding."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=())

    _embedder: Optional[Embedder] = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        """Validate the settings and load the model (shared with identical settings)."""
        super().__init__(**data)
        engine = self._engine
        if self.query_instruction is None:
            # Show the instruction actually applied: the registry's text, or "" for none.
            object.__setattr__(self, "query_instruction", engine.query_instruction or "")

    @property
    def _engine(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder(
                self.model_name,
                device=self.device,
                precision=self.precision,
                batch_size=self.batch_size,
                max_length=self.max_length,
                query_instruction=self.query_instruction,
                normalize=self.normalize,
                show_progress=self.show_progress,
            )
        return self._embedder

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

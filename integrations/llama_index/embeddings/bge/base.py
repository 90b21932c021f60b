"""``BGEEmbedding``: LlamaIndex's ``BaseEmbedding`` backed by ``bge_core.Embedder``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr

from bge_core.slot import EngineSlot

from ._runtime import EngineOwner, engine_options, shared_embedder

if TYPE_CHECKING:
    from bge_core import Embedder

DEFAULT_MODEL = "BAAI/bge-small-en-v1.5"
#: Texts per call to the engine (LlamaIndex's own default, 10, is sized for remote APIs).
DEFAULT_EMBED_BATCH_SIZE = 64


class BGEEmbedding(EngineOwner, BaseEmbedding):
    r"""Dense BGE embeddings for LlamaIndex, numerically identical to FlagEmbedding at ``precision="fp32"``.

    The default ``precision="auto"`` runs bf16 on CPUs with native bf16 (fp16 on CUDA): measured
    on the MiniLM test fixture, bf16 vectors have cosine >= 0.99994 to fp32 ones (components
    within 0.006); pass ``precision="fp32"`` for exact parity.

    Queries get the model's query instruction (from the bge_core registry unless you set
    one); documents get the registry's document instruction (only E5 models have one).
    Vectors are plain ``list[float]``, L2-normalized by default. Identical configurations in
    one process share one loaded model; the model is not part of ``to_dict()`` or of a
    pickle, and a copy in another process (``IngestionPipeline(num_workers=2)``) loads it
    again on first use. Copies (``copy.copy``, ``copy.deepcopy``, ``model_copy(update=...)``,
    a pickle) always compute with their own fields.

    Args:
        model_name: Hugging Face Hub id or local folder.
        device: ``"cpu"``, ``"cuda:1"``, ``"mps"``, ...; ``None`` picks one device.
        precision: ``"auto"``, ``"fp32"``, ``"fp16"`` or ``"bf16"`` (outputs are float32 always).
        max_length: Tokens per text (``None``: the registry's, at most the model's limit).
        query_instruction: ``None`` takes the registry's instruction, ``""`` means none, any
            other string is used as given. Kept as given by ``to_dict()``/``from_dict()``.
        document_instruction: Text put before documents; ``None`` takes the registry's
            (``"passage: "`` for E5 models, none for BGE), ``""`` means none.
        examples: bge-en-icl only: in-context examples put before every query, as
            FlagICLModel's ``examples_for_task``: dicts with ``"query"``, ``"response"`` and
            optionally ``"instruct"`` (default: the query instruction). Other models refuse
            them (``ConfigError``).
        examples_instruction_format: bge-en-icl only: template of one example (``None``:
            ``"<instruct>{}\n<query>{}\n<response>{}"``, FlagICLModel's).
        normalize: L2-normalize vectors.
        pooling: ``"cls"``, ``"mean"`` or ``"last_token"``; ``None`` takes the registry's.
        truncate_dim: Keep only the first dimensions (Matryoshka), before normalization.
        trust_remote_code: Allow a model's own code; ``None`` takes the registry's choice.
        embed_batch_size: Texts per engine call in batch methods (default 64); the engine
            further splits a call into token-budget batches.

    Raises:
        bge_core.errors.ModelNotFoundError: the model is neither a folder nor obtainable.
        bge_core.errors.ConfigError: an invalid ``precision``, ``pooling``, ``max_length``, ...

    Example:
        >>> from llama_index.core import Settings
        >>> from llama_index.embeddings.bge import BGEEmbedding
        >>> Settings.embed_model = BGEEmbedding("BAAI/bge-small-en-v1.5")
        >>> Settings.embed_model.get_query_embedding("what is BGE?")[:3]
    """

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(default=DEFAULT_MODEL, description="Hugging Face Hub id or local folder of the model.")
    embed_batch_size: int = Field(
        default=DEFAULT_EMBED_BATCH_SIZE, gt=0, le=2048, description="Texts per engine call in batch methods."
    )
    device: str | None = Field(default=None, description="Device ('cpu', 'cuda:1', 'mps'); None picks one.")
    precision: str = Field(default="auto", description="'auto', 'fp32', 'fp16' or 'bf16'.")
    max_length: int | None = Field(default=None, description="Tokens per text; None takes the registry's.")
    query_instruction: str | None = Field(
        default=None, description="Query instruction: None takes the registry's, '' means none."
    )
    document_instruction: str | None = Field(
        default=None, description="Document instruction: None takes the registry's, '' means none."
    )
    examples: list[dict[str, str]] | None = Field(
        default=None, description="In-context examples for bge-en-icl queries ({'query', 'response', 'instruct'?})."
    )
    examples_instruction_format: str | None = Field(
        default=None, description="Template of one in-context example (bge-en-icl); None: FlagICLModel's."
    )
    normalize: bool = Field(default=True, description="L2-normalize the vectors.")
    pooling: str | None = Field(default=None, description="'cls', 'mean' or 'last_token'; None: registry's.")
    truncate_dim: int | None = Field(default=None, description="Keep only the first dimensions (Matryoshka).")
    trust_remote_code: bool | None = Field(default=None, description="Allow the model's own code.")

    _slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)

    def __init__(self, model_name: str = DEFAULT_MODEL, **data: Any) -> None:
        super().__init__(model_name=model_name, **data)
        self._engine()  # load now, so that a wrong name or folder fails here

    @classmethod
    def class_name(cls) -> str:
        """Name of this class in LlamaIndex's serialization (``to_dict()``'s ``class_name``)."""
        return "BGEEmbedding"

    @property
    def engine(self) -> Embedder:
        """The shared ``bge_core.Embedder`` (loaded on first access after unpickling)."""
        return self._engine()

    def _engine(self) -> Embedder:
        options = engine_options(
            device=self.device,
            precision=self.precision,
            max_length=self.max_length,
            query_instruction=self.query_instruction,
            document_instruction=self.document_instruction,
            examples=self.examples,
            examples_instruction_format=self.examples_instruction_format,
            normalize=self.normalize,
            pooling=self.pooling,
            truncate_dim=self.truncate_dim,
            trust_remote_code=self.trust_remote_code,
        )
        return self._slot.load(shared_embedder, self.model_name, options)

    def _dense(self, texts: Any, kind: str) -> Any:
        """Vectors as Python lists: one for a string, a list of them for a list."""
        engine = self._engine()
        encode = engine.encode_queries if kind == "query" else engine.encode_documents
        return encode(texts, show_progress=False).tolist()  # progress is the base class's show_progress

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._dense(query, "query")  # type: ignore[no-any-return]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._dense(text, "document")  # type: ignore[no-any-return]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._dense(texts, "document")  # type: ignore[no-any-return]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._serialized(self._dense, query, "query")  # type: ignore[no-any-return]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._serialized(self._dense, text, "document")  # type: ignore[no-any-return]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._serialized(self._dense, texts, "document")  # type: ignore[no-any-return]


__all__ = ["BGEEmbedding"]

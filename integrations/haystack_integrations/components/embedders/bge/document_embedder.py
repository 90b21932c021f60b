"""``BGEDocumentEmbedder``: Documents in, new Documents with a dense ``embedding`` out."""

# No `from __future__ import annotations` here: Haystack reads run()'s annotations as socket types.

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.utils import ComponentDevice, Secret

from bge_core.checks import check_positive

from ._common import (
    DEFAULT_TOKEN,
    check_affixes,
    check_documents,
    common_settings,
    document_texts,
    embedder_options,
    init_parameters,
    resolve_device,
    shared_embedder,
    with_affixes,
)

if TYPE_CHECKING:
    from bge_core import Embedder


@component
class BGEDocumentEmbedder:
    """Embeds Documents with a BGE model (document side: no query instruction), for indexing.

    Returns new Documents (``dataclasses.replace``) carrying the embedding; the input Documents
    are left untouched. Pair it with :class:`BGETextEmbedder` using the same settings: both then
    share one loaded model.

    Usage example:

    ```python
    from haystack import Document
    from haystack_integrations.components.embedders.bge import BGEDocumentEmbedder

    embedder = BGEDocumentEmbedder(model="BAAI/bge-small-en-v1.5", meta_fields_to_embed=["title"])
    docs = [Document(content="BGE is an embedding model.", meta={"title": "BGE"})]
    embedded = embedder.run(docs)["documents"]    # embedded[0].embedding: list[float]
    ```
    """

    def __init__(
        self,
        *,
        model: str = "BAAI/bge-small-en-v1.5",
        device: ComponentDevice | None = None,
        token: Secret | None = DEFAULT_TOKEN,
        batch_size: int = 256,
        progress_bar: bool = True,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        max_length: int | None = None,
        precision: str = "auto",
        pooling: str | None = None,
        normalize_embeddings: bool = True,
        truncate_dim: int | None = None,
        trust_remote_code: bool | None = None,
        revision: str | None = None,
        prefix: str = "",
        suffix: str = "",
        document_instruction: str | None = None,
    ) -> None:
        """Create a BGEDocumentEmbedder. Nothing is loaded until `warm_up()` (or the first `run()`).

        :param model: A Hugging Face Hub id or a local model folder.
        :param device: The device to run on; `None` takes Haystack's default device.
        :param token: Hugging Face token for private models (default: `HF_API_TOKEN` or `HF_TOKEN` if set).
        :param batch_size: Most documents in one forward pass (bge_core also caps the padded tokens per
            batch, and sorts texts by length, so long documents go in smaller batches).
        :param progress_bar: Show a progress bar while embedding.
        :param meta_fields_to_embed: Meta fields whose values are embedded before the content.
        :param embedding_separator: Separator between those meta values and the content.
        :param max_length: Tokens a document is truncated to (`None`: 512, never above the model's limit).
        :param precision: `"auto"` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), `"fp32"`,
            `"fp16"` or `"bf16"`. Embeddings are float32 in every case.
        :param pooling: `"cls"`, `"mean"` or `"last_token"`; `None` takes the registry's.
        :param normalize_embeddings: L2-normalize the embeddings.
        :param truncate_dim: Keep only the first dimensions (Matryoshka-style), before normalization.
        :param trust_remote_code: Allow a model's own code; `None` takes the registry's choice.
        :param revision: A model revision (branch, tag or commit) on the Hub.
        :param prefix: Text put before each document's text (after the meta fields are joined), as in
            Haystack's `SentenceTransformersDocumentEmbedder`: `prefix + meta + separator + content + suffix`.
            A document instruction (below) still comes first; a prefix that repeats it is refused.
        :param suffix: Text put after each document's text.
        :param document_instruction: Text bge_core puts before each document; `None` takes the model
            registry's (`"passage: "` for E5 models, none for BGE), `""` none.
        """
        self.model = str(model)
        self.device = resolve_device(device)
        self.token = token
        self.batch_size = check_positive("batch_size", batch_size)
        self.progress_bar = progress_bar
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self.max_length = max_length
        self.precision = precision
        self.pooling = pooling
        self.normalize_embeddings = normalize_embeddings
        self.truncate_dim = truncate_dim
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self.prefix = prefix
        self.suffix = suffix
        self.document_instruction = document_instruction
        self._embedder: Embedder | None = None

    def warm_up(self) -> None:
        """Load the model (once; components with the same settings share it)."""
        if self._embedder is None:
            embedder = shared_embedder(
                self.model,
                **embedder_options(
                    **common_settings(self),
                    pooling=self.pooling,
                    normalize_embeddings=self.normalize_embeddings,
                    truncate_dim=self.truncate_dim,
                    document_instruction=self.document_instruction,
                ),
            )
            check_affixes(self.prefix, self.suffix, embedder.document_instruction, "document_instruction")
            self._embedder = embedder

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """Embed Documents.

        :param documents: The Documents to embed (their meta fields as configured, then their content).
        :returns: A dictionary with `documents`: new Documents, in input order, with `embedding` set
            (a list of Python floats).
        :raises InputTypeError: `documents` is not a list of Documents (a `TypeError`).
        """
        check_documents(documents, "BGEDocumentEmbedder", "BGETextEmbedder")
        if not documents:
            return {"documents": []}
        self.warm_up()
        assert self._embedder is not None
        texts = with_affixes(
            document_texts(documents, self.meta_fields_to_embed, self.embedding_separator), self.prefix, self.suffix
        )
        vectors = self._embedder.encode_documents(texts, batch_size=self.batch_size, show_progress=self.progress_bar)
        return {"documents": [replace(doc, embedding=row) for doc, row in zip(documents, vectors.tolist())]}

    def to_dict(self) -> dict[str, Any]:
        """Serialize this component to a dictionary."""
        return default_to_dict(self, **init_parameters(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BGEDocumentEmbedder":
        """Deserialize this component from a dictionary (the token and device included)."""
        return default_from_dict(cls, data)

"""``BGESparseDocumentEmbedder``: Documents in, new Documents with a BGE-M3 ``sparse_embedding`` out."""

# No `from __future__ import annotations` here: Haystack reads run()'s annotations as socket types.

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.utils import ComponentDevice, Secret

from bge_core.checks import check_positive

from ._common import (
    DEFAULT_TOKEN,
    check_documents,
    common_settings,
    document_texts,
    embedder_options,
    init_parameters,
    require_m3_heads,
    resolve_device,
    shared_embedder,
    to_sparse_embedding,
)

if TYPE_CHECKING:
    from bge_core import Embedder


@component
class BGESparseDocumentEmbedder:
    """Embeds Documents as BGE-M3 lexical weights, for sparse or hybrid retrieval (e.g. Qdrant).

    Returns new Documents (``dataclasses.replace``) carrying a ``SparseEmbedding``; the input
    Documents are left untouched, and a dense ``embedding`` they already carry is kept, so it can
    follow a :class:`BGEDocumentEmbedder` in an indexing pipeline. A model folder without
    ``sparse_linear.pt`` is refused with :class:`~bge_core.MissingHeadError` at warm-up.

    Usage example:

    ```python
    from haystack import Document
    from haystack_integrations.components.embedders.bge import BGESparseDocumentEmbedder

    embedder = BGESparseDocumentEmbedder(model="BAAI/bge-m3")
    docs = embedder.run([Document(content="BGE-M3 does dense, sparse and ColBERT retrieval.")])["documents"]
    docs[0].sparse_embedding   # SparseEmbedding(indices=[...], values=[...])
    ```
    """

    def __init__(
        self,
        *,
        model: str = "BAAI/bge-m3",
        device: ComponentDevice | None = None,
        token: Secret | None = DEFAULT_TOKEN,
        batch_size: int = 256,
        progress_bar: bool = True,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        max_length: int | None = None,
        precision: str = "auto",
        trust_remote_code: bool | None = None,
        revision: str | None = None,
    ) -> None:
        """Create a BGESparseDocumentEmbedder. Nothing is loaded until `warm_up()` (or the first `run()`).

        :param model: A Hugging Face Hub id or a local folder of a BGE-M3 model (with `sparse_linear.pt`).
        :param device: The device to run on; `None` takes Haystack's default device.
        :param token: Hugging Face token for private models (default: `HF_API_TOKEN` or `HF_TOKEN` if set).
        :param batch_size: Most documents in one forward pass (bge_core also caps padded tokens per batch).
        :param progress_bar: Show a progress bar while embedding.
        :param meta_fields_to_embed: Meta fields whose values are embedded before the content.
        :param embedding_separator: Separator between those meta values and the content.
        :param max_length: Tokens a document is truncated to (`None`: 512, never above the model's limit).
        :param precision: `"auto"`, `"fp32"`, `"fp16"` or `"bf16"`; weights are float32 in every case.
        :param trust_remote_code: Allow a model's own code; `None` takes the registry's choice.
        :param revision: A model revision (branch, tag or commit) on the Hub.
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
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self._embedder: Embedder | None = None

    def warm_up(self) -> None:
        """Load the model and its sparse head (once; components with the same settings share them)."""
        if self._embedder is None:
            embedder = shared_embedder(self.model, **embedder_options(**common_settings(self)))
            require_m3_heads(embedder)
            self._embedder = embedder

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """Embed Documents as lexical weights.

        :param documents: The Documents to embed (their meta fields as configured, then their content).
        :returns: A dictionary with `documents`: new Documents, in input order, with `sparse_embedding` set.
        :raises InputTypeError: `documents` is not a list of Documents (a `TypeError`).
        """
        check_documents(documents, "BGESparseDocumentEmbedder", "BGESparseTextEmbedder")
        if not documents:
            return {"documents": []}
        self.warm_up()
        assert self._embedder is not None
        texts = document_texts(documents, self.meta_fields_to_embed, self.embedding_separator)
        encoded = self._embedder.encode(
            texts,
            kind="document",
            dense=False,
            sparse=True,
            batch_size=self.batch_size,
            show_progress=self.progress_bar,
        )
        return {
            "documents": [
                replace(doc, sparse_embedding=to_sparse_embedding(vector))
                for doc, vector in zip(documents, encoded.sparse)  # type: ignore[arg-type]
            ]
        }

    def to_dict(self) -> dict[str, Any]:
        """Serialize this component to a dictionary."""
        return default_to_dict(self, **init_parameters(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BGESparseDocumentEmbedder":
        """Deserialize this component from a dictionary (the token and device included)."""
        return default_from_dict(cls, data)

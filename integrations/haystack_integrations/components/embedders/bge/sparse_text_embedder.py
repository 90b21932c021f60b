"""``BGESparseTextEmbedder``: one query string in, one BGE-M3 lexical ``SparseEmbedding`` out."""

# No `from __future__ import annotations` here: Haystack reads run()'s annotations as socket types.

from typing import TYPE_CHECKING, Any

from haystack import component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding
from haystack.utils import ComponentDevice, Secret

from ._common import (
    DEFAULT_TOKEN,
    check_text,
    common_settings,
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
class BGESparseTextEmbedder:
    """Embeds a query as BGE-M3 lexical weights (token id -> weight), for a sparse or hybrid retriever.

    At ``precision="fp32"`` the weights are exactly BGE-M3's as FlagEmbedding computes them (bf16, the CPU
    default, moves them slightly) (``relu(sparse_linear(h))``, special tokens dropped as
    FlagEmbedding does), from the model's own ``sparse_linear.pt``: a model folder without it is
    refused with :class:`~bge_core.MissingHeadError` at warm-up, never given a random head.
    With the same settings as a :class:`BGETextEmbedder` (and :class:`BGESparseDocumentEmbedder`)
    it shares their loaded model.

    Usage example:

    ```python
    from haystack_integrations.components.embedders.bge import BGESparseTextEmbedder

    embedder = BGESparseTextEmbedder(model="BAAI/bge-m3")
    sparse = embedder.run("What is BGE-M3?")["sparse_embedding"]   # SparseEmbedding(indices, values)
    ```
    """

    def __init__(
        self,
        *,
        model: str = "BAAI/bge-m3",
        device: ComponentDevice | None = None,
        token: Secret | None = DEFAULT_TOKEN,
        max_length: int | None = None,
        precision: str = "auto",
        trust_remote_code: bool | None = None,
        revision: str | None = None,
    ) -> None:
        """Create a BGESparseTextEmbedder. Nothing is loaded until `warm_up()` (or the first `run()`).

        :param model: A Hugging Face Hub id or a local folder of a BGE-M3 model (with `sparse_linear.pt`).
        :param device: The device to run on; `None` takes Haystack's default device.
        :param token: Hugging Face token for private models (default: `HF_API_TOKEN` or `HF_TOKEN` if set).
        :param max_length: Tokens a query is truncated to (`None`: 512, never above the model's limit).
        :param precision: `"auto"`, `"fp32"`, `"fp16"` or `"bf16"`; weights are float32 in every case.
        :param trust_remote_code: Allow a model's own code; `None` takes the registry's choice.
        :param revision: A model revision (branch, tag or commit) on the Hub.
        """
        self.model = str(model)
        self.device = resolve_device(device)
        self.token = token
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

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str) -> dict[str, Any]:
        """Embed one query.

        :param text: The query.
        :returns: A dictionary with `sparse_embedding`: a `SparseEmbedding` with token ids
            (`list[int]`, ascending) and their weights (`list[float]`).
        :raises InputTypeError: `text` is not a string (a `TypeError`).
        """
        check_text(text, "BGESparseTextEmbedder", "BGESparseDocumentEmbedder")
        self.warm_up()
        assert self._embedder is not None
        vector = self._embedder.encode(text, kind="query", dense=False, sparse=True).sparse
        return {"sparse_embedding": to_sparse_embedding(vector)}  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """Serialize this component to a dictionary."""
        return default_to_dict(self, **init_parameters(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BGESparseTextEmbedder":
        """Deserialize this component from a dictionary (the token and device included)."""
        return default_from_dict(cls, data)

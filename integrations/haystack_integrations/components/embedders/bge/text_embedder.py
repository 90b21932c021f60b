"""``BGETextEmbedder``: one query string in, one dense vector out."""

# No `from __future__ import annotations` here: Haystack reads run()'s annotations as socket types.

from typing import TYPE_CHECKING, Any

from haystack import component, default_from_dict, default_to_dict
from haystack.utils import ComponentDevice, Secret

from ._common import (
    DEFAULT_TOKEN,
    check_affixes,
    check_text,
    common_settings,
    embedder_options,
    init_parameters,
    resolve_device,
    shared_embedder,
)

if TYPE_CHECKING:
    from bge_core import Embedder


@component
class BGETextEmbedder:
    """Embeds a query with a BGE model, the query instruction applied, for an embedding retriever.

    The query instruction comes from bge_core's model registry (for example
    ``"Represent this sentence for searching relevant passages: "`` for English BGE v1.5; none for
    BGE-M3), so do not add it yourself. Pair it with :class:`BGEDocumentEmbedder` using the same
    settings: both then share one loaded model.

    Usage example:

    ```python
    from haystack_integrations.components.embedders.bge import BGETextEmbedder

    embedder = BGETextEmbedder(model="BAAI/bge-small-en-v1.5")
    embedder.warm_up()
    embedding = embedder.run("What is BGE?")["embedding"]   # list[float], 384 values
    ```
    """

    def __init__(
        self,
        *,
        model: str = "BAAI/bge-small-en-v1.5",
        device: ComponentDevice | None = None,
        token: Secret | None = DEFAULT_TOKEN,
        query_instruction: str | None = None,
        max_length: int | None = None,
        precision: str = "auto",
        pooling: str | None = None,
        normalize_embeddings: bool = True,
        truncate_dim: int | None = None,
        trust_remote_code: bool | None = None,
        revision: str | None = None,
        prefix: str = "",
        suffix: str = "",
        examples: list[dict[str, str]] | None = None,
        examples_instruction_format: str | None = None,
    ) -> None:
        r"""Create a BGETextEmbedder. Nothing is loaded until `warm_up()` (or the first `run()`).

        :param model: A Hugging Face Hub id or a local model folder.
        :param device: The device to run on; `None` takes Haystack's default device.
        :param token: Hugging Face token for private models (default: `HF_API_TOKEN` or `HF_TOKEN` if set).
        :param query_instruction: Text put before each query; `None` takes the model registry's, `""` none.
        :param max_length: Tokens a query is truncated to (`None`: 512, never above the model's limit).
        :param precision: `"auto"` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), `"fp32"`,
            `"fp16"` or `"bf16"`. Embeddings are float32 in every case.
        :param pooling: `"cls"`, `"mean"` or `"last_token"`; `None` takes the registry's.
        :param normalize_embeddings: L2-normalize the embedding (BGE models are trained for cosine / dot product).
        :param truncate_dim: Keep only the first dimensions (Matryoshka-style), before normalization.
        :param trust_remote_code: Allow a model's own code; `None` takes the registry's choice.
        :param revision: A model revision (branch, tag or commit) on the Hub.
        :param prefix: Text put before the query, as in Haystack's `SentenceTransformersTextEmbedder`.
            The model's query instruction still comes first, in the model's instruction format:
            the embedded text is `instruction + prefix + text + suffix` (for BGE v1.5). A prefix
            that repeats that instruction is refused (`ConfigError` at warm-up): code moving from
            `SentenceTransformersTextEmbedder(prefix="Represent this sentence ...")` drops the
            prefix, or keeps it and passes `query_instruction=""`.
        :param suffix: Text put after the query.
        :param examples: bge-en-icl only: in-context examples put before every query, as
            FlagICLModel's `examples_for_task`: dicts with `"query"`, `"response"` and optionally
            `"instruct"`. Other models refuse them (`ConfigError` at warm-up).
        :param examples_instruction_format: bge-en-icl only: template of one example (`None`:
            FlagICLModel's `"<instruct>{}\n<query>{}\n<response>{}"`).
        """
        self.model = str(model)
        self.device = resolve_device(device)
        self.token = token
        self.query_instruction = query_instruction
        self.max_length = max_length
        self.precision = precision
        self.pooling = pooling
        self.normalize_embeddings = normalize_embeddings
        self.truncate_dim = truncate_dim
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self.prefix = prefix
        self.suffix = suffix
        self.examples = [dict(e) for e in examples] if examples is not None else None
        self.examples_instruction_format = examples_instruction_format
        self._embedder: Embedder | None = None

    def warm_up(self) -> None:
        """Load the model (once; components with the same settings share it)."""
        if self._embedder is None:
            embedder = shared_embedder(
                self.model,
                **embedder_options(
                    **common_settings(self),
                    query_instruction=self.query_instruction,
                    pooling=self.pooling,
                    normalize_embeddings=self.normalize_embeddings,
                    truncate_dim=self.truncate_dim,
                    examples=self.examples,
                    examples_instruction_format=self.examples_instruction_format,
                ),
            )
            check_affixes(self.prefix, self.suffix, embedder.query_instruction, "query_instruction")
            self._embedder = embedder

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, Any]:
        """Embed one query.

        :param text: The query.
        :returns: A dictionary with `embedding`: the query's vector as a list of Python floats.
        :raises InputTypeError: `text` is not a string (a `TypeError`).
        """
        check_text(text, "BGETextEmbedder", "BGEDocumentEmbedder")
        self.warm_up()
        assert self._embedder is not None
        return {"embedding": self._embedder.encode_queries(self.prefix + text + self.suffix).tolist()}

    def to_dict(self) -> dict[str, Any]:
        """Serialize this component to a dictionary."""
        return default_to_dict(self, **init_parameters(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BGETextEmbedder":
        """Deserialize this component from a dictionary (the token and device included)."""
        return default_from_dict(cls, data)

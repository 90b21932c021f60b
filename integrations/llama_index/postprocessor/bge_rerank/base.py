"""BGE rerankers as LlamaIndex node postprocessors: cross-encoder and BGE-M3 rescoring."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index.embeddings.bge._runtime import EngineOwner, engine_options, shared_embedder, shared_reranker

from bge_core.errors import InvalidInputError
from bge_core.scoring import check_weights
from bge_core.slot import EngineSlot

if TYPE_CHECKING:
    from bge_core import Embedder, Reranker

dispatcher = get_dispatcher(__name__)

DEFAULT_RERANKER = "BAAI/bge-reranker-v2-m3"
DEFAULT_M3_MODEL = "BAAI/bge-m3"
#: BGE-M3's recommended hybrid weights, ordered [dense, sparse, colbert].
DEFAULT_M3_WEIGHTS = (0.4, 0.2, 0.4)


class _BGENodeRerank(EngineOwner, BaseNodePostprocessor):
    """Scores nodes against the query, keeps the best; subclasses say how to score."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Hugging Face Hub id or local folder of the model.")
    top_n: int | None = Field(default=2, gt=0, description="Nodes to return, best first; None returns all.")
    score_threshold: float | None = Field(
        default=None, description="Drop nodes scoring below this (before top_n is applied)."
    )
    keep_retrieval_score: bool = Field(
        default=False, description="Put each node's previous score into its metadata as 'retrieval_score'."
    )
    device: str | None = Field(default=None, description="Device ('cpu', 'cuda:1', 'mps'); None picks one.")
    precision: str = Field(default="auto", description="'auto', 'fp32', 'fp16' or 'bf16'.")
    max_length: int | None = Field(default=None, description="Tokens per input; None takes the registry's.")

    _slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)

    def __init__(self, model: str, **data: Any) -> None:
        super().__init__(model=model, **data)
        self._engine()  # load now, so that a wrong name or folder fails here

    @abstractmethod
    def _engine(self) -> Any:
        """The shared bge_core engine for this configuration."""

    @abstractmethod
    def _scores(self, query: str, texts: list[str]) -> list[float]:
        """One Python float per text, in input order; higher is more relevant."""

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInputError(f"{self.class_name()} needs the query: pass query_bundle or query_str.")
        top_n = len(nodes) if self.top_n is None else self.top_n
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model))
        payload = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
            scores = self._scores(query_bundle.query_str, texts) if texts else []
            reranked = self._select(nodes, scores, top_n)
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        # In a worker thread (the event loop keeps running), one call at a time per loop.
        return await self._serialized(self._postprocess_nodes, nodes, query_bundle)

    def _select(self, nodes: list[NodeWithScore], scores: list[float], top_n: int) -> list[NodeWithScore]:
        """New ``NodeWithScore`` objects, best first (ties keep input order); inputs untouched."""
        order = sorted(range(len(nodes)), key=lambda i: -scores[i])
        if self.score_threshold is not None:
            order = [i for i in order if scores[i] >= self.score_threshold]
        return [self._rescored(nodes[i], scores[i]) for i in order[:top_n]]

    def _rescored(self, item: NodeWithScore, score: float) -> NodeWithScore:
        node = item.node
        if self.keep_retrieval_score:
            node = node.model_copy(update={"metadata": {**node.metadata, "retrieval_score": item.score}})
        return NodeWithScore(node=node, score=float(score))


class BGERerank(_BGENodeRerank):
    """Cross-encoder reranking of retrieved nodes with a BGE reranker, as FlagReranker scores.

    Scores equal FlagReranker's at ``precision="fp32"``; the default ``"auto"`` (bf16 on CPUs
    with native bf16) moved logits by up to 0.018 on the MiniLM test fixture.

    Scores are Python floats on ``NodeWithScore.score``: raw logits by default (as
    FlagReranker), or 0..1 with ``normalize=True``. Node text is
    ``node.get_content(metadata_mode=MetadataMode.EMBED)``, as LlamaIndex's rerankers use.
    Emits LlamaIndex's ``ReRankStartEvent`` / ``ReRankEndEvent`` and a ``RERANKING`` callback
    event. Input nodes are never modified; new ``NodeWithScore`` objects are returned.

    Accepted by name or folder: the cross-encoders (``bge-reranker-base`` / ``-large`` /
    ``-v2-m3``) and the LLM reranker ``bge-reranker-v2-gemma``. The layer-wise and lightweight
    LLM rerankers run the code shipped in their folders, which needs ``trust_remote_code=True``;
    BGERerank has no such field, so it cannot load them (``bge_core.Reranker`` and the LangChain
    and Haystack rerankers can).

    Args:
        model: Hugging Face Hub id or local folder of a reranker; also positional
            (``BGERerank("BAAI/bge-reranker-v2-m3")``).
        top_n: Nodes to return, best first (default 2, as LlamaIndex's rerankers); ``None``: all.
        normalize: Sigmoid scores (0..1) instead of raw logits.
        score_threshold: Drop nodes scoring below this (on the chosen scale), before ``top_n``.
        keep_retrieval_score: Copy each node's previous score into its metadata
            (``retrieval_score``); the node is copied, never changed in place.
        max_length: Tokens per (query, passage) pair (default 512).
        device, precision: As for ``BGEEmbedding``.

    Example:
        >>> rerank = BGERerank("BAAI/bge-reranker-v2-m3", top_n=3)
        >>> engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])  # doctest: +SKIP
    """

    model: str = Field(default=DEFAULT_RERANKER, description="Hub id or local folder of a BGE reranker.")
    normalize: bool = Field(default=False, description="Sigmoid scores (0..1) instead of raw logits.")

    def __init__(self, model: str = DEFAULT_RERANKER, **data: Any) -> None:
        super().__init__(model, **data)

    @classmethod
    def class_name(cls) -> str:
        """Name of this class in LlamaIndex's serialization (``to_dict()``'s ``class_name``)."""
        return "BGERerank"

    @property
    def engine(self) -> Reranker:
        """The shared ``bge_core.Reranker`` (loaded on first access after unpickling)."""
        return self._engine()

    def _engine(self) -> Reranker:
        options = engine_options(
            normalize=self.normalize, max_length=self.max_length, device=self.device, precision=self.precision
        )
        return self._slot.load(shared_reranker, self.model, options)

    def _scores(self, query: str, texts: list[str]) -> list[float]:
        return self._engine().score([(query, text) for text in texts], show_progress=False)  # type: ignore[return-value]


class BGEM3Rerank(_BGENodeRerank):
    """Rescoring of retrieved nodes with BGE-M3's dense, sparse and ColBERT scores (no cross-encoder).

    The score is ``(w0 * dense + w1 * sparse + w2 * colbert) / (w0 + w1 + w2)``, exactly
    ``BGEM3FlagModel.compute_score(...)["colbert+sparse+dense"]``; ``weights=(0, 0, 1)`` gives
    pure ColBERT late interaction. The model needs BGE-M3's ``sparse_linear.pt`` and
    ``colbert_linear.pt`` (``MissingHeadError`` otherwise). With the same settings it shares
    the loaded model with ``BGEEmbedding`` / ``BGESparseEmbedding``.

    Args:
        model: Hugging Face Hub id or local folder of a BGE-M3 model; also positional.
        weights: ``(dense, sparse, colbert)`` weights (default ``(0.4, 0.2, 0.4)``).
        top_n, score_threshold, keep_retrieval_score, max_length, device, precision: As for
            :class:`BGERerank`.

    Example:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> texts = ["BGE-M3 gives dense, sparse and ColBERT vectors.", "Pandas eat bamboo."]
        >>> nodes = [NodeWithScore(node=TextNode(text=text), score=0.5) for text in texts]
        >>> rescore = BGEM3Rerank(top_n=5, weights=(0.4, 0.2, 0.4))
        >>> best = rescore.postprocess_nodes(nodes, query_str="what is BGE-M3?")
    """

    model: str = Field(default=DEFAULT_M3_MODEL, description="Hub id or local folder of a BGE-M3 model.")
    weights: tuple[float, float, float] = Field(
        default=DEFAULT_M3_WEIGHTS, description="Weights of the (dense, sparse, colbert) scores."
    )

    def __init__(self, model: str = DEFAULT_M3_MODEL, **data: Any) -> None:
        check_weights(data.get("weights", DEFAULT_M3_WEIGHTS))  # before loading the model
        super().__init__(model, **data)

    @classmethod
    def class_name(cls) -> str:
        """Name of this class in LlamaIndex's serialization (``to_dict()``'s ``class_name``)."""
        return "BGEM3Rerank"

    @property
    def engine(self) -> Embedder:
        """The shared ``bge_core.Embedder`` (loaded on first access after unpickling)."""
        return self._engine()

    def _engine(self) -> Embedder:
        # The same options as BGEEmbedding's defaults, so both share one engine for one model.
        options = engine_options(
            device=self.device, precision=self.precision, max_length=self.max_length, normalize=True
        )
        return self._slot.load(shared_embedder, self.model, options)

    def _scores(self, query: str, texts: list[str]) -> list[float]:
        check_weights(self.weights)  # model_copy(update=...) does not validate
        scores = self._engine().compute_score([(query, text) for text in texts], weights=self.weights)
        return scores["colbert+sparse+dense"]  # type: ignore[return-value]


__all__ = ["BGEM3Rerank", "BGERerank"]

"""LangChain integration of BAAI's BGE models, built on the bge_core engine.

- :class:`BGEEmbeddings`: dense embeddings (``Embeddings``), query instruction applied to queries only.
- :class:`BGESparseEmbeddings`: BGE-M3 lexical weights for hybrid vector stores (Qdrant, Milvus).
- :class:`BGEReranker`: cross-encoder reranking, a ``BaseDocumentCompressor`` and a ``BaseCrossEncoder``.
- :class:`BGERerankRetriever`: a retriever that reranks another retriever's results.
- :class:`BGEM3Retriever`: in-memory hybrid retrieval (dense + sparse + ColBERT, weighted or RRF).

Importing this package does not import torch; each object loads its model when it is created.

Example:
    >>> from langchain_bge import BGEEmbeddings, BGEReranker
    >>> embeddings = BGEEmbeddings(model_name="BAAI/bge-small-en-v1.5")
    >>> reranker = BGEReranker(model_name="BAAI/bge-reranker-v2-m3", top_n=3)
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:
    from bge_core.errors import MissingExtraError

    raise MissingExtraError(
        f"langchain_bge needs langchain-core, which is not installed ({exc}): pip install 'bge-rag[langchain]'"
    ) from exc

from .embeddings import BGEEmbeddings
from .rerankers import BGEReranker, BGERerankRetriever
from .retrievers import BGEM3Retriever
from .sparse import BGESparseEmbeddings, SparseEmbedding

__all__ = [
    "BGEEmbeddings",
    "BGEM3Retriever",
    "BGERerankRetriever",
    "BGEReranker",
    "BGESparseEmbeddings",
    "SparseEmbedding",
]

"""bge_core: the engine of bge-rag.

Dense, sparse (lexical) and ColBERT embeddings and cross-encoder reranking with BAAI's BGE
models, numerically identical to FlagEmbedding. Imports no RAG framework.

Example:
    >>> from bge_core import Embedder, Reranker
    >>> emb = Embedder("BAAI/bge-small-en-v1.5")
    >>> vectors = emb.encode_documents(["BGE is an embedding model.", "Pandas eat bamboo."])
"""

from __future__ import annotations

from .chunking import Chunk, ChunkedEncoded
from .embedder import Embedder
from .errors import (
    BGEError,
    BGEOutOfMemoryError,
    ConfigError,
    InputTypeError,
    InvalidInputError,
    MissingExtraError,
    MissingHeadError,
    ModelLoadError,
    ModelNotFoundError,
    TextTooLongError,
    UnsupportedModelError,
)
from .registry import ModelSpec, known_models, lookup
from .rerank import Reranker
from .scoring import (
    colbert_scores,
    dense_scores,
    hybrid_scores,
    lexical_scores,
    reciprocal_rank_fusion,
)
from .shared import shared_embedder, shared_reranker
from .types import Encoded, Ranked, SparseVector

__version__ = "0.1.0"

__all__ = [
    "BGEError",
    "BGEOutOfMemoryError",
    "Chunk",
    "ChunkedEncoded",
    "ConfigError",
    "Embedder",
    "Encoded",
    "InputTypeError",
    "InvalidInputError",
    "MissingExtraError",
    "MissingHeadError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelSpec",
    "Ranked",
    "Reranker",
    "SparseVector",
    "TextTooLongError",
    "UnsupportedModelError",
    "__version__",
    "colbert_scores",
    "dense_scores",
    "hybrid_scores",
    "known_models",
    "lexical_scores",
    "lookup",
    "reciprocal_rank_fusion",
    "shared_embedder",
    "shared_reranker",
]

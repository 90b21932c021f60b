"""bge_core: the engine of bge-rag.

Dense, sparse (lexical) and ColBERT embeddings and cross-encoder reranking with BAAI's BGE
models, numerically identical to FlagEmbedding at ``precision="fp32"`` (the default bf16 on CPUs with
native bf16 keeps dense cosines >= 0.99987 to fp32 on the test fixtures). Imports no RAG framework.

Example:
    >>> from bge_core import Embedder, Reranker
    >>> emb = Embedder("BAAI/bge-small-en-v1.5")
    >>> vectors = emb.encode_documents(["BGE is an embedding model.", "Pandas eat bamboo."])

Importing the package is cheap: ``Embedder``, ``Reranker`` and ``shared_embedder`` /
``shared_reranker`` (the names that need torch) load on first access, so adapters can import
errors, types and scoring without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .chunking import Chunk, ChunkedEncoded
from .errors import (
    BGEError,
    BGEOutOfMemoryError,
    ConfigError,
    EmptySparseVectorError,
    InputTypeError,
    InvalidInputError,
    MissingExtraError,
    MissingHeadError,
    ModelLoadError,
    ModelNotFoundError,
    ReadOnlySettingError,
    TextTooLongError,
    UnsupportedModelError,
)
from .registry import ModelSpec, known_models, lookup
from .scoring import (
    colbert_scores,
    dense_scores,
    hybrid_scores,
    lexical_scores,
    reciprocal_rank_fusion,
    sigmoid,
)
from .types import Encoded, Ranked, SparseVector, join_parts

if TYPE_CHECKING:
    from .embedder import Embedder
    from .rerank import Reranker
    from .shared import shared_embedder, shared_reranker

# Names whose modules import torch: loaded on first access (PEP 562).
_LAZY = {
    "Embedder": "embedder",
    "Reranker": "rerank",
    "shared_embedder": "shared",
    "shared_reranker": "shared",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "BGEError",
    "BGEOutOfMemoryError",
    "Chunk",
    "ChunkedEncoded",
    "ConfigError",
    "Embedder",
    "EmptySparseVectorError",
    "Encoded",
    "InputTypeError",
    "InvalidInputError",
    "MissingExtraError",
    "MissingHeadError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelSpec",
    "Ranked",
    "ReadOnlySettingError",
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
    "join_parts",
    "reciprocal_rank_fusion",
    "shared_embedder",
    "shared_reranker",
    "sigmoid",
]

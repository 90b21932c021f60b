"""BGE checkpoints as sentence-transformers models and folders, with bge_core's exact outputs.

sentence-transformers 6 on a plain BGE-M3 folder silently attaches random heads
(``SparseEncoder("BAAI/bge-m3")``, ``MultiVectorEncoder("BAAI/bge-m3")``). This package builds
the right module pipelines from a checkpoint's own weights and saves them as folders that
``SentenceTransformer``, ``SparseEncoder``, ``MultiVectorEncoder`` and ``CrossEncoder`` load.

Example:
    >>> from sentence_transformers import SentenceTransformer
    >>> from sentence_transformers_bge import export
    >>> export("BAAI/bge-small-en-v1.5", "bge-small-st", kind="dense")
    >>> model = SentenceTransformer("bge-small-st")
    >>> model.encode_query(["what is BGE?"])   # == bge_core.Embedder(...).encode_queries(...)
"""

from __future__ import annotations

from bge_core.errors import MissingExtraError

try:
    from sentence_transformers import MultiVectorEncoder  # noqa: F401  (new in sentence-transformers 6.0)
except ImportError as exc:
    raise MissingExtraError(
        "sentence_transformers_bge needs sentence-transformers 6.0 or newer: "
        "pip install 'bge-rag[sentence-transformers]'"
    ) from exc

from .export import (
    ACTIVATIONS,
    KINDS,
    build_cross_encoder,
    build_multi_vector_encoder,
    build_sentence_transformer,
    build_sparse_encoder,
    export,
    load_sparse_encoder,
)
from .m3_lexical_weights import M3LexicalWeights

__all__ = [
    "ACTIVATIONS",
    "KINDS",
    "M3LexicalWeights",
    "build_cross_encoder",
    "build_multi_vector_encoder",
    "build_sentence_transformer",
    "build_sparse_encoder",
    "export",
    "load_sparse_encoder",
]

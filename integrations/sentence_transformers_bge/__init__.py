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
    >>> model.encode_query(["what is BGE?"])   # == bge_core.Embedder(..., precision="fp32").encode_queries(...)

Every exported folder loads with sentence-transformers alone (bge-rag is not needed to load
it); dense and reranker folders load with sentence-transformers 5.x as well as 6.x.
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
    lexical_weights_class,
    load_sparse_encoder,
    save_folder,
)


def __getattr__(name: str) -> type:
    """``M3LexicalWeights``: the class bge-rag's sparse models hold (see :func:`lexical_weights_class`).

    Resolved on first use, because importing it writes transformers' dynamic-module cache.
    """
    if name == "M3LexicalWeights":
        return lexical_weights_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS",
    "KINDS",
    "M3LexicalWeights",
    "build_cross_encoder",
    "build_multi_vector_encoder",
    "build_sentence_transformer",
    "build_sparse_encoder",
    "export",
    "lexical_weights_class",
    "load_sparse_encoder",
    "save_folder",
]

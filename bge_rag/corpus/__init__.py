"""bge_rag.corpus: encode corpora larger than memory to Parquet, resumably (``bge-rag embed``).

The encoder is :func:`embed_corpus` (see :mod:`bge_rag.corpus.encoder` for the output layout);
:func:`read_embeddings` / :func:`iter_embeddings` read a finished output back, and
:func:`arrow_columns` / :func:`encoded_from_arrow` convert between :class:`bge_core.Encoded` and
Arrow columns (also used by :mod:`bge_rag.ray`). pyarrow is imported only when used
(``pip install 'bge-rag[parquet]'``).
"""

from __future__ import annotations

from .encoder import (
    DEFAULT_CHUNK_SIZE,
    DENSE_FORMATS,
    DENSE_NPY,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    OUTPUTS,
    EmbedSummary,
    arrow_columns,
    check_outputs,
    colbert_dimension,
    embed_corpus,
    encoded_from_arrow,
    iter_embeddings,
    read_embeddings,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DENSE_FORMATS",
    "DENSE_NPY",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "OUTPUTS",
    "EmbedSummary",
    "arrow_columns",
    "check_outputs",
    "colbert_dimension",
    "embed_corpus",
    "encoded_from_arrow",
    "iter_embeddings",
    "read_embeddings",
]

"""BGE embeddings for LlamaIndex: dense (``BGEEmbedding``) and BGE-M3 sparse (``BGESparseEmbedding``).

Part of bge-rag (``pip install "bge-rag[llama-index]"``); the model work is done by ``bge_core``.

Example:
    >>> from llama_index.embeddings.bge import BGEEmbedding
    >>> embed_model = BGEEmbedding("BAAI/bge-small-en-v1.5")
"""

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:
    from bge_core.errors import MissingExtraError

    raise MissingExtraError(
        f"llama_index.embeddings.bge needs LlamaIndex (llama-index-core), which is not installed ({exc}): "
        "pip install 'bge-rag[llama-index]'"
    ) from exc

from .base import BGEEmbedding
from .sparse import BGEMilvusSparseFunction, BGESparseEmbedding

__all__ = ["BGEEmbedding", "BGEMilvusSparseFunction", "BGESparseEmbedding"]

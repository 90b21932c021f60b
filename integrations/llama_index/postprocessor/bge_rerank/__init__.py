"""BGE rerankers for LlamaIndex: ``BGERerank`` (cross-encoder) and ``BGEM3Rerank`` (BGE-M3 rescoring).

Part of bge-rag (``pip install "bge-rag[llama-index]"``); the model work is done by ``bge_core``.

Example:
    >>> from llama_index.postprocessor.bge_rerank import BGERerank
    >>> rerank = BGERerank("BAAI/bge-reranker-v2-m3", top_n=3)
"""

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:
    from bge_core.errors import MissingExtraError

    raise MissingExtraError(
        f"llama_index.postprocessor.bge_rerank needs LlamaIndex (llama-index-core), which is not installed ({exc}): "
        "pip install 'bge-rag[llama-index]'"
    ) from exc

from .base import BGEM3Rerank, BGERerank

__all__ = ["BGEM3Rerank", "BGERerank"]

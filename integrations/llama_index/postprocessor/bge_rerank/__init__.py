"""BGE rerankers for LlamaIndex: ``BGERerank`` (cross-encoder) and ``BGEM3Rerank`` (BGE-M3 rescoring).

Part of bge-rag (``pip install "bge-rag[llama-index]"``); the model work is done by ``bge_core``.

Example:
    >>> from llama_index.postprocessor.bge_rerank import BGERerank
    >>> rerank = BGERerank(model="BAAI/bge-reranker-v2-m3", top_n=3)
"""

from .base import BGEM3Rerank, BGERerank

__all__ = ["BGEM3Rerank", "BGERerank"]

"""BGE rankers for Haystack, run by bge_core: ``BGERanker`` (cross-encoder) and ``BGEM3Ranker``
(BGE-M3 dense / lexical / ColBERT rescoring).

Install with ``pip install "bge-rag[haystack]"``.
"""

from .m3_ranker import BGEM3Ranker
from .ranker import BGERanker

__all__ = ["BGEM3Ranker", "BGERanker"]

"""BGE rankers for Haystack, run by bge_core.

``BGERanker`` (cross-encoder) and ``BGEM3Ranker`` (BGE-M3 dense / lexical / ColBERT rescoring).

Install with ``pip install "bge-rag[haystack]"``.
"""

try:
    import haystack  # noqa: F401
except ImportError as exc:
    from bge_core.errors import MissingExtraError

    raise MissingExtraError(
        f"haystack_integrations.components.rankers.bge needs Haystack (haystack-ai), which is not installed ({exc}): "
        "pip install 'bge-rag[haystack]'"
    ) from exc

from .m3_ranker import BGEM3Ranker
from .ranker import BGERanker

__all__ = ["BGEM3Ranker", "BGERanker"]

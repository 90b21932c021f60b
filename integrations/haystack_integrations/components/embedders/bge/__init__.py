"""BGE embedders for Haystack, run by bge_core.

Dense: ``BGETextEmbedder``, ``BGEDocumentEmbedder``; BGE-M3 sparse: ``BGESparseTextEmbedder``,
``BGESparseDocumentEmbedder``.

Install with ``pip install "bge-rag[haystack]"``. Pipelines using them serialize to YAML and load
back with a plain ``Pipeline.loads(...)``: they live under ``haystack_integrations``, a module
root Haystack allows by default.
"""

try:
    import haystack  # noqa: F401
except ImportError as exc:
    from bge_core.errors import MissingExtraError

    raise MissingExtraError(
        f"haystack_integrations.components.embedders.bge needs Haystack (haystack-ai), which is not installed ({exc}): "
        "pip install 'bge-rag[haystack]'"
    ) from exc

from .document_embedder import BGEDocumentEmbedder
from .sparse_document_embedder import BGESparseDocumentEmbedder
from .sparse_text_embedder import BGESparseTextEmbedder
from .text_embedder import BGETextEmbedder

__all__ = ["BGEDocumentEmbedder", "BGESparseDocumentEmbedder", "BGESparseTextEmbedder", "BGETextEmbedder"]

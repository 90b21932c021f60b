"""bge_rag: the applications built on the :mod:`bge_core` engine.

- :mod:`bge_rag.cli`: the ``bge-rag`` command (``python -m bge_rag``): ``demo``, ``models``,
  ``export-st``, ``serve`` and ``embed``.
- :mod:`bge_rag.server`: the HTTP server speaking the OpenAI, TEI, Infinity and Cohere/Jina APIs
  (``pip install 'bge-rag[server]'``).
- :mod:`bge_rag.corpus`: bounded-memory, resumable encoding of corpora to Parquet
  (``pip install 'bge-rag[parquet]'``).
- :mod:`bge_rag.ray`: corpus-scale embedding on Ray Data (``pip install 'bge-rag[ray]'``).
- :mod:`bge_rag.testing`: offline model folders built from real small weights, for tests and the demo.

The apps use the engine's public API only; importing this package imports none of them.
"""

from __future__ import annotations

from bge_core import __version__

__all__ = ["__version__"]

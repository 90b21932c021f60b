"""bge_core imports no RAG framework (and no parity oracle)."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = (
    "langchain", "langchain_core", "llama_index", "haystack", "sentence_transformers", "FlagEmbedding",
    # The server, streaming and Ray extras load these only when used.
    "fastapi", "starlette", "uvicorn", "prometheus_client", "pyarrow", "ray",
)


def test_import_bge_core_imports_no_framework():
    code = (
        "import sys, bge_core, bge_core.cli, bge_core.testing, bge_core.sample_data\n"
        "import bge_core.server, bge_core.server.command, bge_core.streaming, bge_core.streaming_command\n"
        "bge_core.cli.build_parser()\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_public_names():
    import bge_core

    for name in ("Embedder", "Reranker", "Encoded", "SparseVector", "Ranked", "BGEError"):
        assert name in bge_core.__all__ and hasattr(bge_core, name)

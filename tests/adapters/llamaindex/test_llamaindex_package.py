"""The LlamaIndex packages import cheaply, and say which extra to install when LlamaIndex is missing.

Each check runs in a fresh interpreter, as a user's program would import them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGES = ("llama_index.embeddings.bge", "llama_index.postprocessor.bge_rerank")

# Makes "import llama_index.core" (and anything under it) fail as if llama-index-core were not
# installed, while the namespace package llama_index (ours) stays importable.
_BLOCK_CORE = """
import sys
class _NoLlamaIndexCore:
    def find_spec(self, name, path=None, target=None):
        if name == "llama_index.core" or name.startswith("llama_index.core."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoLlamaIndexCore())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("package", PACKAGES)
def test_missing_llama_index_core_names_the_extra(package):
    code = (
        _BLOCK_CORE
        + f"""
from bge_core import MissingExtraError
try:
    import {package}
except MissingExtraError as exc:
    assert isinstance(exc, ImportError)
    print(exc)
else:
    raise SystemExit("imported without llama-index-core")
"""
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install 'bge-rag[llama-index]'" in result.stdout and "llama-index-core" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_import_does_not_import_torch():
    result = _run(
        "import sys\n"
        "from llama_index.embeddings.bge import BGEEmbedding, BGEMilvusSparseFunction, BGESparseEmbedding\n"
        "from llama_index.postprocessor.bge_rerank import BGEM3Rerank, BGERerank\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pymilvus', 'bge_core.embedder') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"

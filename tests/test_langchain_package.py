"""langchain_bge needs langchain-core only: no store package, no langchain-classic, no other framework."""

from __future__ import annotations

import subprocess
import sys

import langchain_bge

OPTIONAL = ("langchain_classic", "langchain_community", "langchain_qdrant", "qdrant_client", "pymilvus",
            "langchain_milvus", "llama_index", "haystack", "sentence_transformers", "FlagEmbedding")

# Runs in a fresh interpreter where the optional packages cannot be imported at all.
_SCRIPT = """
import sys
for name in {optional!r}:
    sys.modules[name] = None  # "import name" now raises ImportError
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from langchain_bge import BGEReranker, BGERerankRetriever

docs = [Document(page_content=t) for t in ("pandas eat bamboo", "BGE embeds text", "rivers flow")]
reranker = BGEReranker(model_name=sys.argv[1], precision="fp32", top_n=2)
retriever = BGERerankRetriever(base_retriever=RunnableLambda(lambda q: docs), reranker=reranker)
out = retriever.invoke("what does BGE do?")
assert len(out) == 2 and all(isinstance(d.metadata["relevance_score"], float) for d in out)
print("ok")
"""


def test_public_names():
    assert set(langchain_bge.__all__) == {
        "BGEEmbeddings", "BGEM3Retriever", "BGERerankRetriever", "BGEReranker", "BGESparseEmbeddings",
        "SparseEmbedding",
    }
    assert all(hasattr(langchain_bge, name) for name in langchain_bge.__all__)


def test_works_without_optional_packages(models):
    code = _SCRIPT.format(optional=OPTIONAL)
    result = subprocess.run(
        [sys.executable, "-c", code, str(models.reranker)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")

"""langchain_bge needs langchain-core only: no store package, no langchain-classic, no other framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

import langchain_bge

OPTIONAL = (
    "langchain_classic",
    "langchain_community",
    "langchain_qdrant",
    "qdrant_client",
    "pymilvus",
    "langchain_milvus",
    "llama_index",
    "haystack",
    "sentence_transformers",
    "FlagEmbedding",
)

# Runs in a fresh interpreter where the optional packages cannot be imported at all.
_SCRIPT = """
import sys
for name in {optional!r}:
    sys.modules[name] = None  # "import name" now raises ImportError
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from langchain_bge import BGEReranker, BGERerankRetriever

docs = [Document(page_content=t) for t in ("pandas eat bamboo", "BGE embeds text", "rivers flow")]
from langchain_bge import BGESparseEmbeddings
reranker = BGEReranker(model_name=sys.argv[1], precision="fp32", top_n=2)
sparse = BGESparseEmbeddings(model_name=sys.argv[2], precision="fp32")  # no langchain-milvus: nothing to register
assert sparse.embed_query("BGE").to_dict()
retriever = BGERerankRetriever(base_retriever=RunnableLambda(lambda q: docs), reranker=reranker)
out = retriever.invoke("what does BGE do?")
assert len(out) == 2 and all(isinstance(d.metadata["relevance_score"], float) for d in out)
print("ok")
"""


def test_public_names():
    assert set(langchain_bge.__all__) == {
        "BGEEmbeddings",
        "BGEM3Retriever",
        "BGERerankRetriever",
        "BGEReranker",
        "BGESparseEmbeddings",
        "SparseEmbedding",
    }
    assert all(hasattr(langchain_bge, name) for name in langchain_bge.__all__)


@pytest.mark.slow
def test_works_without_optional_packages(models):
    code = _SCRIPT.format(optional=OPTIONAL)
    result = subprocess.run(
        [sys.executable, "-c", code, str(models.reranker), str(models.m3)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_import_does_not_import_torch():
    result = _run(
        "import sys, langchain_bge\n"
        "from langchain_bge import BGEEmbeddings, BGEM3Retriever, BGEReranker, BGERerankRetriever\n"
        "print(sorted(m for m in ('torch', 'transformers', 'langchain_milvus', 'pymilvus') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_missing_langchain_core_names_the_extra():
    result = _run(
        "import sys\n"
        "sys.modules['langchain_core'] = None  # as if langchain-core were not installed\n"
        "try:\n"
        "    import langchain_bge\n"
        "except ImportError as exc:  # MissingExtraError is an ImportError\n"
        "    print(type(exc).__name__, exc)\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("MissingExtraError ")
    assert "pip install 'bge-rag[langchain]'" in result.stdout


@pytest.mark.slow
def test_creating_a_sparse_model_registers_it_with_langchain_milvus(models):
    """In a fresh process: no manual ``BaseSparseEmbedding.register`` step, and import stays light."""
    result = _run(
        "import sys\n"
        "from langchain_bge import BGESparseEmbeddings\n"
        "assert 'langchain_milvus' not in sys.modules\n"
        "sparse = BGESparseEmbeddings(model_name=sys.argv[1], precision='fp32')\n"
        "from langchain_milvus.utils.sparse import BaseSparseEmbedding\n"
        "print(isinstance(sparse, BaseSparseEmbedding))",
        str(models.m3),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"


def test_every_engine_field_is_an_engine_parameter():
    """A field added to an adapter class but not wired to the engine (or misspelt) fails here."""
    import inspect

    from bge_core import Embedder, Reranker
    from langchain_bge import embeddings, rerankers, retrievers, sparse

    for module, engine in ((embeddings, Embedder), (sparse, Embedder), (retrievers, Embedder), (rerankers, Reranker)):
        accepted = set(inspect.signature(engine).parameters)
        names = {"cache_dir" if name == "cache_folder" else name for name in module._ENGINE_FIELDS}
        assert names <= accepted, (module.__name__, names - accepted)
    own = {
        embeddings.BGEEmbeddings: {"model_name"},
        sparse.BGESparseEmbeddings: {"model_name", "output_format", "empty_documents"},
        rerankers.BGEReranker: {"model_name", "top_n", "score_threshold"},
        retrievers.BGEM3Retriever: {
            "model_name",
            "docs",
            "k",
            "weights",
            "fusion",
            "rrf_k",
            "name",
            "tags",
            "metadata",
        },
    }
    for cls, fields in own.items():
        module = sys.modules[cls.__module__]
        assert set(cls.model_fields) == fields | set(module._ENGINE_FIELDS), cls.__name__

"""End to end: BGE components in Haystack pipelines, saved as YAML and loaded back with no flags,
run concurrently, and in a Qdrant hybrid search."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from _haystack_support import FAST, sample_documents
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.components.writers import DocumentWriter
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.components.embedders.bge import (
    BGEDocumentEmbedder,
    BGESparseDocumentEmbedder,
    BGESparseTextEmbedder,
    BGETextEmbedder,
)
from haystack_integrations.components.rankers.bge import BGERanker

from bge_core import Embedder, dense_scores, lexical_scores

ROOT = Path(__file__).resolve().parents[3]
QUERIES = ("How do I handle an exception with try and except?", "What does the global statement do?")


@pytest.fixture(scope="module")
def documents(paragraphs) -> list[Document]:
    return sample_documents(paragraphs)


def _indexing(models, store) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component("embedder", BGEDocumentEmbedder(model=str(models.dense), progress_bar=False, **FAST))
    pipe.add_component("writer", DocumentWriter(store, policy=DuplicatePolicy.OVERWRITE))
    pipe.connect("embedder.documents", "writer.documents")
    return pipe


def _query(models, store) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component("embedder", BGETextEmbedder(model=str(models.dense), **FAST))
    pipe.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=4))
    pipe.add_component("ranker", BGERanker(model=str(models.reranker), top_k=3, **FAST))
    pipe.connect("embedder.embedding", "retriever.query_embedding")
    pipe.connect("retriever.documents", "ranker.documents")
    return pipe


def _ask(pipe: Pipeline, query: str, **options) -> dict:
    return pipe.run({"embedder": {"text": query}, "ranker": {"query": query}}, **options)


def _ranked(result: dict) -> list[tuple[str, float]]:
    return [(d.id, d.score) for d in result["ranker"]["documents"]]


@pytest.fixture(scope="module")
def indexed(models, documents):
    """An InMemoryDocumentStore indexed by the indexing pipeline, and that pipeline's output."""
    store = InMemoryDocumentStore(index=f"bge-haystack-{uuid.uuid4().hex}")
    indexing = _indexing(models, store)
    out = indexing.run({"embedder": {"documents": documents}}, include_outputs_from={"embedder"})
    return store, indexing, out


def test_indexing_and_query_pipelines_round_trip_through_yaml(models, documents, indexed):
    store, indexing, first = indexed
    assert first["writer"]["documents_written"] == len(documents) == store.count_documents()
    query = _query(models, store)
    before = {q: _ask(query, q, include_outputs_from={"retriever"}) for q in QUERIES}

    # Plain loads: no allowed_modules, no unsafe flag.
    indexing_again = Pipeline.loads(indexing.dumps())
    query_again = Pipeline.loads(query.dumps())
    assert query_again.to_dict() == query.to_dict() and indexing_again.to_dict() == indexing.to_dict()

    second = indexing_again.run({"embedder": {"documents": documents}}, include_outputs_from={"embedder"})
    embeddings = [d.embedding for d in first["embedder"]["documents"]]
    assert [d.embedding for d in second["embedder"]["documents"]] == embeddings
    assert store.count_documents() == len(documents)  # same store (same index), same ids: overwritten
    for q, result in before.items():
        assert _ranked(_ask(query_again, q)) == _ranked(result)
        candidates = {d.id for d in result["retriever"]["documents"]}
        assert len(_ranked(result)) == 3 and {i for i, _ in _ranked(result)} <= candidates
    # The loaded pipelines' components got the very same engines (identical settings are shared).
    assert query_again.get_component("embedder")._embedder is indexing.get_component("embedder")._embedder
    assert query_again.get_component("ranker")._reranker is query.get_component("ranker")._reranker


def test_retrieval_scores_are_bge_core_similarities(models, documents, indexed):
    store, _, _ = indexed
    reference = Embedder(models.dense, **FAST)
    doc_vectors = reference.encode_documents([d.content for d in documents])
    for q in QUERIES:
        retrieved = _ask(_query(models, store), q, include_outputs_from={"retriever"})["retriever"]["documents"]
        expected = dense_scores(reference.encode_queries(q), doc_vectors)
        by_id = {d.id: float(s) for d, s in zip(documents, expected)}
        assert [d.id for d in retrieved] == sorted(by_id, key=lambda i: -by_id[i])[: len(retrieved)]
        for doc in retrieved:
            assert doc.score == pytest.approx(by_id[doc.id], abs=1e-5)


@pytest.mark.slow
def test_yaml_loads_in_a_fresh_interpreter_without_allow_list_flags(models, tmp_path):
    store = InMemoryDocumentStore(index=f"bge-haystack-{uuid.uuid4().hex}")
    path = tmp_path / "query.yaml"
    path.write_text(_query(models, store).dumps())
    code = f"""
import sys
from haystack import Pipeline
from haystack.core.errors import DeserializationError
text = open({str(path)!r}).read()
print("preloaded", any(m.startswith("haystack_integrations.components") for m in sys.modules))
pipe = Pipeline.loads(text)
print(sorted(type(pipe.get_component(name)).__name__ for name in pipe.graph.nodes))
try:  # the control: the same component under a module root outside Haystack's allow-list
    Pipeline.loads(text.replace("haystack_integrations.components.rankers.bge.ranker.BGERanker", "bge_core.Reranker"))
except DeserializationError as exc:
    print("refused", "allow" in str(exc).lower())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAYSTACK_")}
    env["HAYSTACK_TELEMETRY_ENABLED"] = "False"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "preloaded False",
        "['BGERanker', 'BGETextEmbedder', 'InMemoryEmbeddingRetriever']",
        "refused True",
    ]


def test_concurrent_async_runs_give_the_sync_results(models, indexed):
    store, _, _ = indexed
    query = _query(models, store)
    queries = [*QUERIES, QUERIES[0]]  # the same query twice at once, too
    expected = {q: _ranked(_ask(query, q)) for q in QUERIES}

    async def main() -> list[dict]:
        return await asyncio.gather(
            *(query.run_async({"embedder": {"text": q}, "ranker": {"query": q}}) for q in queries)
        )

    assert [_ranked(r) for r in asyncio.run(main())] == [expected[q] for q in queries]


@pytest.mark.slow
def test_qdrant_hybrid_search_with_bge_m3_dense_and_sparse(models, paragraphs):
    from haystack_integrations.components.retrievers.qdrant import (
        QdrantEmbeddingRetriever,
        QdrantHybridRetriever,
        QdrantSparseEmbeddingRetriever,
    )
    from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

    texts = paragraphs[1:60:6]
    settings = {"model": str(models.m3), **FAST}
    reference = Embedder(models.m3, **FAST)
    corpus = reference.encode(texts, dense=True, sparse=True)
    queries = reference.encode(texts, kind="query", dense=True, sparse=True)
    # The query: a text that both signals rank first (computed here, not assumed).
    target = next(
        i
        for i in range(len(texts))
        if int(np.argmax(dense_scores(queries.dense[i], corpus.dense))) == i
        and int(np.argmax(lexical_scores(queries.sparse[i], corpus.sparse))) == i
    )
    query_text = texts[target]

    store = QdrantDocumentStore(
        ":memory:", use_sparse_embeddings=True, embedding_dim=384, recreate_index=True, progress_bar=False
    )
    indexing = Pipeline()
    indexing.add_component("dense", BGEDocumentEmbedder(**settings, progress_bar=False))
    indexing.add_component("sparse", BGESparseDocumentEmbedder(**settings, progress_bar=False))
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("dense.documents", "sparse.documents")
    indexing.connect("sparse.documents", "writer.documents")
    docs = [Document(content=t) for t in texts]
    assert indexing.run({"dense": {"documents": docs}})["writer"]["documents_written"] == len(texts)

    query = Pipeline()
    query.add_component("dense", BGETextEmbedder(**settings))
    query.add_component("sparse", BGESparseTextEmbedder(**settings))
    query.add_component("retriever", QdrantHybridRetriever(store, top_k=5))
    query.connect("dense.embedding", "retriever.query_embedding")
    query.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    out = query.run(
        {"dense": {"text": query_text}, "sparse": {"text": query_text}}, include_outputs_from={"dense", "sparse"}
    )
    hits = out["retriever"]["documents"]
    assert len(hits) == 5 and hits[0].content == query_text

    # Qdrant's own dense and sparse scores are bge_core's similarities: the vectors arrived intact.
    position = {t: i for i, t in enumerate(texts)}
    # The pipeline embeds the query alone: so does the reference (a vector's last bits can depend on
    # the rows it was batched with).
    alone = reference.encode([query_text], kind="query", dense=True, sparse=True)
    expected_sparse = lexical_scores(alone.sparse[0], corpus.sparse)
    sparse_hits = QdrantSparseEmbeddingRetriever(store, top_k=len(texts)).run(
        query_sparse_embedding=out["sparse"]["sparse_embedding"]
    )["documents"]
    # Sparse search returns the documents sharing a token with the query, exactly those scoring above zero.
    assert sorted(position[d.content] for d in sparse_hits) == [i for i, s in enumerate(expected_sparse) if s > 0]
    for doc in sparse_hits:
        assert doc.score == pytest.approx(float(expected_sparse[position[doc.content]]), rel=1e-5)
    expected_dense = dense_scores(alone.dense[0], corpus.dense)
    dense_hits = QdrantEmbeddingRetriever(store, top_k=len(texts)).run(query_embedding=out["dense"]["embedding"])[
        "documents"
    ]
    assert len(dense_hits) == len(texts)
    for doc in dense_hits:
        assert doc.score == pytest.approx(float(expected_dense[position[doc.content]]), abs=1e-5)


def test_haystack_integrations_stays_a_namespace_package():
    import haystack_integrations
    import haystack_integrations.components.embedders.bge as embedders
    import haystack_integrations.document_stores.qdrant as qdrant  # another distribution, same namespace

    ours = ROOT / "integrations" / "haystack_integrations"
    for level in ("", "components", "components/embedders", "components/rankers"):
        assert not (ours / level / "__init__.py").exists(), level
    assert getattr(haystack_integrations, "__file__", None) is None
    assert str(ours) in [str(Path(p)) for p in haystack_integrations.__path__]
    assert Path(embedders.__file__).is_relative_to(ours) and not Path(qdrant.__file__).is_relative_to(ours)

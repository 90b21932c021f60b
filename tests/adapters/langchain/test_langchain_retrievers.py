"""BGEM3Retriever: LangChain's standard retriever suite, and parity with bge_core's M3 scores."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _langchain_support import MAX_LENGTH
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests
from pydantic import ValidationError

from bge_core import (
    ConfigError,
    Embedder,
    InputTypeError,
    InvalidInputError,
    MissingHeadError,
    dense_scores,
    reciprocal_rank_fusion,
)
from langchain_bge import BGEM3Retriever

QUERY = "How do I catch an exception and handle it?"
WEIGHTS = (0.4, 0.2, 0.4)


@pytest.fixture(scope="module")
def texts(paragraphs):
    return paragraphs[50:62]


class TestBGEM3RetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _fixture_model(self, models, texts):
        self._params = {
            "docs": [Document(page_content=t) for t in texts[:8]],
            "model_name": str(models.m3),
            "precision": "fp32",
            "max_length": MAX_LENGTH,
        }

    @property
    def retriever_constructor(self) -> type[BGEM3Retriever]:
        return BGEM3Retriever

    @property
    def retriever_constructor_params(self) -> dict:
        return self._params

    @property
    def retriever_query_example(self) -> str:
        return QUERY


@pytest.fixture(scope="module")
def docs(texts):
    return [
        Document(page_content=t, metadata={"n": i, "source": "python-docs"}, id=f"d{i}") for i, t in enumerate(texts)
    ]


@pytest.fixture(scope="module")
def hybrid(models, docs):
    return BGEM3Retriever(
        docs=docs, model_name=str(models.m3), precision="fp32", max_length=MAX_LENGTH, k=len(docs), weights=WEIGHTS
    )


@pytest.fixture(scope="module")
def reference_scores(models, texts):
    """BGE-M3 scores of (QUERY, text) pairs from bge_core's compute_score (FlagEmbedding's definitions)."""
    m3 = Embedder(models.m3, precision="fp32", max_length=MAX_LENGTH)
    scores = m3.compute_score([(QUERY, t) for t in texts], weights=WEIGHTS)
    return {k: np.asarray(v) for k, v in scores.items()}


def test_weighted_fusion_equals_compute_score(hybrid, docs, reference_scores):
    expected = reference_scores["colbert+sparse+dense"]
    got = hybrid.invoke(QUERY)
    assert [d.id for d in got] == [docs[i].id for i in np.argsort(-expected, kind="stable")]
    scores = np.array([d.metadata["relevance_score"] for d in got])
    np.testing.assert_allclose(scores, np.sort(expected)[::-1], atol=1e-5, rtol=0)
    assert all(type(d.metadata["relevance_score"]) is float for d in got)


def test_rrf_fusion_equals_reciprocal_rank_fusion(models, docs, reference_scores):
    rrf = BGEM3Retriever(
        docs=docs,
        model_name=str(models.m3),
        precision="fp32",
        max_length=MAX_LENGTH,
        k=5,
        weights=WEIGHTS,
        fusion="rrf",
        rrf_k=30,
    )
    rankings = [np.argsort(-reference_scores[m], kind="stable").tolist() for m in ("dense", "sparse", "colbert")]
    expected = reciprocal_rank_fusion(rankings, k=30, weights=WEIGHTS)[:5]
    got = rrf.invoke(QUERY)
    assert [d.metadata["n"] for d in got] == [i for i, _ in expected]
    assert [d.metadata["relevance_score"] for d in got] == pytest.approx([s for _, s in expected], abs=1e-12)


def test_dense_only_needs_no_m3_heads(models, docs):
    with pytest.raises(MissingHeadError):
        BGEM3Retriever(docs=docs, model_name=str(models.dense), precision="fp32", max_length=MAX_LENGTH)
    dense_only = BGEM3Retriever(
        docs=docs, model_name=str(models.dense), precision="fp32", max_length=MAX_LENGTH, weights=(1, 0, 0), k=3
    )
    emb = Embedder(models.dense, precision="fp32", max_length=MAX_LENGTH)
    expected = dense_scores(emb.encode_queries(QUERY), emb.encode_documents([d.page_content for d in docs]))
    got = dense_only.invoke(QUERY)
    assert [d.metadata["n"] for d in got] == np.argsort(-expected, kind="stable")[:3].tolist()
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in got], np.sort(expected)[::-1][:3], atol=1e-6)


def test_results_keep_ids_and_metadata_and_leave_inputs_alone(hybrid, docs):
    by_id = {d.id: d for d in docs}
    for doc in hybrid.invoke(QUERY, k=4):
        original = by_id[doc.id]
        assert doc is not original and doc.page_content == original.page_content
        assert doc.metadata == {**original.metadata, "relevance_score": doc.metadata["relevance_score"]}
    assert all("relevance_score" not in d.metadata for d in docs)


def test_k_per_call_and_limits(hybrid, docs):
    assert len(hybrid.invoke(QUERY, k=2)) == 2
    assert len(hybrid.invoke(QUERY, k=1000)) == len(docs)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        hybrid.invoke(QUERY, k=0)
    with pytest.raises(ValidationError, match="k"):
        BGEM3Retriever(docs=docs, k=0)


def test_query_without_sparse_weights(hybrid):
    """A query whose every token weighs 0 in the sparse head still retrieves (dense and ColBERT)."""
    m3 = hybrid._engine
    candidates = ["hello world", "ok", "yes", "thanks", "hi", "what", "no"]
    empty = [q for q in candidates if len(m3.encode(q, kind="query", dense=False, sparse=True).sparse) == 0]
    assert empty, "the fixture's sparse head should give some short query no weights"
    got = hybrid.invoke(empty[0], k=3)
    assert len(got) == 3 and all(np.isfinite(d.metadata["relevance_score"]) for d in got)


def test_empty_collection_and_bad_query(models):
    empty = BGEM3Retriever(docs=[], model_name=str(models.m3), precision="fp32", max_length=MAX_LENGTH)
    assert empty.invoke(QUERY) == [] and asyncio.run(empty.ainvoke(QUERY)) == []
    with pytest.raises(InputTypeError, match="query must be a string, got None"):
        empty.invoke(None)


def test_from_texts(models, texts):
    common = {"model_name": str(models.m3), "precision": "fp32", "max_length": MAX_LENGTH, "k": 2}
    retriever = BGEM3Retriever.from_texts(
        texts[:3], metadatas=[{"n": i} for i in range(3)], ids=["a", "b", "c"], **common
    )
    assert sorted(d.id for d in retriever.docs) == ["a", "b", "c"]
    assert {d.id: d.metadata["n"] for d in retriever.invoke(QUERY)}.items() <= {"a": 0, "b": 1, "c": 2}.items()
    with pytest.raises(InvalidInputError, match="2 metadatas"):
        BGEM3Retriever.from_texts(texts[:3], metadatas=[{}, {}], **common)
    with pytest.raises(ConfigError, match="weights"):
        BGEM3Retriever.from_texts(texts[:3], weights=(0, 0, 0), **common)


async def test_async_equals_sync(hybrid):
    queries = [QUERY, "What is a generator?", "the global statement"]
    got = await asyncio.gather(*(hybrid.ainvoke(q, k=3) for q in queries))
    assert got == [hybrid.invoke(q, k=3) for q in queries]

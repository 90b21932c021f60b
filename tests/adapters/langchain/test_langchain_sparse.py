"""BGESparseEmbeddings: BGE-M3 lexical weights in Qdrant's and Milvus's shapes, and in a real Qdrant."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _langchain_support import MAX_LENGTH, pending_while_model_busy

from bge_core import Embedder, EmptySparseVectorError, InputTypeError, MissingHeadError, lexical_scores
from langchain_bge import BGEEmbeddings, BGESparseEmbeddings, SparseEmbedding


@pytest.fixture(scope="module")
def sparse(models):
    # The fixture's random sparse head gives some real paragraphs no weight: "keep" returns them as
    # the engine does (the default "raise" is tested below and on Milvus Lite).
    return BGESparseEmbeddings(
        model_name=str(models.m3), precision="fp32", max_length=MAX_LENGTH, empty_documents="keep"
    )


@pytest.fixture(scope="module")
def reference(models):
    return Embedder(models.m3, precision="fp32", max_length=MAX_LENGTH)


def test_qdrant_shape_equals_the_engine(sparse, reference, paragraphs):
    texts = paragraphs[:12]
    got = sparse.embed_documents(texts)
    expected = reference.encode(texts, dense=False, sparse=True).sparse
    assert len(got) == len(texts) and any(len(v.indices) for v in got)
    for vector, ref in zip(got, expected):
        assert isinstance(vector, SparseEmbedding)
        assert vector.indices == ref.indices.tolist() and vector.values == ref.values.tolist()
        assert all(type(i) is int for i in vector.indices) and all(type(w) is float for w in vector.values)
    query = sparse.embed_query("How do I catch an exception?")
    ref_query = reference.encode("How do I catch an exception?", kind="query", dense=False, sparse=True).sparse
    assert query.to_dict() == ref_query.to_dict()


def test_milvus_shape_is_a_dict_of_int_to_float(models, reference, paragraphs):
    milvus = BGESparseEmbeddings(
        model_name=str(models.m3), precision="fp32", max_length=MAX_LENGTH, output_format="milvus"
    )
    texts = paragraphs[:6]
    got = milvus.embed_documents(texts)
    expected = reference.encode(texts, dense=False, sparse=True).sparse
    assert got == [ref.to_dict() for ref in expected]
    assert all(type(k) is int and type(v) is float for d in got for k, v in d.items())
    single = reference.encode(texts[0], kind="query", dense=False, sparse=True).sparse
    assert milvus.embed_query(texts[0]) == single.to_dict()


def test_weightless_documents_raise_by_default_and_keep_returns_them(models, sparse):
    default = BGESparseEmbeddings(model_name=str(models.m3), precision="fp32", max_length=MAX_LENGTH)
    assert default.empty_documents == "raise"
    with pytest.raises(EmptySparseVectorError, match=r"texts\[0\] \(''\).*empty_documents=\"keep\"") as caught:
        default.embed_documents(["", "!!!"])
    assert caught.value.indices == (0, 1)
    assert sparse.embed_documents(["", "!!!"]) == [SparseEmbedding(), SparseEmbedding()]
    assert default.embed_query("") == sparse.embed_query("") == SparseEmbedding()  # queries are never refused


def test_empty_list_and_bad_input(sparse):
    assert sparse.embed_documents([]) == []
    with pytest.raises(InputTypeError, match="got str"):
        sparse.embed_documents("one text")
    with pytest.raises(InputTypeError, match=r"texts\[0\] is None"):
        sparse.embed_documents([None])
    with pytest.raises(InputTypeError, match="text must be a string"):
        sparse.embed_query(None)


def test_a_model_without_the_sparse_head_fails_at_construction(models):
    with pytest.raises(MissingHeadError, match="sparse_linear.pt"):
        BGESparseEmbeddings(model_name=str(models.dense), precision="fp32", max_length=MAX_LENGTH)


async def test_async_equals_sync_and_queues_on_one_thread(sparse, paragraphs):
    texts = [paragraphs[i : i + 2] for i in range(0, 16, 2)]
    results, done_while_locked, _, threads_added = await pending_while_model_busy(
        sparse._engine._backbone.lock, lambda: [sparse.aembed_documents(t) for t in texts]
    )
    assert done_while_locked == 0 and threads_added <= 1
    assert results == [sparse.embed_documents(t) for t in texts]
    assert await sparse.aembed_query(texts[0][0]) == sparse.embed_query(texts[0][0])


@pytest.mark.slow
def test_qdrant_hybrid_store_in_memory(models, reference, paragraphs):
    """The real QdrantVectorStore (qdrant's in-memory mode) takes our sparse vectors as they are."""
    langchain_qdrant = pytest.importorskip("langchain_qdrant")
    texts = paragraphs[:20]
    common = {"precision": "fp32", "max_length": MAX_LENGTH}
    # Qdrant stores empty sparse vectors: "keep" them (the fixture's random head gives two of these
    # paragraphs no weight; the default would raise, as Milvus needs).
    sparse = BGESparseEmbeddings(model_name=str(models.m3), empty_documents="keep", **common)
    query = paragraphs[7][:150]

    sparse_store = langchain_qdrant.QdrantVectorStore.from_texts(
        texts,
        sparse_embedding=sparse,
        retrieval_mode=langchain_qdrant.RetrievalMode.SPARSE,
        location=":memory:",
        collection_name="sparse",
    )
    hits = sparse_store.similarity_search_with_score(query, k=5)
    # Qdrant's sparse score is bge_core's lexical score (the dot product over shared token ids).
    q = reference.encode(query, kind="query", dense=False, sparse=True).sparse
    expected = np.asarray(lexical_scores(q, reference.encode(texts, dense=False, sparse=True).sparse))
    best = np.argsort(-expected, kind="stable")[:5]
    assert [doc.page_content for doc, _ in hits] == [texts[i] for i in best]
    np.testing.assert_allclose([score for _, score in hits], expected[best], rtol=1e-5)

    hybrid_store = langchain_qdrant.QdrantVectorStore.from_texts(
        texts,
        embedding=BGEEmbeddings(model_name=str(models.m3), **common),
        sparse_embedding=sparse,
        retrieval_mode=langchain_qdrant.RetrievalMode.HYBRID,
        location=":memory:",
        collection_name="hybrid",
    )
    hybrid_hits = hybrid_store.similarity_search(query, k=3)
    assert len(hybrid_hits) == 3 and hybrid_hits[0].page_content == texts[7]
    assert asyncio.run(hybrid_store.asimilarity_search(query, k=3)) == hybrid_hits

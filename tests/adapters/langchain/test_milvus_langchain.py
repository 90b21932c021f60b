"""Hybrid dense + BGE-M3 sparse search through langchain-milvus's ``Milvus`` on a real Milvus Lite.

One Milvus Lite server (a local ``.db`` file) serves the whole module. Scores Milvus returns are
compared with the engine's: dense inner product, lexical score, and their weighted sum, within
``rtol=1e-5`` (Milvus stores float32 and sums in its own order).

A document whose sparse vector has no nonzero weight (an empty or punctuation-only text) is refused
by Milvus, failing the whole insert: ``BGESparseEmbeddings`` names such documents first, and nothing
reaches the collection.
"""

from __future__ import annotations

import langchain_milvus
import numpy as np
import pytest
from _langchain_support import MAX_LENGTH
from langchain_milvus.utils.sparse import BaseSparseEmbedding
from pymilvus import DataType, Function, FunctionType, MilvusException

from bge_core import Embedder, EmptySparseVectorError, dense_scores, lexical_scores
from langchain_bge import BGEEmbeddings, BGESparseEmbeddings, SparseEmbedding

FP32 = {"precision": "fp32", "max_length": MAX_LENGTH}
RTOL, ATOL = 1e-5, 1e-6
DENSE_INDEX = {"index_type": "FLAT", "metric_type": "IP"}  # exact search
SPARSE_INDEX = {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "IP"}
DENSE_SEARCH = {"metric_type": "IP", "params": {}}
# langchain-milvus's default sparse search params carry drop_ratio_build, which Milvus Lite refuses.
SPARSE_SEARCH = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}


@pytest.fixture(scope="module")
def connection(tmp_path_factory):
    # pymilvus 2.6 reads a database name from a file URI's path unless db_name is given.
    return {"uri": str(tmp_path_factory.mktemp("milvus") / "milvus.db"), "db_name": "default"}


@pytest.fixture(scope="module")
def texts(paragraphs):
    return paragraphs[100:130]


@pytest.fixture(scope="module")
def queries(texts):
    return [texts[7][:150], "How do I catch an exception?"]


@pytest.fixture(scope="module")
def engine(models):
    return Embedder(models.m3, **FP32)


@pytest.fixture(scope="module")
def encoded(engine, texts):
    return engine.encode(texts, dense=True, sparse=True)


@pytest.fixture(scope="module")
def hybrid_store(models, texts, connection):
    """Dense + sparse in one collection; the sparse model in its default (Qdrant-compatible) output."""
    store = langchain_milvus.Milvus.from_texts(
        texts,
        embedding=[
            BGEEmbeddings(model_name=str(models.m3), **FP32),
            BGESparseEmbeddings(model_name=str(models.m3), **FP32),
        ],
        vector_field=["dense", "sparse"],
        index_params=[DENSE_INDEX, SPARSE_INDEX],
        search_params=[DENSE_SEARCH, SPARSE_SEARCH],
        connection_args=connection,
        collection_name="hybrid",
    )
    yield store
    store.client.drop_collection("hybrid")


def _expected(engine, encoded, query: str, weights: tuple[float, float], k: int):
    q = engine.encode(query, kind="query", dense=True, sparse=True)
    fused = weights[0] * np.asarray(dense_scores(q.dense, encoded.dense), dtype=np.float64) + weights[1] * np.asarray(
        lexical_scores(q.sparse, encoded.sparse), dtype=np.float64
    )
    best = np.argsort(-fused, kind="stable")[:k]
    return best, fused[best]


@pytest.mark.slow
def test_the_sparse_model_is_recognised_without_a_register_step(hybrid_store, models):
    assert isinstance(BGESparseEmbeddings(model_name=str(models.m3), **FP32), BaseSparseEmbedding)
    fields = {f["name"]: f for f in hybrid_store.client.describe_collection("hybrid")["fields"]}
    assert fields["sparse"]["type"] == DataType.SPARSE_FLOAT_VECTOR
    assert fields["dense"]["type"] == DataType.FLOAT_VECTOR and fields["dense"]["params"]["dim"] == 384


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 1.0), (0.6, 0.4)], ids=["dense", "sparse", "hybrid"])
def test_hybrid_search_scores_equal_the_engine(hybrid_store, engine, encoded, texts, queries, weights):
    """Milvus's weighted fusion (raw scores) equals the engine's dense IP / lexical score / their sum."""
    ranker = Function(
        name="weighted",
        input_field_names=[],
        function_type=FunctionType.RERANK,
        params={"reranker": "weighted", "weights": list(weights), "norm_score": False},
    )
    for query in queries:
        hits = hybrid_store.similarity_search_with_score(query, k=5, fetch_k=len(texts), reranker=ranker)
        best, scores = _expected(engine, encoded, query, weights, 5)
        assert [doc.page_content for doc, _ in hits] == [texts[i] for i in best]
        np.testing.assert_allclose([score for _, score in hits], scores, rtol=RTOL, atol=ATOL)


def test_both_sparse_output_shapes_reach_milvus_with_the_same_weights(
    models, engine, encoded, texts, queries, connection
):
    """A sparse-only collection written with ``{id: weight}`` dicts and searched with the default
    :class:`SparseEmbedding` objects (a list of pairs with ``.indices``/``.values``) and with dicts."""
    as_dicts = BGESparseEmbeddings(model_name=str(models.m3), output_format="milvus", **FP32)
    default = BGESparseEmbeddings(model_name=str(models.m3), **FP32)
    assert isinstance(default.embed_query(queries[0]), SparseEmbedding)
    common = {
        "vector_field": "sparse",
        "index_params": SPARSE_INDEX,
        "search_params": SPARSE_SEARCH,
        "connection_args": connection,
        "collection_name": "sparse",
        "consistency_level": "Strong",
    }
    written = langchain_milvus.Milvus.from_texts(texts, embedding=as_dicts, **common)
    reader = langchain_milvus.Milvus(embedding_function=default, **common)
    try:
        for query in queries:
            best, scores = _expected(engine, encoded, query, (0.0, 1.0), 5)
            # A sparse search returns only documents sharing a token with the query (score > 0).
            best, scores = best[scores > 0], scores[scores > 0]
            assert len(best) >= 1
            for store in (written, reader):
                hits = store.similarity_search_with_score(query, k=5)
                assert [doc.page_content for doc, _ in hits] == [texts[i] for i in best]
                np.testing.assert_allclose([score for _, score in hits], scores, rtol=RTOL, atol=ATOL)
    finally:
        written.client.drop_collection("sparse")


#: Texts the fixture model gives no weighted token (checked in each test that relies on it).
WEIGHTLESS = ["", "!!!"]


def _hybrid_store(models, connection, name: str, **sparse_options) -> langchain_milvus.Milvus:
    return langchain_milvus.Milvus(
        embedding_function=[
            BGEEmbeddings(model_name=str(models.m3), **FP32),
            BGESparseEmbeddings(model_name=str(models.m3), **FP32, **sparse_options),
        ],
        vector_field=["dense", "sparse"],
        index_params=[DENSE_INDEX, SPARSE_INDEX],
        search_params=[DENSE_SEARCH, SPARSE_SEARCH],
        connection_args=connection,
        collection_name=name,
        consistency_level="Strong",
    )


def _rows(store: langchain_milvus.Milvus) -> list[str]:
    rows = store.client.query(store.collection_name, filter="", limit=1000, output_fields=["text"])
    return sorted(row["text"] for row in rows)


def test_weightless_documents_are_named_before_milvus_is_called(models, engine, texts, connection):
    """A batch with an empty and a punctuation-only text: a clear error naming both, no collection made."""
    assert all(len(v) == 0 for v in engine.encode(WEIGHTLESS, dense=False, sparse=True).sparse)
    batch = [texts[0], WEIGHTLESS[0], texts[1], WEIGHTLESS[1]]
    store = _hybrid_store(models, connection, "weightless")
    with pytest.raises(EmptySparseVectorError, match=r"texts\[1\] \(''\), texts\[3\] \('!!!'\)") as caught:
        store.add_texts(batch)
    assert caught.value.indices == (1, 3)
    assert isinstance(caught.value, ValueError)
    assert "Milvus refuses a sparse vector without a nonzero weight" in str(caught.value)
    assert "weightless" not in store.client.list_collections()  # embedding comes before the collection


def test_nothing_is_half_inserted_into_an_existing_collection(models, texts, connection):
    """Inserted in batches of one, the documents before the weightless one would land without the check."""
    store = _hybrid_store(models, connection, "existing")
    try:
        store.add_texts(texts[:3])  # a normal batch still works
        assert _rows(store) == sorted(texts[:3])
        with pytest.raises(EmptySparseVectorError, match=r"1 of 3 documents has .*texts\[2\] \('!!!'\)"):
            store.add_texts([texts[3], texts[4], "!!!"], batch_size=1)
        assert _rows(store) == sorted(texts[:3])
        dense_only = Function(
            name="weighted",
            input_field_names=[],
            function_type=FunctionType.RERANK,
            params={"reranker": "weighted", "weights": [1.0, 0.0], "norm_score": False},
        )
        hits = store.similarity_search(texts[1][:150], k=1, reranker=dense_only)
        assert [doc.page_content for doc in hits] == [texts[1]]
    finally:
        store.client.drop_collection("existing")


async def test_the_async_path_refuses_them_too(models, texts, connection):
    sparse = BGESparseEmbeddings(model_name=str(models.m3), **FP32)
    with pytest.raises(EmptySparseVectorError) as caught:
        await sparse.aembed_documents([texts[0], ""])
    assert caught.value.indices == (1,)


def test_keep_hands_them_to_milvus_which_refuses_the_whole_insert(models, texts, connection):
    """What the check prevents: with ``empty_documents="keep"`` the empty row reaches Milvus."""
    store = _hybrid_store(models, connection, "kept", empty_documents="keep")
    try:
        with pytest.raises(MilvusException, match="sparse vector must contain at least one nonzero"):
            store.add_texts([texts[0], ""])
    finally:
        store.client.drop_collection("kept")


def test_a_weightless_query_finds_nothing_by_the_sparse_field(models, texts, connection):
    """Queries keep their empty vector (no error): Milvus searches with it and returns no sparse hit."""
    sparse = BGESparseEmbeddings(model_name=str(models.m3), **FP32)
    assert sparse.embed_query("!!!") == []
    store = langchain_milvus.Milvus.from_texts(
        texts[:5],
        embedding=sparse,
        vector_field="sparse",
        index_params=SPARSE_INDEX,
        search_params=SPARSE_SEARCH,
        connection_args=connection,
        collection_name="weightless_query",
        consistency_level="Strong",
    )
    try:
        assert store.similarity_search("!!!", k=3) == []
    finally:
        store.client.drop_collection("weightless_query")

"""BGE-M3 dense + sparse in real Milvus (Milvus Lite, in process) through LlamaIndex and pymilvus.

One Milvus Lite database file per module (several collections in it). Milvus computes the
scores itself; they are compared with the engine's (``Embedder`` dense dot products and
``lexical_scores``), the bounds stated at each comparison.

A node whose sparse vector has no nonzero weight (an empty or punctuation-only text) is refused by
Milvus, failing the whole insert: ``BGEMilvusSparseFunction`` names it first, and nothing of the
batch reaches the collection.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _llamaindex_support import QUESTIONS
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.bridge.pydantic import ValidationError
from llama_index.core.schema import TextNode
from llama_index.embeddings.bge import BGEEmbedding, BGEMilvusSparseFunction, BGESparseEmbedding
from llama_index.vector_stores.milvus import MilvusVectorStore
from llama_index.vector_stores.milvus.utils import BaseSparseEmbeddingFunction
from pymilvus import DataType, MilvusClient

from bge_core import Embedder, EmptySparseVectorError, InputTypeError, lexical_scores

OPTIONS = {"precision": "fp32", "max_length": 64}
DIM = 384  # the MiniLM fixture
QUERY = QUESTIONS[0]
#: pymilvus 2.6.9 (the test extra pins <2.6.10 for langchain-milvus 0.3) reads the first path segment
#: of a local Milvus Lite uri as a database name unless one is given.
DB = {"db_name": "default"}
#: Milvus computes in float32 like the engine; sums in another order differ in the last bits.
ATOL = 1e-5


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("milvus") / "bge.db")


@pytest.fixture(scope="module")
def reference(models) -> Embedder:
    return Embedder(models.m3, **OPTIONS)


@pytest.fixture(scope="module")
def sparse(models) -> BGESparseEmbedding:
    return BGESparseEmbedding(str(models.m3), **OPTIONS)


@pytest.fixture(scope="module")
def corpus(paragraphs) -> list[str]:
    return paragraphs[300:330]


@pytest.fixture(scope="module")
def expected(reference, corpus):
    """The engine's dense and lexical scores of QUERY against the corpus."""
    docs = reference.encode(corpus, dense=True, sparse=True)
    query = reference.encode(QUERY, kind="query", dense=True, sparse=True)
    return docs.dense @ query.dense, lexical_scores(query.sparse, docs.sparse)


def store(uri: str, name: str, function, **options) -> MilvusVectorStore:
    # use_async_client=False: pymilvus 2.6.9's async client cannot be created outside an event loop.
    return MilvusVectorStore(
        uri=uri,
        collection_name=name,
        dim=DIM,
        overwrite=True,
        enable_sparse=True,
        sparse_embedding_function=function,
        similarity_metric="IP",
        use_async_client=False,
        **DB,
        **options,
    )


def arctan_norm(x):
    """Milvus WeightedRanker's normalization of IP scores (norm_score=True, its default)."""
    return 0.5 + np.arctan(x) / np.pi


def test_the_function_is_milvus_s_abc_without_a_register_step(sparse):
    function = BGEMilvusSparseFunction(sparse)
    assert isinstance(function, BaseSparseEmbeddingFunction)
    assert isinstance(sparse.milvus_function(), BaseSparseEmbeddingFunction)
    with pytest.raises(InputTypeError, match="BGESparseEmbedding"):
        BGEMilvusSparseFunction(BGEEmbedding)  # type: ignore[arg-type]


def test_qdrant_shaped_callables_are_refused_by_the_milvus_store(sparse, milvus_uri):
    # Qdrant's SparseEncoderCallable returns (indices, values) batches; Milvus's store only takes
    # a BaseSparseEmbeddingFunction, so that shape cannot reach a Milvus collection by mistake.
    for wrong in (sparse.sparse_doc_fn, sparse):
        with pytest.raises(ValidationError, match="sparse_embedding_function"):
            store(milvus_uri, "wrong", wrong)


@pytest.mark.slow
def test_pymilvus_contract_stores_and_searches_the_engine_s_weights(sparse, reference, corpus, expected, milvus_uri):
    # The contract at Milvus's level: encode_documents' dicts are inserted into a
    # SPARSE_FLOAT_VECTOR field as they come, encode_queries' dict is the search vector.
    function = BGEMilvusSparseFunction(sparse)
    documents = function.encode_documents(corpus)
    queries = function.encode_queries([QUERY])
    assert documents == [v.to_dict() for v in reference.encode(corpus, dense=False, sparse=True).sparse]
    assert all(type(k) is int and type(w) is float for d in documents for k, w in d.items())
    assert asyncio.run(function.async_encode_queries([QUERY])) == queries
    assert function.encode_documents([]) == []

    client = MilvusClient(milvus_uri, **DB)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    index = client.prepare_index_params()
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection("contract", schema=schema, index_params=index)
    client.insert("contract", [{"id": i, "sparse": d} for i, d in enumerate(documents)])
    hits = client.search(
        "contract", queries, anns_field="sparse", limit=len(corpus), search_params={"metric_type": "IP"}
    )[0]

    lexical = expected[1]
    matching = np.flatnonzero(lexical > 0)  # Milvus returns only documents sharing a token
    assert 0 < len(matching) < len(corpus)
    assert sorted(h["id"] for h in hits) == matching.tolist()
    np.testing.assert_allclose([h["distance"] for h in hits], lexical[[h["id"] for h in hits]], rtol=1e-6, atol=ATOL)
    assert [h["distance"] for h in hits] == sorted((h["distance"] for h in hits), reverse=True)
    client.close()


@pytest.fixture(scope="module")
def index(models, sparse, corpus, milvus_uri) -> VectorStoreIndex:
    """The corpus in a MilvusVectorStore with BGE-M3 dense vectors and sparse weights."""
    milvus = store(
        milvus_uri,
        "hybrid",
        BGEMilvusSparseFunction(sparse),
        hybrid_ranker="WeightedRanker",
        hybrid_ranker_params={"weights": [0.6, 0.4]},
    )
    nodes = [TextNode(text=t, id_=f"node-{i}") for i, t in enumerate(corpus)]
    dense = BGEEmbedding(str(models.m3), **OPTIONS)
    assert dense.engine is sparse.engine  # one model for dense and sparse
    return VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=milvus), embed_model=dense)


def position(node_id: str) -> int:
    return int(node_id.removeprefix("node-"))


@pytest.mark.slow
def test_dense_query_scores_are_the_engine_s(index, expected):
    hits = index.as_retriever(similarity_top_k=10).retrieve(QUERY)
    dense = expected[0]
    best = np.argsort(-dense, kind="stable")[:10]
    assert [position(h.node.node_id) for h in hits] == best.tolist()
    np.testing.assert_allclose([h.score for h in hits], dense[best], rtol=0, atol=ATOL)


def test_hybrid_query_fuses_the_engine_s_dense_and_sparse_scores(index, expected, corpus):
    hits = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=len(corpus)).retrieve(QUERY)
    dense, lexical = expected
    # WeightedRanker: 0.6 * norm(dense) + 0.4 * norm(sparse), a document missing from the sparse
    # hits (no shared token) contributing 0 there.
    fused = 0.6 * arctan_norm(dense) + 0.4 * np.where(lexical > 0, arctan_norm(lexical), 0.0)
    assert sorted(position(h.node.node_id) for h in hits) == list(range(len(corpus)))
    np.testing.assert_allclose(
        [h.score for h in hits], fused[[position(h.node.node_id) for h in hits]], rtol=0, atol=ATOL
    )
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(type(h.score) is float for h in hits)


def test_the_store_holds_the_engine_s_sparse_weights(index, reference, corpus):
    # What MilvusVectorStore wrote through our function, read back from Milvus.
    milvus: MilvusVectorStore = index.vector_store  # type: ignore[assignment]
    rows = milvus.client.query(
        milvus.collection_name, filter="", limit=len(corpus) + 1, output_fields=["id", "sparse_embedding"]
    )
    stored = {row["id"]: row["sparse_embedding"] for row in rows}
    assert sorted(stored) == sorted(f"node-{i}" for i in range(len(corpus)))
    for i, text in enumerate(corpus):
        # The store encodes one node per call: so does the reference here (in a batch, padding
        # moves weights by up to ~1e-6). Milvus stores float32, as the engine gives them.
        vector = reference.encode(text, dense=False, sparse=True).sparse
        assert stored[f"node-{i}"] == pytest.approx(vector.to_dict(), rel=1e-7, abs=0)


#: Texts the fixture model gives no weighted token (checked in each test that relies on it).
WEIGHTLESS = ["", "!!!"]


def stored_ids(milvus: MilvusVectorStore) -> list[str]:
    rows = milvus.client.query(milvus.collection_name, filter="", limit=1000, output_fields=["id"])
    return sorted(row["id"] for row in rows)


def test_weightless_documents_are_named_with_their_positions(sparse, reference, corpus):
    assert all(len(v) == 0 for v in reference.encode(WEIGHTLESS, dense=False, sparse=True).sparse)
    function = BGEMilvusSparseFunction(sparse)
    batch = [corpus[0], WEIGHTLESS[0], corpus[1], WEIGHTLESS[1]]
    with pytest.raises(
        EmptySparseVectorError, match=r"2 of 4 documents have .*texts\[1\] \(''\), texts\[3\]"
    ) as caught:
        function.encode_documents(batch)
    assert caught.value.indices == (1, 3) and isinstance(caught.value, ValueError)
    assert "Milvus refuses a sparse vector without a nonzero weight" in str(caught.value)
    with pytest.raises(EmptySparseVectorError) as caught:
        asyncio.run(function.async_encode_documents(batch))
    assert caught.value.indices == (1, 3)
    # Queries keep their empty vector: Milvus searches with it and finds nothing by the sparse field.
    assert function.encode_queries(WEIGHTLESS) == [{}, {}]
    # The LlamaIndex sparse embedding itself is not Milvus's: it returns the empty dicts (Qdrant stores them).
    assert sparse.get_text_embedding_batch(batch)[1::2] == [{}, {}]


def test_an_index_with_a_weightless_node_inserts_nothing(models, sparse, corpus, milvus_uri):
    milvus = store(milvus_uri, "weightless", BGEMilvusSparseFunction(sparse))
    dense = BGEEmbedding(str(models.m3), **OPTIONS)
    nodes = [TextNode(text=t, id_=f"node-{i}") for i, t in enumerate([*corpus[:3], "!!!", corpus[3]])]
    context = StorageContext.from_defaults(vector_store=milvus)
    with pytest.raises(EmptySparseVectorError, match=r"1 of 1 documents has .*texts\[0\] \('!!!'\)"):
        VectorStoreIndex(nodes, storage_context=context, embed_model=dense)
    assert stored_ids(milvus) == []
    # The same nodes without the weightless one go in.
    good = [node for node in nodes if node.text != "!!!"]
    VectorStoreIndex(good, storage_context=context, embed_model=dense)
    assert stored_ids(milvus) == sorted(node.node_id for node in good)
    milvus.client.drop_collection("weightless")

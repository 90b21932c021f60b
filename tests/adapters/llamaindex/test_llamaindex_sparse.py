"""BGE-M3 sparse weights for LlamaIndex: BaseSparseEmbedding and Qdrant callables.

Milvus is covered in test_milvus_llamaindex.py.
"""

from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest
from _llamaindex_support import QUESTIONS
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base_sparse import BaseSparseEmbedding
from llama_index.core.schema import TextNode
from llama_index.embeddings.bge import BGEEmbedding, BGESparseEmbedding

from bge_core import Embedder, InputTypeError, lexical_scores

OPTIONS = {"precision": "fp32", "max_length": 64}


@pytest.fixture(scope="module")
def reference(models) -> Embedder:
    return Embedder(models.m3, **OPTIONS)


@pytest.fixture(scope="module")
def sparse(models) -> BGESparseEmbedding:
    return BGESparseEmbedding(str(models.m3), **OPTIONS)


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return paragraphs[200:212]


def reference_sparse(reference: Embedder, texts, kind="document"):
    return reference.encode(texts, kind=kind, dense=False, sparse=True).sparse


def test_subclasses_the_llamaindex_base():
    assert issubclass(BGESparseEmbedding, BaseSparseEmbedding)


def test_sparse_embeddings_equal_the_engine(sparse, reference, texts):
    expected = [v.to_dict() for v in reference_sparse(reference, texts)]
    got = sparse.get_text_embedding_batch(texts)
    assert got == expected and all(expected)  # every text has weights
    assert all(type(k) is int and type(w) is float for d in got for k, w in d.items())
    assert sparse.get_text_embedding(texts[1]) == reference_sparse(reference, texts[1]).to_dict()
    query = sparse.get_query_embedding(QUESTIONS[0])
    assert query == reference_sparse(reference, QUESTIONS[0], "query").to_dict() and query
    assert asyncio.run(sparse.aget_text_embedding_batch(texts)) == expected
    assert asyncio.run(sparse.aget_query_embedding(QUESTIONS[0])) == query
    assert sparse.get_text_embedding_batch([]) == []


def test_qdrant_callables_return_index_and_value_batches(sparse, reference, texts):
    indices, values = sparse.sparse_doc_fn(texts)
    expected = [v.to_qdrant() for v in reference_sparse(reference, texts)]
    assert indices == [e["indices"] for e in expected] and values == [e["values"] for e in expected]
    assert all(type(i) is int for row in indices for i in row)
    assert all(type(w) is float for row in values for w in row)
    q_indices, q_values = sparse.sparse_query_fn([QUESTIONS[0]])
    assert (len(q_indices), len(q_values)) == (1, 1) and len(q_indices[0]) == len(q_values[0]) > 0
    assert sparse.sparse_doc_fn([]) == ([], [])
    with pytest.raises(InputTypeError, match="list of strings"):
        sparse.sparse_doc_fn("one text")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
def test_real_hybrid_query_against_qdrant_in_memory(models, sparse, reference, paragraphs):
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    corpus = paragraphs[300:330]
    nodes = [TextNode(text=t, id_=f"00000000-0000-0000-0000-{i:012d}") for i, t in enumerate(corpus)]
    store = QdrantVectorStore(
        collection_name="bge",
        client=QdrantClient(location=":memory:"),
        enable_hybrid=True,
        sparse_doc_fn=sparse.sparse_doc_fn,
        sparse_query_fn=sparse.sparse_query_fn,
    )
    dense = BGEEmbedding(str(models.m3), **OPTIONS)
    assert dense.engine is sparse.engine  # one model for both
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=dense)
    query = QUESTIONS[0]

    # Sparse mode: Qdrant's dot products are bge_core's lexical scores.
    hits = index.as_retriever(vector_store_query_mode="sparse", sparse_top_k=5).retrieve(query)
    lexical = lexical_scores(reference_sparse(reference, query, "query"), reference_sparse(reference, corpus))
    best = np.argsort(-lexical, kind="stable")[:5]
    assert [h.node.get_content() for h in hits] == [corpus[i] for i in best]
    np.testing.assert_allclose([h.score for h in hits], lexical[best], rtol=1e-5)

    # Hybrid mode: dense and sparse candidates fused; the best lexical match is among them.
    fused = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=5, sparse_top_k=5).retrieve(query)
    assert 0 < len(fused) <= 5 and all(type(h.score) is float for h in fused)
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
    assert corpus[best[0]] in {h.node.get_content() for h in fused}


def test_pickle_and_dump_leave_the_model_out(sparse, texts):
    assert "class_name" in sparse.model_dump() and sparse.model_dump()["model_name"] == sparse.model_name
    copy = pickle.loads(pickle.dumps(sparse))
    assert copy._slot.loaded is False
    assert copy.get_text_embedding(texts[0]) == sparse.get_text_embedding(texts[0])
    assert copy.engine is sparse.engine

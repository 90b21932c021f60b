"""An LLM reranker (bge-reranker-v2-gemma's architecture) reaches every adapter's reranker by model
name, with the engine's scores: LangChain BGEReranker, LlamaIndex BGERerank, Haystack BGERanker,
and the server's /v1/rerank."""

from __future__ import annotations

import httpx
import pytest
from _llm_support import build_causal_reranker
from _server_support import serve_engines

from bge_core import Reranker


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    return build_causal_reranker(tmp_path_factory.mktemp("llm-adapters") / "bge-reranker-v2-gemma-tiny", "gemma")


@pytest.fixture(scope="module")
def engine(gemma):
    return Reranker(gemma, precision="fp32")


@pytest.fixture(scope="module")
def query_docs(paragraphs):
    return "How do I handle an exception with try and except?", paragraphs[:8]


def _expected(engine, query, docs, normalize=False):
    scores = engine.score([(query, d) for d in docs], normalize=normalize)
    order = sorted(range(len(docs)), key=lambda i: -scores[i])
    return scores, order


def test_langchain_bgereranker(gemma, engine, query_docs):
    from langchain_core.documents import Document

    from langchain_bge import BGEReranker

    query, docs = query_docs
    scores, order = _expected(engine, query, docs)
    rr = BGEReranker(model_name=str(gemma), precision="fp32", top_n=3)
    out = rr.compress_documents([Document(page_content=d) for d in docs], query)
    assert [d.page_content for d in out] == [docs[i] for i in order[:3]]
    # BaseCrossEncoder.score gives the adapter's score scale (sigmoid by default, as its docs say)
    assert rr.score([(query, docs[0])]) == pytest.approx([engine.score((query, docs[0]), normalize=True)], abs=1e-5)


def test_llamaindex_bgererank(gemma, engine, query_docs):
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.bge_rerank import BGERerank

    query, docs = query_docs
    scores, order = _expected(engine, query, docs)
    rr = BGERerank(str(gemma), precision="fp32", top_n=3)
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in docs]
    out = rr.postprocess_nodes(nodes, query_str=query)
    assert [n.node.get_content() for n in out] == [docs[i] for i in order[:3]]
    assert [n.score for n in out] == pytest.approx([scores[i] for i in order[:3]], abs=1e-5)


def test_haystack_bgeranker(gemma, engine, query_docs):
    from haystack import Document
    from haystack_integrations.components.rankers.bge import BGERanker

    query, docs = query_docs
    scores, order = _expected(engine, query, docs, normalize=True)
    ranker = BGERanker(model=str(gemma), precision="fp32", top_k=3, token=None)
    ranker.warm_up()
    out = ranker.run(query=query, documents=[Document(content=d) for d in docs])["documents"]
    assert [d.content for d in out] == [docs[i] for i in order[:3]]
    assert [d.score for d in out] == pytest.approx([scores[i] for i in order[:3]], abs=1e-5)


def test_server_v1_rerank(engine, query_docs):
    query, docs = query_docs
    scores, order = _expected(engine, query, docs, normalize=True)
    with (
        serve_engines(None, engine, reranker_name="bge-reranker-v2-gemma") as url,
        httpx.Client(base_url=url, trust_env=False, timeout=60) as client,
    ):
        response = client.post("/v1/rerank", json={"model": "x", "query": query, "documents": docs, "top_n": 3})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == order[:3]
    assert [r["relevance_score"] for r in results] == pytest.approx([scores[i] for i in order[:3]], abs=1e-6)

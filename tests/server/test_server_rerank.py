"""/v1/rerank and /rerank (Cohere, Jina and TEI request shapes): scores equal Reranker.score."""

from __future__ import annotations

import httpx
import pytest
from _server_support import reranker, serve_engines

from bge_core import Reranker, sigmoid


@pytest.fixture(scope="module")
def rr(models) -> Reranker:
    return reranker(models)


@pytest.fixture(scope="module")
def http(rr):
    with (
        serve_engines(None, rr, reranker_name="rerank-test") as url,
        httpx.Client(base_url=url, trust_env=False, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def query_docs(paragraphs) -> tuple[str, list[str]]:
    return "How do I handle an exception with try and except?", paragraphs[:12]


def _best_first(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
def test_cohere_shape_with_sigmoid_scores(http, rr, query_docs, path):
    query, docs = query_docs
    response = http.post(path, json={"model": "x", "query": query, "documents": docs})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = rr.score([(query, d) for d in docs], normalize=True)
    assert [r["index"] for r in body["results"]] == _best_first(expected)
    assert [r["relevance_score"] for r in body["results"]] == [expected[i] for i in _best_first(expected)]
    assert all("document" not in r for r in body["results"])
    assert body["model"] == "rerank-test" and body["id"]


def test_top_n_and_return_documents_with_jina_objects(http, rr, query_docs):
    query, docs = query_docs
    payload = {"query": query, "documents": [{"text": d} for d in docs], "top_n": 3, "return_documents": True}
    results = http.post("/v1/rerank", json=payload).json()["results"]
    ranked = rr.rerank(query, docs, top_k=3, normalize=True)
    assert [(r["index"], r["relevance_score"], r["document"]["text"]) for r in results] == [
        (r.index, r.score, r.text) for r in ranked
    ]


def test_tei_shape_raw_scores(http, rr, query_docs):
    query, docs = query_docs
    tei = {"query": query, "texts": docs[:5], "raw_scores": True, "return_text": True}
    body = http.post("/rerank", json=tei).json()
    logits = rr.score([(query, d) for d in docs[:5]], normalize=False)
    assert body == [{"index": i, "score": logits[i], "text": docs[i]} for i in _best_first(logits)]
    sigmoid_body = http.post("/rerank", json={"query": query, "texts": docs[:5]}).json()
    assert [item["score"] for item in sigmoid_body] == [sigmoid(logits[i]) for i in _best_first(logits)]


def test_empty_documents_give_empty_results(http):
    assert http.post("/v1/rerank", json={"query": "q", "documents": []}).json()["results"] == []


def test_raw_scores_by_default_when_the_server_says_so(rr, query_docs):
    query, docs = query_docs
    with serve_engines(None, rr, rerank_scores="raw") as url:
        body = httpx.post(f"{url}/v1/rerank", json={"query": query, "documents": docs[:4]}, trust_env=False).json()
    logits = rr.score([(query, d) for d in docs[:4]])
    assert [r["relevance_score"] for r in body["results"]] == [logits[i] for i in _best_first(logits)]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"query": "q"}, "'documents' (Cohere, Jina) or as 'texts' (TEI)"),
        ({"query": "q", "documents": ["a"], "texts": ["a"]}, "not both"),
        ({"query": 3, "documents": ["a"]}, "'query': Input should be a valid string"),
        ({"query": "q", "documents": ["a", 7]}, "'documents[1]' is a number"),
        ({"query": "q", "documents": [{"title": "a"}]}, "an object with a 'text' string"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "'top_n' must be a positive integer"),
        ({"query": "q", "documents": ["a"], "rank_fields": ["x"]}, "ranks documents by their 'text' only"),
        ({"query": "q", "documents": ["a"], "max_chunks_per_doc": 3}, "'max_chunks_per_doc' is not supported"),
        ({"query": "q", "documents": ["a"], "truncate": False}, "always truncates each (query, document) pair"),
        ({"query": "q", "documents": ["a"], "truncation_direction": "Left"}, "'left' is not supported for rerank"),
        ({"query": "q", "documents": ["a"], "rank_field": ["text"]}, "Unrecognized request argument 'rank_field'"),
    ],
)
def test_bad_rerank_requests_are_400(http, payload, message):
    response = http.post("/v1/rerank", json=payload)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_embeddings_on_a_reranker_only_server_is_404(http):
    response = http.post("/v1/embeddings", json={"input": "x"})
    assert response.status_code == 404
    assert "--model" in response.json()["error"]["message"]

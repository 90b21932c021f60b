"""Several models behind one server: routing on ``model`` in every API family, and isolation.

One server serves two embedding models (the BGE-M3 fixture, the default, and the dense MiniLM
fixture) and two rerankers; each answer is compared with the named model's own engine.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import cohere
import httpx
import numpy as np
import openai
import pytest
from _server_support import m3_embedder, reranker, serve
from prometheus_client.parser import text_string_to_metric_families

from bge_core import Embedder, Reranker
from bge_core.errors import ConfigError
from bge_rag.server import ServerSettings, create_app

QUERIES = ["what is a generator?", "how do I open a file?"]


@pytest.fixture(scope="module")
def embedders(models) -> dict[str, Embedder]:
    dense = Embedder(models.dense, precision="fp32", max_length=128, query_instruction="Query: ")
    return {"m3": m3_embedder(models), "minilm": dense}


@pytest.fixture(scope="module")
def rerankers(models) -> dict[str, Reranker]:
    return {"rr": reranker(models), "rr-xlmr": Reranker(models.xlmr_reranker, precision="fp32", max_length=128)}


@pytest.fixture(scope="module")
def app(embedders, rerankers):
    return create_app(embedders, rerankers, settings=ServerSettings())


@pytest.fixture(scope="module")
def url(app):
    with serve(app) as base:
        yield base


@pytest.fixture()
def http(url):
    with httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return paragraphs[:5]


@pytest.mark.parametrize("name", ["m3", "minilm"])
def test_openai_sdk_routes_each_model_by_name(url, embedders, texts, name):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", http_client=httpx.Client(trust_env=False))
    docs = client.embeddings.create(model=name, input=texts)
    assert docs.model == name
    np.testing.assert_array_equal(
        np.asarray([d.embedding for d in docs.data], np.float32), embedders[name].encode_documents(texts)
    )
    queries = client.embeddings.create(model=f"{name}-query", input=QUERIES)  # the query alias, per model
    np.testing.assert_array_equal(
        np.asarray([d.embedding for d in queries.data], np.float32), embedders[name].encode_queries(QUERIES)
    )
    with pytest.raises(openai.NotFoundError, match="'m3', 'minilm'"):
        client.embeddings.create(model="bge-large", input="x")


@pytest.mark.parametrize("name", ["m3", "minilm"])
def test_cohere_client_v2_routes_each_model_by_name(url, embedders, rerankers, texts, name):
    with httpx.Client(trust_env=False) as session:
        co = cohere.ClientV2(api_key="unused", base_url=url, httpx_client=session)
        got = co.embed(model=name, texts=QUERIES, input_type="search_query", embedding_types=["float"])
        np.testing.assert_array_equal(
            np.asarray(got.embeddings.float_, np.float32), embedders[name].encode_queries(QUERIES)
        )
        for rr_name, rr in rerankers.items():
            response = co.rerank(model=rr_name, query="exceptions", documents=texts)
            expected = rr.rerank("exceptions", texts, normalize=True)
            assert [(r.index, r.relevance_score) for r in response.results] == [(r.index, r.score) for r in expected]
        with pytest.raises(cohere.errors.NotFoundError, match="'m3', 'minilm'"):
            co.embed(model="bge-large", texts=["x"], input_type="search_document", embedding_types=["float"])
        with pytest.raises(cohere.errors.NotFoundError, match="'rr', 'rr-xlmr'"):
            co.rerank(model="bge-reranker-large", query="q", documents=["a"])


def test_other_families_route_on_model(http, embedders, rerankers, texts):
    minilm, xlmr = embedders["minilm"], rerankers["rr-xlmr"]
    body = http.post("/embeddings", json={"model": "minilm", "input": texts}).json()  # Infinity
    got = np.asarray([d["embedding"] for d in body["data"]], np.float32)
    np.testing.assert_array_equal(got, minilm.encode_documents(texts))
    encoded = http.post("/v1/encode", json={"model": "minilm-query", "input": QUERIES}).json()  # native
    np.testing.assert_array_equal(
        np.asarray([d["dense"] for d in encoded["data"]], np.float32), minilm.encode_queries(QUERIES)
    )
    sparse = http.post("/v1/encode", json={"model": "minilm", "input": "x", "sparse": True})
    assert sparse.status_code == 400 and sparse.json()["error"]["code"] == "missing_head"  # M3's heads are m3's only
    assert http.post("/v1/encode", json={"model": "m3", "input": "x", "sparse": True}).status_code == 200
    for path in ("/rerank", "/v1/rerank"):  # Infinity, Cohere v1 / Jina
        ranked = http.post(path, json={"model": "rr-xlmr", "query": "q", "documents": texts}).json()
        assert ranked["model"] == "rr-xlmr"
        expected = xlmr.score([("q", t) for t in texts], normalize=True)
        assert sorted((r["index"], r["relevance_score"]) for r in ranked["results"]) == list(enumerate(expected))
    # TEI has no model field: its routes use the first model of each kind.
    np.testing.assert_array_equal(
        np.asarray(http.post("/embed", json={"inputs": texts}).json(), np.float32),
        embedders["m3"].encode_documents(texts),
    )
    tei = http.post("/rerank", json={"query": "q", "texts": texts}).json()
    expected = rerankers["rr"].score([("q", t) for t in texts], normalize=True)
    assert sorted((r["index"], r["score"]) for r in tei) == list(enumerate(expected))
    # No model field: the first model of each kind.
    assert http.post("/v1/embeddings", json={"input": "x"}).json()["model"] == "m3"
    assert http.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).json()["model"] == "rr"


@pytest.mark.parametrize(
    ("path", "body", "names"),
    [
        ("/v1/embeddings", {"input": "x"}, "'m3', 'minilm'"),  # OpenAI
        ("/embeddings", {"input": "x"}, "'m3', 'minilm'"),  # Infinity
        ("/v1/encode", {"input": "x"}, "'m3', 'minilm'"),  # native
        ("/v2/embed", {"texts": ["x"], "input_type": "search_document"}, "'m3', 'minilm'"),  # Cohere v2
        ("/v2/rerank", {"query": "q", "documents": ["a"]}, "'rr', 'rr-xlmr'"),
        ("/v1/rerank", {"query": "q", "documents": ["a"]}, "'rr', 'rr-xlmr'"),  # Cohere v1 / Jina
        ("/rerank", {"query": "q", "documents": ["a"]}, "'rr', 'rr-xlmr'"),  # Infinity
    ],
)
def test_an_unknown_model_is_a_404_in_the_family_shape(http, path, body, names):
    response = http.post(path, json={**body, "model": "nope"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model" and names in error["message"]


def test_model_lists_info_and_metrics_name_every_model(http):
    for path in ("/v1/models", "/models"):
        listed = {m["id"]: m["capabilities"] for m in http.get(path).json()["data"]}
        assert listed == {"m3": ["embed"], "minilm": ["embed"], "rr": ["rerank"], "rr-xlmr": ["rerank"]}
    info = http.get("/info").json()
    assert info["model_id"] == "m3" and info["embedding_model"]["id"] == "m3"
    assert [m["id"] for m in info["embedding_models"]] == ["m3", "minilm"]
    assert [m["query_alias"] for m in info["embedding_models"]] == ["m3-query", "minilm-query"]
    assert [m["outputs"]["sparse"] for m in info["embedding_models"]] == [True, False]
    assert [m["id"] for m in info["rerankers"]] == ["rr", "rr-xlmr"]
    http.post("/v1/embeddings", json={"model": "minilm", "input": "x"})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(http.get("/metrics").text)
        for s in family.samples
    }
    assert samples[("bge_rag_batch_items_count", (("model", "embedder"), ("name", "minilm")))] >= 1
    for kind, name in (("embedder", "m3"), ("embedder", "minilm"), ("reranker", "rr"), ("reranker", "rr-xlmr")):
        assert (("bge_rag_queue_items", (("model", kind), ("name", name)))) in samples


def test_a_flood_on_one_model_does_not_delay_another(app, url, paragraphs):
    """Many concurrent large requests on m3; a one-word request on minilm keeps its latency."""
    flood_batcher = app.state.service.embedders["m3"].batcher
    long_texts = [" ".join(paragraphs[i : i + 4]) for i in range(32)]

    def tiny(client: httpx.Client) -> float:
        started = time.perf_counter()
        response = client.post("/v1/embeddings", json={"model": "minilm", "input": "hello"})
        assert response.status_code == 200
        return time.perf_counter() - started

    with httpx.Client(base_url=url, trust_env=False, timeout=120) as client:
        tiny(client)  # warm
        alone = min(tiny(client) for _ in range(5))

        def flood() -> None:
            with httpx.Client(base_url=url, trust_env=False, timeout=120) as c:
                assert c.post("/v1/embeddings", json={"model": "m3", "input": long_texts}).status_code == 200

        with ThreadPoolExecutor(6) as pool:
            floods = [pool.submit(flood) for _ in range(6)]
            deadline = time.monotonic() + 60
            while flood_batcher.queued_items < 64 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert flood_batcher.queued_items >= 64, "the flood never queued"
            busy = [tiny(client) for _ in range(5)]
            assert flood_batcher.queued_items > 0, "the flood was over before the tiny requests were answered"
            for f in floods:
                f.result()
    assert max(busy) < max(10 * alone, 0.5), (alone, busy)


def test_served_names_must_be_told_apart(embedders, rerankers):
    with pytest.raises(ConfigError, match="Two models are served as 'm3'"):
        create_app({"m3": embedders["m3"]}, {"m3": rerankers["rr"]})
    with pytest.raises(ConfigError, match="query alias of the embedding model 'm3'"):
        create_app(embedders, {"m3-query": rerankers["rr"]})
    with pytest.raises(ConfigError, match="settings.model_name names a single model"):
        create_app(embedders, settings=ServerSettings(model_name="x"))

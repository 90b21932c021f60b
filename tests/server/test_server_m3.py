"""/v1/encode, the BGE-M3 extension: dense, sparse and ColBERT outputs equal Embedder.encode."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from _server_support import m3_embedder, serve_engines

from bge_core import Embedder, SparseVector


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    return m3_embedder(models)


@pytest.fixture(scope="module")
def http(embedder):
    with serve_engines(embedder) as url, httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return paragraphs[10:16]


@pytest.mark.parametrize("kind", ["document", "query"])
def test_all_three_outputs(http, embedder, texts, kind):
    payload = {"input": texts, "input_type": kind, "dense": True, "sparse": True, "colbert": True}
    response = http.post("/v1/encode", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = embedder.encode(texts, kind=kind, dense=True, sparse=True, colbert=True)
    assert [item["index"] for item in body["data"]] == list(range(len(texts)))
    for item, dense, sparse, colbert in zip(
        body["data"], expected.dense, expected.sparse, expected.colbert, strict=True
    ):
        np.testing.assert_array_equal(np.asarray(item["dense"], np.float32), dense)
        assert SparseVector(item["sparse"]["indices"], item["sparse"]["values"]) == sparse
        np.testing.assert_array_equal(np.asarray(item["colbert"], np.float32), colbert)
        assert item["colbert_shape"] == list(colbert.shape)
    assert body["usage"]["prompt_tokens"] > 0


def test_sparse_only_with_top_tokens(http, embedder, texts):
    body = http.post("/v1/encode", json={"input": texts, "dense": False, "sparse": True, "sparse_top_tokens": 5}).json()
    sparse = embedder.encode(texts, dense=False, sparse=True).sparse
    for item, vector in zip(body["data"], sparse, strict=True):
        assert "dense" not in item and "colbert" not in item
        assert [tuple(pair) for pair in item["sparse"]["tokens"]] == embedder.decode_sparse(vector, 5)


def test_base64_dense_and_colbert(http, embedder, texts):
    payload = {"input": texts[:2], "colbert": True, "encoding_format": "base64"}
    body = http.post("/v1/encode", json=payload).json()
    expected = embedder.encode(texts[:2], colbert=True)
    for item, dense, colbert in zip(body["data"], expected.dense, expected.colbert, strict=True):
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(item["dense"]), "<f4"), dense)
        matrix = np.frombuffer(base64.b64decode(item["colbert"]), "<f4").reshape(item["colbert_shape"])
        np.testing.assert_array_equal(matrix, colbert)


def test_info_reports_the_heads(http, embedder):
    info = http.get("/info").json()
    assert info["embedding_model"]["outputs"] == {"dense": True, "sparse": True, "colbert": True}
    assert info["embedding_model"]["dimension"] == embedder.dimension
    assert info["reranker"] is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"input": "x", "dense": False}, "at least one of 'dense', 'sparse' or 'colbert'"),
        ({"input": "x", "sparse_top_tokens": 3}, "needs 'sparse': true"),
        ({"input": "x", "sparse": "yes"}, "'sparse': Input should be a valid boolean"),
        ({"input": "x", "input_type": "passages"}, "'input_type': Input should be"),
    ],
)
def test_bad_encode_requests_are_400(http, payload, message):
    response = http.post("/v1/encode", json=payload)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_a_model_without_heads_says_so(models):
    dense_only = Embedder(models.dense, precision="fp32", max_length=64)
    with serve_engines(dense_only) as url, httpx.Client(base_url=url, trust_env=False) as client:
        response = client.post("/v1/encode", json={"input": "x", "sparse": True})
        assert response.status_code == 400
        assert "no sparse head" in response.json()["error"]["message"]
        assert client.get("/info").json()["embedding_model"]["outputs"]["colbert"] is False
        assert client.post("/v1/encode", json={"input": "x"}).status_code == 200

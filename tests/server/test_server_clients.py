"""The real clients of TEI, Cohere v2, Infinity and OpenAI-like APIs, pointed at the server by URL only.

One server (the BGE-M3 fixture with its heads, and the reranker fixture) serves the whole module;
every answer is compared with what ``Embedder`` / ``Reranker`` compute in the test.
"""

from __future__ import annotations

import base64

import cohere
import httpx
import huggingface_hub.constants
import numpy as np
import openai
import pytest
from _server_support import QUERY_INSTRUCTION, m3_embedder, reranker, serve_engines
from haystack import Document
from haystack.components.embedders import OpenAITextEmbedder
from haystack.utils import Secret
from haystack_integrations.components.embedders.huggingface_api import (
    HuggingFaceAPIDocumentEmbedder,
    HuggingFaceAPITextEmbedder,
)
from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker, TruncationDirection
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from langchain_openai import OpenAIEmbeddings
from llama_index.embeddings.openai_like import OpenAILikeEmbedding
from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

from bge_core import Embedder, Reranker, sigmoid

NAME = "bge-test"


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    return m3_embedder(models)


@pytest.fixture(scope="module")
def raw_embedder(models) -> Embedder:
    """The same model without L2 normalization (TEI's ``normalize: false``)."""
    return m3_embedder(models, normalize=False)


@pytest.fixture(scope="module")
def rr(models) -> Reranker:
    return reranker(models)


@pytest.fixture(scope="module")
def url(embedder, rr):
    with serve_engines(embedder, rr, model_name=NAME, reranker_name="rerank-test") as base:
        yield base


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return [*paragraphs[:5], "Grüße aus Köln — 北京欢迎你"]


@pytest.fixture(scope="module")
def long_text(paragraphs) -> str:
    return " ".join(paragraphs[:12])  # far more than the fixture's max_length of 128 tokens


QUERIES = ["what is a panda?", "how do I open a file?"]


def _no_proxy(monkeypatch) -> None:
    # requests / huggingface_hub read proxy settings from the environment; the server is local.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # huggingface_hub refuses every URL, a local server's too, while HF_HUB_OFFLINE=1 (conftest sets
    # it; sockets beyond loopback stay blocked by conftest all the same).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def _in_batches(embedder: Embedder, texts: list[str], size: int) -> np.ndarray:
    """What a client that sends ``size`` texts per request gets (padding differs per batch)."""
    return np.concatenate([embedder.encode_documents(texts[i : i + size]) for i in range(0, len(texts), size)])


# ---------------------------------------------------------------------------- TEI
@pytest.mark.slow
def test_huggingface_hub_feature_extraction(url, embedder, raw_embedder, texts, long_text, monkeypatch):
    _no_proxy(monkeypatch)
    client = InferenceClient(model=url)
    np.testing.assert_array_equal(client.feature_extraction(texts), embedder.encode_documents(texts))
    np.testing.assert_array_equal(client.feature_extraction(texts[0])[0], embedder.encode_documents(texts[0]))
    np.testing.assert_array_equal(
        client.feature_extraction(QUERIES, prompt_name="query"), embedder.encode_queries(QUERIES)
    )
    np.testing.assert_array_equal(
        client.feature_extraction(texts, normalize=False), raw_embedder.encode_documents(texts)
    )
    # truncate=True (and right) cuts at max_length as the engine does; truncate=False refuses, as TEI does.
    np.testing.assert_array_equal(
        client.feature_extraction([long_text], truncate=True, truncation_direction="right"),
        embedder.encode_documents([long_text]),
    )
    with pytest.raises(HfHubHTTPError, match="more than max_length=128") as refused:
        client.feature_extraction([long_text], truncate=False)
    assert refused.value.response.status_code == 413
    with pytest.raises(HfHubHTTPError, match="'left' is not supported") as refused:
        client.feature_extraction([long_text], truncate=True, truncation_direction="left")
    assert refused.value.response.status_code == 400
    # Left truncation of texts that need no cutting is no cutting at all.
    np.testing.assert_array_equal(
        client.feature_extraction(texts[:2], truncation_direction="left"), embedder.encode_documents(texts[:2])
    )


def test_tei_root_route_dimensions_and_errors(url, embedder, models, texts):
    with httpx.Client(base_url=url, trust_env=False) as http:
        body = http.post("/", json={"inputs": texts, "dimensions": 64}).json()
        np.testing.assert_allclose(body, m3_embedder(models, truncate_dim=64).encode_documents(texts), atol=1e-6)
        bad = http.post("/embed", json={"inputs": "x", "prompt_name": "questions"})
        assert bad.status_code == 400
        assert bad.json()["error_type"] == "Validation" and "Unknown 'prompt_name'" in bad.json()["error"]
        misspelt = http.post("/embed", json={"inputs": "x", "normalise": False})
        assert misspelt.status_code == 400 and "Unrecognized request argument 'normalise'" in misspelt.json()["error"]


def test_tei_embed_sparse(url, embedder, texts):
    with httpx.Client(base_url=url, trust_env=False) as http:
        body = http.post("/embed_sparse", json={"inputs": texts}).json()
    expected = embedder.encode(texts, dense=False, sparse=True).sparse
    for got, want in zip(body, expected, strict=True):
        assert {item["index"]: item["value"] for item in got} == pytest.approx(want.to_dict(), abs=0, rel=0)


def test_tei_tokenize_decode_and_info(url, embedder, texts):
    tokenizer = embedder.tokenizer
    with httpx.Client(base_url=url, trust_env=False) as http:
        tokens = http.post("/tokenize", json={"inputs": texts[:2]}).json()
        ids = [[t["id"] for t in row] for row in tokens]
        assert ids == tokenizer(texts[:2])["input_ids"]
        assert [t["special"] for t in tokens[0]][0] is True and tokens[0][1]["text"] == texts[0][
            tokens[0][1]["start"] : tokens[0][1]["stop"]
        ]
        decoded = http.post("/decode", json={"ids": ids}).json()
        assert decoded == tokenizer.batch_decode(ids, skip_special_tokens=True)
        assert http.post("/decode", json={"ids": [10**9]}).status_code == 400
        info = http.get("/info").json()
    assert info["model_id"] == NAME and info["max_input_length"] == embedder.max_length
    assert info["model_type"] == {"embedding": {"pooling": embedder.pooling}}
    assert info["max_client_batch_size"] == 2048 and info["auto_truncate"] is True


def test_llamaindex_text_embeddings_inference(url, embedder, texts):
    tei = TextEmbeddingsInference(
        model_name=NAME,
        base_url=url,
        query_instruction=QUERY_INSTRUCTION.strip(),
        text_instruction="",
        embed_batch_size=4,
    )
    np.testing.assert_array_equal(
        np.asarray(tei.get_text_embedding_batch(texts), np.float32), _in_batches(embedder, texts, 4)
    )
    # The client puts the instruction before the query itself (with a space the tokenizer drops).
    np.testing.assert_array_equal(
        np.asarray(tei.get_query_embedding(QUERIES[0]), np.float32), embedder.encode_queries(QUERIES[0])
    )


async def test_llamaindex_text_embeddings_inference_async(url, embedder, texts):
    tei = TextEmbeddingsInference(model_name=NAME, base_url=url, text_instruction="")
    got = await tei.aget_text_embedding_batch(texts)
    np.testing.assert_array_equal(np.asarray(got, np.float32), embedder.encode_documents(texts))


def test_haystack_tei_embedders(url, embedder, raw_embedder, texts, monkeypatch):
    _no_proxy(monkeypatch)
    api = {"api_type": "text_embeddings_inference", "api_params": {"url": url}}
    text = HuggingFaceAPITextEmbedder(**api)  # Haystack's default: normalize=False, truncate=True
    np.testing.assert_array_equal(
        np.asarray(text.run(text=QUERIES[0])["embedding"], np.float32), raw_embedder.encode_documents(QUERIES[0])
    )
    normalized = HuggingFaceAPITextEmbedder(**api, normalize=True)
    np.testing.assert_array_equal(
        np.asarray(normalized.run(text=QUERIES[0])["embedding"], np.float32), embedder.encode_documents(QUERIES[0])
    )
    docs = HuggingFaceAPIDocumentEmbedder(**api, normalize=True, batch_size=4)
    out = docs.run(documents=[Document(content=t) for t in texts])["documents"]
    np.testing.assert_array_equal(np.asarray([d.embedding for d in out], np.float32), _in_batches(embedder, texts, 4))


@pytest.mark.parametrize("direction", [None, TruncationDirection.RIGHT])
def test_haystack_tei_ranker(url, rr, texts, direction):
    ranker = HuggingFaceTEIRanker(url=url, top_k=3)
    query = "How do I handle an exception?"
    out = ranker.run(query=query, documents=[Document(content=t) for t in texts], truncation_direction=direction)
    scores = [sigmoid(s) for s in rr.score([(query, t) for t in texts])]
    best = sorted(range(len(texts)), key=lambda i: -scores[i])[:3]
    assert [d.content for d in out["documents"]] == [texts[i] for i in best]
    assert [d.score for d in out["documents"]] == [scores[i] for i in best]


def test_haystack_tei_ranker_left_truncation_is_refused(url, texts):
    ranker = HuggingFaceTEIRanker(url=url, top_k=3)
    with pytest.raises(RuntimeError, match="(?s)400 Bad Request.*'left' is not supported for rerank"):
        ranker.run(
            query="q", documents=[Document(content=t) for t in texts], truncation_direction=TruncationDirection.LEFT
        )


# ---------------------------------------------------------------------------- Cohere v2
@pytest.fixture()
def co(url):
    with httpx.Client(trust_env=False) as http:
        yield cohere.ClientV2(api_key="unused", base_url=url, httpx_client=http)


def test_cohere_v2_embed(co, embedder, models, texts):
    queries = co.embed(model=NAME, texts=QUERIES, input_type="search_query", embedding_types=["float"])
    np.testing.assert_array_equal(np.asarray(queries.embeddings.float_, np.float32), embedder.encode_queries(QUERIES))
    docs = co.embed(
        model=NAME, texts=texts, input_type="search_document", embedding_types=["float", "base64"], output_dimension=64
    )
    truncated = m3_embedder(models, truncate_dim=64).encode_documents(texts)
    np.testing.assert_allclose(np.asarray(docs.embeddings.float_, np.float32), truncated, atol=1e-6)
    decoded = [np.frombuffer(base64.b64decode(b), "<f4") for b in docs.embeddings.base64]
    np.testing.assert_array_equal(np.stack(decoded), np.asarray(docs.embeddings.float_, np.float32))
    assert docs.meta.billed_units.input_tokens > 0  # quantized types: test_server_quantized.py


def test_cohere_v2_rerank(co, rr, texts):
    query = "How do I handle an exception?"
    response = co.rerank(model="rerank-test", query=query, documents=texts, top_n=3)
    ranked = rr.rerank(query, texts, top_k=3, normalize=True)
    assert [(r.index, r.relevance_score) for r in response.results] == [(r.index, r.score) for r in ranked]


# ---------------------------------------------------------------------------- Infinity
def test_infinity_routes(url, embedder, rr, texts):
    with httpx.Client(trust_env=False) as http:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, http_client=http)  # no /v1
        response = client.embeddings.create(
            model=NAME, input=texts, encoding_format="float", extra_body={"modality": "text"}
        )
        np.testing.assert_array_equal(
            np.asarray([d.embedding for d in response.data], np.float32), embedder.encode_documents(texts)
        )
        raw = http.post(f"{url}/embeddings", json={"input": texts[:1], "dimensions": 0}).json()
        assert raw["usage"]["prompt_tokens"] > 0 and isinstance(raw["created"], int) and raw["id"]
        np.testing.assert_array_equal(
            np.asarray(raw["data"][0]["embedding"], np.float32), embedder.encode_documents(texts[0])
        )
        image = http.post(f"{url}/embeddings", json={"input": ["x"], "modality": "image"})
        assert image.status_code == 400 and "text only" in image.json()["error"]["message"]
        models = http.get(f"{url}/models").json()["data"]
        assert [(m["id"], m["capabilities"]) for m in models] == [(NAME, ["embed"]), ("rerank-test", ["rerank"])]
        query = "How do I handle an exception?"
        body = http.post(
            f"{url}/rerank", json={"query": query, "documents": texts, "return_documents": True, "top_n": 2}
        ).json()
    ranked = rr.rerank(query, texts, top_k=2, normalize=True)
    assert [(r["index"], r["relevance_score"], r["document"]) for r in body["results"]] == [
        (r.index, r.score, r.text) for r in ranked
    ]
    assert body["object"] == "rerank" and isinstance(body["created"], int)


# ---------------------------------------------------------------------------- queries from OpenAI-shaped clients
def test_llamaindex_openai_like_query_path(url, embedder, texts):
    common = {"model_name": NAME, "api_key": "unused", "max_retries": 0, "http_client": httpx.Client(trust_env=False)}
    queries = OpenAILikeEmbedding(**common, api_base=f"{url}/query/v1")
    documents = OpenAILikeEmbedding(**common, api_base=f"{url}/v1")
    np.testing.assert_array_equal(
        np.asarray(queries.get_query_embedding(QUERIES[0]), np.float32), embedder.encode_queries(QUERIES[0])
    )
    np.testing.assert_array_equal(
        np.asarray(documents.get_text_embedding_batch(texts), np.float32), embedder.encode_documents(texts)
    )


def test_langchain_openai_query_model_alias(url, embedder, texts):
    def make(model: str) -> OpenAIEmbeddings:
        return OpenAIEmbeddings(
            model=model,
            base_url=f"{url}/v1",
            api_key="unused",
            check_embedding_ctx_length=False,
            max_retries=0,
            http_client=httpx.Client(trust_env=False),
        )

    np.testing.assert_array_equal(
        np.asarray(make(f"{NAME}-query").embed_query(QUERIES[0]), np.float32), embedder.encode_queries(QUERIES[0])
    )
    np.testing.assert_array_equal(
        np.asarray(make(NAME).embed_documents(texts), np.float32), embedder.encode_documents(texts)
    )


def test_haystack_openai_text_embedder_query_path(url, embedder, monkeypatch):
    _no_proxy(monkeypatch)
    text = OpenAITextEmbedder(
        api_key=Secret.from_token("unused"), model=NAME, api_base_url=f"{url}/query/v1", max_retries=0
    )
    np.testing.assert_array_equal(
        np.asarray(text.run(text=QUERIES[0])["embedding"], np.float32), embedder.encode_queries(QUERIES[0])
    )


def test_query_path_refuses_document_input_type(url):
    with httpx.Client(trust_env=False) as http:
        response = http.post(f"{url}/query/v1/embeddings", json={"input": "x", "input_type": "document"})
    assert response.status_code == 400 and "serves queries" in response.json()["error"]["message"]

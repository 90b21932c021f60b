"""/v1/embeddings with the real OpenAI client and LangChain's OpenAIEmbeddings: exactly Embedder's outputs."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
from _server_support import m3_embedder, serve_engines
from langchain_openai import OpenAIEmbeddings

from bge_core import Embedder


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    return m3_embedder(models)


@pytest.fixture(scope="module")
def url(embedder):
    with serve_engines(embedder, model_name="bge-test") as base:
        yield base


@pytest.fixture()
def client(url):
    with httpx.Client(trust_env=False) as http:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, http_client=http)


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return [*paragraphs[:6], "", "Grüße aus Köln — 北京欢迎你 🙂"]


def _matrix(response) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_default_request_is_base64_and_equals_encode_documents(client, embedder, texts):
    # The OpenAI client asks for base64 unless told otherwise, and decodes it as float32.
    response = client.embeddings.create(model="any-name", input=texts)
    np.testing.assert_array_equal(_matrix(response), embedder.encode_documents(texts))
    assert [item.index for item in response.data] == list(range(len(texts)))
    assert response.model == "bge-test"


def test_float_format_and_token_usage(client, embedder, texts):
    response = client.embeddings.create(model="bge-test", input=texts, encoding_format="float")
    np.testing.assert_array_equal(_matrix(response), embedder.encode_documents(texts))
    counts = embedder.tokenizer(texts, truncation=True, max_length=embedder.max_length)["input_ids"]
    assert response.usage.prompt_tokens == response.usage.total_tokens == sum(len(ids) for ids in counts)


def test_explicit_base64_is_little_endian_float32(client, embedder, texts):
    response = client.embeddings.create(model="bge-test", input=texts[:3], encoding_format="base64")
    for item, expected in zip(response.data, embedder.encode_documents(texts[:3]), strict=True):
        assert isinstance(item.embedding, str)
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(item.embedding), dtype="<f4"), expected)


def test_single_string_input(client, embedder):
    response = client.embeddings.create(model="bge-test", input="what is BGE?")
    assert len(response.data) == 1
    np.testing.assert_array_equal(
        np.asarray(response.data[0].embedding, np.float32), embedder.encode_documents("what is BGE?")
    )


def test_dimensions_equal_an_embedder_with_truncate_dim(client, models, texts):
    response = client.embeddings.create(model="bge-test", input=texts, dimensions=64)
    got = _matrix(response)
    assert got.shape == (len(texts), 64)
    truncated = m3_embedder(models, truncate_dim=64).encode_documents(texts)
    np.testing.assert_allclose(got, truncated, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_input_type_query_applies_the_query_instruction(client, embedder, texts):
    queries = ["what is a panda?", "how do I open a file?"]
    response = client.embeddings.create(model="bge-test", input=queries, extra_body={"input_type": "query"})
    np.testing.assert_array_equal(_matrix(response), embedder.encode_queries(queries))
    cohere_style = client.embeddings.create(model="bge-test", input=queries, extra_body={"input_type": "search_query"})
    np.testing.assert_array_equal(_matrix(cohere_style), embedder.encode_queries(queries))
    assert not np.array_equal(_matrix(response), embedder.encode_documents(queries))


def test_models_list(client):
    assert [m.id for m in client.models.list().data] == ["bge-test"]


def test_client_error_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError, match="384 dimensions"):
        client.embeddings.create(model="bge-test", input="x", dimensions=1000)


def _langchain(url: str, **options) -> OpenAIEmbeddings:
    return OpenAIEmbeddings(
        model="bge-test",
        base_url=f"{url}/v1",
        api_key="unused",
        check_embedding_ctx_length=False,
        max_retries=0,
        http_client=httpx.Client(trust_env=False),
        http_async_client=httpx.AsyncClient(trust_env=False),
        **options,
    )


def test_langchain_openai_embeddings(url, embedder, texts):
    lc = _langchain(url)
    got = lc.embed_documents(texts)
    assert all(type(x) is float for x in got[0])
    np.testing.assert_array_equal(np.asarray(got, np.float32), embedder.encode_documents(texts))
    np.testing.assert_array_equal(np.asarray(lc.embed_query(texts[0]), np.float32), embedder.encode_documents(texts[0]))
    # Queries with the model's query instruction: a second instance that sends input_type.
    lc_queries = _langchain(url, model_kwargs={"extra_body": {"input_type": "query"}})
    np.testing.assert_array_equal(
        np.asarray(lc_queries.embed_query("what is a panda?"), np.float32), embedder.encode_queries("what is a panda?")
    )


async def test_langchain_openai_embeddings_async(url, embedder, texts):
    got = await _langchain(url).aembed_documents(texts)
    np.testing.assert_array_equal(np.asarray(got, np.float32), embedder.encode_documents(texts))


def test_a_query_alias_of_another_name_is_refused_not_answered_as_documents(client, url, embedder, texts):
    # "bge-test-query" asks for queries; a "-query" name that is not this server's alias (the short
    # name of a hub id, a typo) must not be answered with document vectors.
    ok = client.embeddings.create(model="bge-test-query", input=texts[:2], encoding_format="float")
    np.testing.assert_array_equal(_matrix(ok), embedder.encode_queries(texts[:2]))
    with pytest.raises(openai.NotFoundError) as raised:
        client.embeddings.create(model="bge-m3-query", input=texts[:2])
    assert "bge-test-query" in str(raised.value) and raised.value.body["code"] == "model_not_found"
    with httpx.Client(trust_env=False) as http:
        cohere = http.post(
            f"{url}/v2/embed", json={"model": "other-query", "texts": ["x"], "input_type": "search_query"}
        )
    assert cohere.status_code == 404 and "bge-test-query" in cohere.text

"""Quantized embeddings: Cohere's ``embedding_types`` and Infinity's ``--embedding-dtype``.

Every answer is checked against sentence-transformers' ``quantize_embeddings`` of the server's
float vectors, with the ranges the docs promise: the calibration set (the default one, or the
file given), encoded as documents by the engine alone. The ranges never come from the request.
"""

from __future__ import annotations

import asyncio
import base64

import cohere
import httpx
import numpy as np
import openai
import pytest
from _server_support import m3_embedder, serve_engines
from sentence_transformers.util.quantization import quantize_embeddings as st_quantize

from bge_core import Embedder
from bge_core.errors import ConfigError
from bge_core.storage import calibration_ranges
from bge_rag.sample_data import python_docs_paragraphs
from bge_rag.server import ServerSettings, create_app
from bge_rag.server.quantization import Quantizer
from bge_rag.server.settings import DEFAULT_CALIBRATION_TEXTS
from bge_rag.server.work import truncate_dims

NAME = "bge-test"
QUANTIZED = ["int8", "uint8", "binary", "ubinary"]


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    return m3_embedder(models)


@pytest.fixture(scope="module")
def calibration(embedder) -> np.ndarray:
    """The default calibration set's vectors, as the docs define them."""
    return embedder.encode_documents(python_docs_paragraphs(limit=DEFAULT_CALIBRATION_TEXTS))


@pytest.fixture(scope="module")
def url(embedder):
    with serve_engines(embedder, model_name=NAME) as base:
        yield base


@pytest.fixture()
def co(url):
    with httpx.Client(trust_env=False, timeout=120) as http:
        yield cohere.ClientV2(api_key="unused", base_url=url, httpx_client=http)


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return [*paragraphs[200:206], "Grüße aus Köln — 北京欢迎你", "x"]


def _types(response, name: str) -> np.ndarray:
    dtype = {"float": np.float32, "int8": np.int8, "binary": np.int8, "uint8": np.uint8, "ubinary": np.uint8}[name]
    values = getattr(response.embeddings, "float_" if name == "float" else name)
    return np.asarray(values, dtype=dtype)


@pytest.mark.parametrize("input_type", ["search_document", "search_query"])
def test_cohere_embedding_types_equal_sentence_transformers(co, embedder, calibration, texts, input_type):
    response = co.embed(model=NAME, texts=texts, input_type=input_type, embedding_types=["float", *QUANTIZED])
    floats = _types(response, "float")
    expected = embedder.encode_queries(texts) if input_type == "search_query" else embedder.encode_documents(texts)
    np.testing.assert_array_equal(floats, expected)
    ranges = calibration_ranges(calibration)  # queries use the documents' ranges: their codes compare
    for name in QUANTIZED:
        codes = _types(response, name)
        np.testing.assert_array_equal(codes, st_quantize(floats, precision=name, ranges=ranges), err_msg=name)
        assert codes.shape[1] == (floats.shape[1] if name.endswith("int8") else floats.shape[1] // 8)


def test_cohere_codes_do_not_depend_on_the_other_texts(co, calibration, texts):
    alone = [co.embed(model=NAME, texts=[t], input_type="search_document", embedding_types=QUANTIZED) for t in texts]
    together = co.embed(model=NAME, texts=texts, input_type="search_document", embedding_types=["float", *QUANTIZED])
    reversed_ = co.embed(model=NAME, texts=texts[::-1], input_type="search_document", embedding_types=QUANTIZED)
    for name in QUANTIZED:
        codes = _types(together, name)
        np.testing.assert_array_equal(np.concatenate([_types(a, name) for a in alone]), codes, err_msg=name)
        np.testing.assert_array_equal(_types(reversed_, name)[::-1], codes, err_msg=name)
    # ranges taken from the request's own vectors would give other codes: the fixed ranges matter
    floats = _types(together, "float")
    assert not np.array_equal(st_quantize(floats, "int8", calibration_embeddings=floats), _types(together, "int8"))
    np.testing.assert_array_equal(
        _types(together, "int8"), st_quantize(floats, "int8", ranges=calibration_ranges(calibration))
    )


def test_cohere_output_dimension_quantizes_the_truncated_vectors(co, embedder, calibration, texts):
    types = ["float", *QUANTIZED]
    response = co.embed(
        model=NAME, texts=texts, input_type="search_document", embedding_types=types, output_dimension=64
    )
    floats = _types(response, "float")
    assert floats.shape == (len(texts), 64)
    ranges = calibration_ranges(truncate_dims(calibration, 64, embedder.normalize))
    for name in QUANTIZED:
        np.testing.assert_array_equal(_types(response, name), st_quantize(floats, precision=name, ranges=ranges))


def test_cohere_types_keep_base64_and_bad_types_are_clear(url, co, texts):
    response = co.embed(model=NAME, texts=texts[:2], input_type="search_document", embedding_types=["base64", "int8"])
    assert response.embeddings.float_ is None and len(response.embeddings.int8) == 2
    decoded = np.stack([np.frombuffer(base64.b64decode(b), "<f4") for b in response.embeddings.base64])
    assert decoded.dtype == np.float32 and decoded.shape[0] == 2
    with httpx.Client(trust_env=False, timeout=120) as http:
        bad = http.post(f"{url}/v2/embed", json={"texts": ["a"], "embedding_types": ["int4"]})
    assert bad.status_code == 400
    message = bad.json()["error"]["message"]
    assert "embedding_types" in message and all(t in message for t in ["float", *QUANTIZED, "base64"]), message


# ---------------------------------------------------------------------------- Infinity's --embedding-dtype
@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory, paragraphs) -> tuple[str, list[str]]:
    texts = paragraphs[:48]
    path = tmp_path_factory.mktemp("calibration") / "calibration.txt"
    path.write_text("\n".join(["", *texts, "   "]) + "\n", encoding="utf-8")  # blank lines are skipped
    return str(path), texts


@pytest.mark.parametrize("dtype", QUANTIZED)
def test_infinity_embedding_dtype(embedder, calibration_file, texts, dtype):
    path, calibration_texts = calibration_file
    ranges = calibration_ranges(embedder.encode_documents(calibration_texts))
    with (
        serve_engines(embedder, model_name=NAME, embedding_dtype=dtype, quantization_calibration=path) as base,
        httpx.Client(trust_env=False, timeout=120) as http,
    ):
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, http_client=http)  # Infinity's paths
        response = client.embeddings.create(model=NAME, input=texts, encoding_format="float")
        codes = np.asarray([d.embedding for d in response.data])
        np.testing.assert_array_equal(codes, st_quantize(embedder.encode_documents(texts), dtype, ranges=ranges))
        alone = http.post(f"{base}/embeddings", json={"input": texts[3]}).json()["data"][0]["embedding"]
        assert alone == codes[3].tolist() and all(isinstance(v, int) for v in alone)
        # OpenAI's route is OpenAI's: float32 whatever the Infinity dtype
        floats = http.post(f"{base}/v1/embeddings", json={"input": texts[:1]}).json()["data"][0]["embedding"]
        np.testing.assert_array_equal(np.asarray(floats, np.float32), embedder.encode_documents(texts[0]))
        packed = http.post(f"{base}/embeddings", json={"input": texts[:2], "encoding_format": "base64"})
    if dtype.endswith("binary"):  # Infinity refuses base64 of bit-packed bytes; a 400 here, not its 500
        assert packed.status_code == 400 and "base64" in packed.json()["error"]["message"]
    else:  # Infinity's base64: the float32 bytes of the integer codes
        decoded = [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in packed.json()["data"]]
        np.testing.assert_array_equal(np.stack(decoded), codes[:2].astype(np.float32))


def test_infinity_dimensions_with_a_dtype(embedder, calibration_file, texts):
    path, calibration_texts = calibration_file
    ranges = calibration_ranges(truncate_dims(embedder.encode_documents(calibration_texts), 32, embedder.normalize))
    floats = truncate_dims(embedder.encode_documents(texts), 32, embedder.normalize)
    with (
        serve_engines(embedder, embedding_dtype="uint8", quantization_calibration=path) as base,
        httpx.Client(trust_env=False, timeout=120) as http,
    ):
        data = http.post(f"{base}/embeddings", json={"input": texts, "dimensions": 32}).json()["data"]
    np.testing.assert_array_equal(np.asarray([d["embedding"] for d in data]), st_quantize(floats, "uint8", ranges))


def test_bad_settings_fail_at_start(embedder, tmp_path):
    with pytest.raises(ConfigError, match="Cannot read the quantization calibration file"):
        create_app(embedder, settings=ServerSettings(quantization_calibration=str(tmp_path / "missing.txt")))
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="has no text"):
        create_app(embedder, settings=ServerSettings(quantization_calibration=str(tmp_path / "empty.txt")))
    with pytest.raises(ConfigError, match="Valid values are: float32, int8, uint8, binary, ubinary"):
        ServerSettings(embedding_dtype="int4")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- one calibration run per model
class _CountingEngine:
    """Stands in for an Embedder: counts calibration runs; the first ``fail`` runs raise."""

    normalize = True

    def __init__(self, fail: int = 0) -> None:
        self.calls = 0
        self.fail = fail

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("calibration failed")
        return np.arange(len(texts) * 16, dtype=np.float32).reshape(len(texts), 16) - 20


async def test_concurrent_first_requests_share_one_calibration_run():
    engine = _CountingEngine()
    quantizer = Quantizer(engine, ["a", "b", "c"])  # type: ignore[arg-type]
    vectors = np.ones((2, 16), np.float32)
    first = asyncio.ensure_future(quantizer.quantize(vectors, "int8"))
    await asyncio.sleep(0)
    first.cancel()  # its client left: the shared run goes on
    results = await asyncio.gather(*(quantizer.quantize(vectors, "uint8") for _ in range(5)))
    assert engine.calls == 1 and all(np.array_equal(r, results[0]) for r in results)
    await quantizer.quantize(vectors, "int8")
    assert engine.calls == 1


async def test_a_failed_calibration_is_retried_by_the_next_request():
    engine = _CountingEngine(fail=1)
    quantizer = Quantizer(engine, ["a", "b"])  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="calibration failed"):
        await quantizer.quantize(np.ones((1, 16), np.float32), "int8")
    assert (await quantizer.ranges(16)).shape == (2, 16) and engine.calls == 2
    assert (await quantizer.ranges(8)).shape == (2, 8) and engine.calls == 2  # truncated from the same run

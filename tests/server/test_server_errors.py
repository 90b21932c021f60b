"""Bad requests get the right 4xx with a clear message; overload gets 429/503; the server keeps serving.

Also: API key, CORS (off by default), request size limits, and the Prometheus metrics.
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from _server_support import m3_embedder, reranker, serve, serve_engines
from prometheus_client.parser import text_string_to_metric_families

from bge_core import Embedder
from bge_rag.server import ServerSettings, create_app
from bge_rag.server.errors import FamilyRoute
from bge_rag.server.service import served_name

LIMITS = {"max_inputs": 8, "max_input_chars": 2000, "max_body_bytes": 50_000}


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    return m3_embedder(models, max_length=64)


@pytest.fixture(scope="module")
def http(embedder, models):
    with (
        serve_engines(embedder, reranker(models, max_length=64), **LIMITS) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=30) as client,
    ):
        yield client


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] and error["message"]
    return error["message"]


def _still_serving(client: httpx.Client, embedder: Embedder) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    response = client.post("/v1/embeddings", json={"input": ["still here"]})
    assert response.status_code == 200
    np.testing.assert_array_equal(
        np.asarray(response.json()["data"][0]["embedding"], np.float32), embedder.encode_documents("still here")
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"input": []}, "'input' must not be empty"),
        ({"model": "m"}, "Missing required argument 'input'"),
        ({"input": 5}, "'input' must be a string or a list of strings, got a number"),
        ({"input": {"text": "x"}}, "got an object"),
        ({"input": ["a", None]}, "'input[1]' is null, expected a string"),
        ({"input": ["a", True]}, "'input[1]' is a boolean"),
        ({"input": [101, 2023, 102]}, "holds token ids"),
        ({"input": [[101, 2023], [102]]}, "check_embedding_ctx_length=False"),
        ({"input": "x", "encoding_format": "binary"}, "'encoding_format': Input should be 'float' or 'base64'"),
        ({"input": "x", "dimensions": 0}, "'dimensions' must be a positive integer"),
        ({"input": "x", "dimensions": "8"}, "'dimensions': Input should be a valid integer"),
        ({"input": "x", "dimensions": 8.5}, "'dimensions': Input should be a valid integer"),
        ({"input": "x", "dimensions": 385}, "this model's vectors have 384 dimensions"),
        ({"input": "x", "input_type": "question"}, "'input_type': Input should be"),
        ({"input": "x", "dimension": 8}, "Unrecognized request argument 'dimension'"),
    ],
)
def test_bad_embedding_requests_are_400(http, embedder, payload, message):
    assert message in _error(http.post("/v1/embeddings", json=payload), 400)


@pytest.mark.parametrize(
    ("content", "headers", "message"),
    [
        (b'{"input": ["a", ', {"content-type": "application/json"}, "Malformed JSON body"),
        (b"[1, 2]", {"content-type": "application/json"}, "must be a JSON object"),
        (b"", {"content-type": "application/json"}, "must be a JSON object"),
        (b'{"input": "a"}', {"content-type": "text/plain"}, "Content-Type: application/json"),
        (b'{"input": "\xff\xfe"}', {"content-type": "application/json"}, "Malformed JSON body"),
        (b'{"input": ["ok", "a\\ud800"]}', {"content-type": "application/json"}, "'input[1]' is not valid Unicode"),
        (b"[" * 20_000 + b"]" * 20_000, {"content-type": "application/json"}, "Malformed JSON body"),
    ],
)
def test_malformed_bodies_are_400(http, embedder, content, headers, message):
    assert message in _error(http.post("/v1/embeddings", content=content, headers=headers), 400)
    _still_serving(http, embedder)


def test_size_limits_are_413(http, embedder):
    too_many = http.post("/v1/embeddings", json={"input": ["x"] * 9})
    assert "'input' has 9 items; this server takes at most 8" in _error(too_many, 413)
    too_long = http.post("/v1/embeddings", json={"input": ["ok", "y" * 2001]})
    assert "'input[1]' has 2001 characters; this server takes at most 2000" in _error(too_long, 413)
    long_query = http.post("/v1/rerank", json={"query": "q" * 2001, "documents": ["d"]})
    assert "'query' has 2001 characters" in _error(long_query, 413)
    huge = http.post("/v1/embeddings", json={"input": "z" * 60_000})
    assert "larger than this server accepts (50000 bytes)" in _error(huge, 413)
    # A chunked upload (no Content-Length) is cut off as soon as it passes the limit.
    chunked = http.post(
        "/v1/embeddings", content=(b"x" * 10_000 for _ in range(8)), headers={"content-type": "application/json"}
    )
    assert "larger than this server accepts" in _error(chunked, 413)
    _still_serving(http, embedder)


def test_unknown_paths_and_methods(http):
    assert "Unknown path" in _error(http.post("/v1/completions", json={}), 404)
    assert "Method not allowed" in _error(http.get("/v1/embeddings"), 405)


def test_api_key(embedder, models):
    with serve_engines(embedder, api_key="sekret") as url:
        with httpx.Client(base_url=url, trust_env=False) as client:
            body = {"input": "hello"}
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic sekret"}):
                response = client.post("/v1/embeddings", json=body, headers=headers)
                assert "Missing or wrong API key" in _error(response, 401)
                assert response.headers["www-authenticate"] == "Bearer"
            for path in ("/v1/models", "/metrics", "/info"):
                assert client.get(path).status_code == 401
                assert client.get(path, headers={"Authorization": "Bearer sekret"}).status_code == 200
            good = client.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer sekret"})
            assert good.status_code == 200
            assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
        with httpx.Client(trust_env=False) as transport:
            wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0, http_client=transport)
            with pytest.raises(openai.AuthenticationError):
                wrong.embeddings.create(model="m", input="hello")
            right = openai.OpenAI(base_url=f"{url}/v1", api_key="sekret", max_retries=0, http_client=transport)
            assert len(right.embeddings.create(model="m", input="hello").data) == 1


def test_cors_is_off_by_default_and_on_for_listed_origins(http, embedder):
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in http.options("/v1/embeddings", headers=preflight).headers
    plain = http.post("/v1/embeddings", json={"input": "x"}, headers={"Origin": "http://app.example"})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
    with (
        serve_engines(embedder, cors_origins=("http://app.example",)) as url,
        httpx.Client(base_url=url, trust_env=False) as client,
    ):
        allowed = client.options("/v1/embeddings", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "http://app.example"
        other = client.options("/v1/embeddings", headers={**preflight, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def test_full_queue_is_429_and_timeout_is_503(embedder):
    """The model is made busy by holding its lock (as another thread using it would)."""
    app = create_app(embedder, settings=ServerSettings(max_queue_items=2, request_timeout=30))
    batcher = app.state.service.default_embedder.batcher
    lock = embedder._backbone.lock
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        with ThreadPoolExecutor(max_workers=2) as pool:
            lock.acquire()
            try:
                running = pool.submit(client.post, "/v1/embeddings", json={"input": "first"})
                _wait(lambda: batcher.running_items == 1, "the first request to reach the model")
                queued = pool.submit(client.post, "/v1/embeddings", json={"input": ["second", "third"]})
                _wait(lambda: batcher.queued_items == 2, "the second request to queue")
                refused = client.post("/v1/embeddings", json={"input": "fourth"})
                assert "queue is full" in _error(refused, 429)
                assert refused.headers["retry-after"] == "1"
            finally:
                lock.release()
            assert running.result().status_code == 200 and queued.result().status_code == 200
        _still_serving(client, embedder)

    # The wait limit (--timeout) counts only the wait before a request starts: 503 with Retry-After.
    # The work limit (--work-timeout) counts the work once started: 503 saying what was done, no Retry-After.
    app = create_app(embedder, settings=ServerSettings(request_timeout=0.2, work_timeout=1.0))
    batcher = app.state.service.default_embedder.batcher
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        with ThreadPoolExecutor(max_workers=1) as pool:
            lock.acquire()
            try:
                running = pool.submit(client.post, "/v1/embeddings", json={"input": "started"})
                _wait(lambda: batcher.running_items == 1, "the first request to reach the model")
                waited = client.post("/v1/embeddings", json={"input": "slow"})
                assert "No result within 0.2 s" in _error(waited, 503)
                assert waited.json()["error"]["code"] == "timeout" and waited.headers["retry-after"] == "1"
                overrun = running.result()
            finally:
                lock.release()
        message = _error(overrun, 503)
        assert "after 1 s of work (the work limit): 0 of 1 items had been computed" in message
        assert overrun.json()["error"]["code"] == "work_timeout" and "retry-after" not in overrun.headers
        _still_serving(client, embedder)


def test_metrics(http, embedder, models):
    embedder_labels = (("model", "embedder"), ("name", served_name(embedder, None)))
    reranker_labels = (("model", "reranker"), ("name", Path(models.reranker).name))
    http.post("/v1/embeddings", json={"input": ["a", "b", "c"]})
    http.post("/v1/embeddings", json={"input": []})
    http.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    text = http.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ok = samples[("bge_rag_requests_total", (("endpoint", "/v1/embeddings"), ("status", "200")))]
    bad = samples[("bge_rag_requests_total", (("endpoint", "/v1/embeddings"), ("status", "400")))]
    assert ok >= 1 and bad >= 1
    assert samples[("bge_rag_batch_items_count", embedder_labels)] >= 1
    assert samples[("bge_rag_batch_items_count", reranker_labels)] >= 1
    assert samples[("bge_rag_batch_items_sum", reranker_labels)] >= 2
    assert samples[("bge_rag_queue_items", embedder_labels)] == 0
    assert samples[("bge_rag_prompt_tokens_total", ())] >= 3
    assert samples[("bge_rag_request_duration_seconds_count", (("endpoint", "/v1/rerank"),))] >= 1


def test_json_answers_keep_float32_exactly_and_refuse_nan():
    """Vectors are written as float32's shortest form: parsed and cast back, every bit is the same."""
    from bge_rag.server.responses import json_bytes

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 384)).astype(np.float32) * np.float32(1e-3)
    columns = vectors[:, ::2]  # not C-contiguous
    payload = {"data": [{"embedding": row} for row in vectors], "cols": columns, "score": 0.25, "n": np.int64(3)}
    parsed = json.loads(json_bytes(payload))
    got = np.asarray([d["embedding"] for d in parsed["data"]], dtype=np.float32)
    assert got.tobytes() == vectors.tobytes()
    assert np.asarray(parsed["cols"], dtype=np.float32).tobytes() == np.ascontiguousarray(columns).tobytes()
    assert parsed["score"] == 0.25 and parsed["n"] == 3
    assert len(json_bytes(vectors)) < len(json.dumps(vectors.tolist())) * 0.75  # float32 form, not float64's
    for bad in ({"v": np.array([0.1, np.nan], dtype=np.float32)}, [[{"x": float("inf")}]], {"s": [1.0, -np.inf]}):
        with pytest.raises(ValueError, match="not JSON compliant"):
            json_bytes(bad)
    # An answer with a real null (an absent document) is still written, and still checked.
    assert json.loads(json_bytes({"document": None, "text": "null", "v": vectors[0]}))["document"] is None
    with pytest.raises(ValueError, match="not JSON compliant"):
        json_bytes({"document": None, "v": np.array([np.nan], dtype=np.float32)})
    with pytest.raises(ValueError, match="not JSON compliant"):
        json_bytes({"document": None, "score": np.float32("nan")})  # a numpy scalar, not a Python float


def _family_error(response: httpx.Response, status: int) -> str:
    """The message of an error in either shape: OpenAI's (also Infinity's, Cohere's) or TEI's."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if isinstance(error, str):  # TEI: {"error": message, "error_type": ...}
        assert response.json()["error_type"]
        return error
    assert error["type"] and error["message"]
    return error["message"]


def test_the_api_key_is_checked_before_the_body_on_every_protected_route(embedder, models):
    """FastAPI parses a body before it runs a route's dependencies: a malformed body without the
    key must still get 401 (in the route's family shape), and 400 only once the key is right."""
    app = create_app(embedder, reranker(models, max_length=64), settings=ServerSettings(api_key="sekret"))
    routes = [r for r in app.routes if isinstance(r, FamilyRoute)]
    assert {(r.path, m) for r in routes if not r.guards for m in r.methods} == {
        ("/", "GET"),
        ("/", "HEAD"),
        ("/health", "GET"),
        ("/health", "HEAD"),
    }
    posts = sorted({r.path for r in routes if "POST" in r.methods})
    assert {"/v1/embeddings", "/embed", "/v2/embed", "/embeddings", "/v1/encode", "/v1/rerank", "/"} <= set(posts)
    bad = {"content": b'{"input": ["a", ', "headers": {"content-type": "application/json"}}
    key = {"Authorization": "Bearer sekret"}
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        for path in posts:
            refused = client.post(path, **bad)
            assert "Missing or wrong API key" in _family_error(refused, 401), path
            assert refused.headers["www-authenticate"] == "Bearer"
            utf16 = client.post(path, content='{"input": "a"}'.encode("utf-16"), headers=bad["headers"])
            assert "Missing or wrong API key" in _family_error(utf16, 401), path
            malformed = client.post(path, content=bad["content"], headers={**bad["headers"], **key})
            assert "Malformed JSON body" in _family_error(malformed, 400), path
        assert client.post("/embed", **bad).json()["error_type"] == "Validation"  # TEI's shape
        assert client.post("/v1/embeddings", json={"input": "a"}, headers=key).status_code == 200


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
@pytest.mark.parametrize(("path", "payload"), [("/v1/embeddings", {"input": "héllo"}), ("/embed", {"inputs": "héllo"})])
def test_a_body_not_in_utf8_is_refused(http, path, payload, encoding):
    """JSON is UTF-8 (RFC 8259); Python's json would also read UTF-16/32 (with or without a BOM)."""
    headers = {"content-type": "application/json"}
    response = http.post(path, content=json.dumps(payload, ensure_ascii=False).encode(encoding), headers=headers)
    message = _family_error(response, 400)
    assert f"{encoding[:6].upper()}-encoded" in message and "UTF-8" in message
    sig = http.post(path, content=b"\xef\xbb\xbf" + json.dumps(payload).encode(), headers=headers)
    assert sig.status_code == 200  # a UTF-8 byte order mark is still UTF-8


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request)
        sock.settimeout(30)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("path", ["/health", "/"])
def test_head_answers_like_get_without_a_body(embedder, path):
    """Load balancers and uptime checks probe with HEAD; it needs no key where GET needs none."""
    with (
        serve_engines(embedder, api_key="sekret") as url,
        httpx.Client(base_url=url, trust_env=False, timeout=30) as client,
    ):
        get = client.get(path)
        head = client.head(path)
        assert get.status_code == head.status_code == 200
        for name in ("content-type", "content-length"):
            assert head.headers[name] == get.headers[name]
        raw = _raw(url, f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status_line, _, rest = raw.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK"
        assert rest.endswith(b"\r\n\r\n")  # headers only: not one byte of body
        key = {"Authorization": "Bearer sekret"}
        assert client.head("/v1/models").status_code == 401
        assert client.head("/v1/models", headers=key).status_code == 200
        spec = client.get("/openapi.json", headers=key).json()
        assert all("head" not in operations for operations in spec["paths"].values())  # HEAD stays out of the schema

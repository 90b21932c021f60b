"""Clients that leave, dawdle or ask for too much cannot degrade the service for the others.

The model is held busy by taking its lock (as another user of the same engine would), so that
what queues meanwhile is known exactly; every assertion is on what the engine was given (texts
and calls in /metrics), never on timings.
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from _server_support import m3_embedder, reranker, serve
from prometheus_client.parser import text_string_to_metric_families

from bge_core import Embedder
from bge_core.errors import ConfigError
from bge_rag.server import ServerSettings, create_app
from bge_rag.server.service import served_name


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    return m3_embedder(models, max_length=64)


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _samples(client: httpx.Client) -> dict:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _statuses(samples: dict, endpoint: str) -> dict[str, float]:
    return {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "bge_rag_requests_total" and dict(labels).get("endpoint") == endpoint
    }


def _raw_post(url: str, path: str, payload: dict) -> socket.socket:
    """A full POST sent on a raw socket whose answer is never read (the caller closes it)."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(payload).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def _engine_items(samples: dict) -> float:
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "bge_rag_batch_items_sum" and ("model", "embedder") in labels
    )


def test_abandoned_requests_are_never_encoded(embedder, paragraphs):
    """Four clients send 16 paragraphs each and leave while queued; a live one-word request that
    came after them is the only work the model does next."""
    app = create_app(embedder, settings=ServerSettings(max_piece_items=4))
    batcher = app.state.service.default_embedder.batcher
    lock = embedder._backbone.lock
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        before = _engine_items(_samples(client))
        with ThreadPoolExecutor(max_workers=2) as pool:
            lock.acquire()
            try:
                first = pool.submit(client.post, "/v1/embeddings", json={"input": "first"})
                _wait(lambda: batcher.running_items == 1, "the first request to reach the model")
                gone = [_raw_post(url, "/v1/embeddings", {"input": paragraphs[16 * i : 16 * i + 16]}) for i in range(4)]
                _wait(lambda: batcher.queued_items == 64, "the four large requests to queue")
                for sock in gone:
                    sock.close()
                _wait(lambda: batcher.queued_items == 0, "the abandoned requests to leave the queue")
                live = pool.submit(client.post, "/v1/embeddings", json={"input": ["live"]})
                _wait(lambda: batcher.queued_items == 1, "the live request to queue")
            finally:
                lock.release()
            assert first.result().status_code == 200
            response = live.result()
        assert response.status_code == 200
        np.testing.assert_array_equal(
            np.asarray(response.json()["data"][0]["embedding"], np.float32), embedder.encode_documents("live")
        )
        samples = _samples(client)
    assert _engine_items(samples) - before == 2  # "first" and "live": not one abandoned text
    statuses = _statuses(samples, "/v1/embeddings")
    assert statuses.get("499") == 4 and "500" not in statuses


def test_a_request_abandoned_mid_run_stops_between_pieces(embedder, paragraphs, caplog):
    app = create_app(embedder, settings=ServerSettings(max_piece_items=4))
    batcher = app.state.service.default_embedder.batcher
    lock = embedder._backbone.lock
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
            before = _engine_items(_samples(client))
            lock.acquire()
            try:
                sock = _raw_post(url, "/v1/embeddings", {"input": paragraphs[:12]})
                _wait(lambda: batcher.running_items == 4 and batcher.queued_items == 8, "the first piece to run")
                sock.close()
                _wait(lambda: batcher.queued_items == 0, "the other pieces to be dropped")
            finally:
                lock.release()
            _wait(lambda: batcher.running_items == 0, "the running piece to finish")
            assert client.post("/v1/embeddings", json={"input": "next"}).status_code == 200
            samples = _samples(client)
        gc.collect()
    assert _engine_items(samples) - before == 4 + 1  # one piece of the abandoned request, then "next"
    # Nothing left for asyncio to complain about ("_GatheringFuture exception was never retrieved").
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()], caplog.text


def test_a_large_request_is_split_and_equals_one_encode(embedder, paragraphs):
    app = create_app(embedder, settings=ServerSettings(max_piece_items=3))
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        texts = paragraphs[:10]
        body = client.post("/v1/embeddings", json={"input": texts}).json()
        samples = _samples(client)
    got = np.asarray([d["embedding"] for d in body["data"]], np.float32)
    expected = np.concatenate([embedder.encode_documents(texts[i : i + 3]) for i in range(0, 10, 3)])
    np.testing.assert_array_equal(got, expected)
    counts = [len(ids) for ids in embedder.tokenizer(texts, truncation=True, max_length=64)["input_ids"]]
    assert body["usage"]["prompt_tokens"] == sum(counts)
    assert (
        samples[("bge_rag_batch_items_count", (("model", "embedder"), ("name", served_name(embedder, None))))] == 4
    )  # 3 + 3 + 3 + 1


def test_a_client_leaving_mid_body_is_not_a_server_error(embedder):
    app = create_app(embedder)
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"input": '
        )
        sock.close()
        _wait(lambda: _statuses(_samples(client), "/v1/embeddings").get("499") == 1, "the disconnect to be counted")
        assert "500" not in _statuses(_samples(client), "/v1/embeddings")


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_server_parses_http_with_httptools():
    """The server extra installs httptools: the C parser is the default, h11 only without it."""
    from bge_rag.server.runner import header_timeout_protocol

    assert header_timeout_protocol(1.0).http_parser == "httptools"
    assert header_timeout_protocol(1.0, "h11").http_parser == "h11"
    with pytest.raises(ValueError, match="parser must be 'httptools' or 'h11'"):
        header_timeout_protocol(1.0, "picohttp")


@pytest.mark.slow
@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_slow_headers_and_slow_bodies_time_out(embedder, parser, monkeypatch):
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from bge_rag.server import runner

    if parser == "h11":  # as without httptools installed
        monkeypatch.setattr(runner, "_base_protocol", lambda: (H11Protocol, "h11"))
    assert runner.uvicorn_options(ServerSettings())["http"].http_parser == parser
    app = create_app(embedder, settings=ServerSettings(header_timeout=0.3, body_timeout=0.3))
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as silent:  # opens and sends nothing
            assert _read_all(silent).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection((host, int(port))) as slow_headers:
            slow_headers.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")
            answer = _read_all(slow_headers)
            assert answer.startswith(b"HTTP/1.1 408 ") and b"headers did not arrive" in answer
        with socket.create_connection((host, int(port))) as slow_body:
            slow_body.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"in'
            )
            answer = _read_all(slow_body)
            assert answer.startswith(b"HTTP/1.1 408 ") and b"body did not arrive within 0.3 s" in answer
        # A keep-alive client that sends its next request in time is served as usual.
        assert client.post("/v1/embeddings", json={"input": "ok"}).status_code == 200
        assert client.post("/v1/embeddings", json={"input": "ok again"}).status_code == 200


def test_connection_limit(embedder):
    app = create_app(embedder, settings=ServerSettings(max_connections=3))
    with serve(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with httpx.Client(base_url=url, trust_env=False) as client:
            assert client.post("/v1/embeddings", json={"input": "ok"}).status_code == 200
        idle = [socket.create_connection((host, int(port))) for _ in range(3)]
        try:
            with httpx.Client(base_url=url, trust_env=False) as client:
                assert client.post("/v1/embeddings", json={"input": "one too many"}).status_code == 503
        finally:
            for sock in idle:
                sock.close()


def test_colbert_output_is_capped(embedder, paragraphs):
    app = create_app(embedder, settings=ServerSettings(max_colbert_vectors=40))
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        too_much = client.post("/v1/encode", json={"input": paragraphs[:4], "colbert": True})
        assert too_much.status_code == 413
        assert "returns at most 40 per request (--max-colbert-vectors)" in too_much.json()["error"]["message"]
        small = client.post(
            "/v1/encode", json={"input": ["a short text"], "colbert": True, "dense": False, "encoding_format": "base64"}
        )
        assert small.status_code == 200
    expected = embedder.encode(["a short text"], dense=False, colbert=True).colbert[0]
    assert small.json()["data"][0]["colbert_shape"] == list(expected.shape)


def test_docs_and_openapi_follow_the_api_key(embedder):
    with (
        serve(create_app(embedder, settings=ServerSettings(api_key="sekret"))) as url,
        httpx.Client(base_url=url, trust_env=False) as client,
    ):
        for path in ("/docs", "/openapi.json"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer sekret"}).status_code == 200
        spec = client.get("/openapi.json", headers={"Authorization": "Bearer sekret"}).json()
    assert "/embed" in spec["paths"] and "/v2/rerank" in spec["paths"] and "/v1/embeddings" in spec["paths"]


@pytest.mark.slow
def test_long_texts_are_cut_before_tokenizing_with_the_same_result(embedder, models, paragraphs):
    rr = reranker(models, max_length=64)
    app = create_app(embedder, rr)
    long_text = " ".join(paragraphs * 3)[:60_000]  # ~10,000 words for a 64-token model
    no_spaces = "x" * 5_000
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        body = client.post("/v1/embeddings", json={"input": [long_text, no_spaces, "short"]}).json()
        ranked = client.post("/v1/rerank", json={"query": long_text, "documents": [long_text, "short"]}).json()
    got = np.asarray([d["embedding"] for d in body["data"]], np.float32)
    np.testing.assert_array_equal(got, embedder.encode_documents([long_text, no_spaces, "short"]))
    assert app.state.service.default_embedder.tokenizer.cut_count == 1  # the spaceless text went whole
    scores = {r["index"]: r["relevance_score"] for r in ranked["results"]}
    assert [scores[0], scores[1]] == rr.score([(long_text, long_text), (long_text, "short")], normalize=True)
    assert app.state.service.default_reranker.tokenizer.cut_count == 3  # the query twice, the long document once
    # --no-cut-long-texts: every text goes whole, with the same answers.
    whole = create_app(embedder, rr, settings=ServerSettings(cut_long_texts=False))
    with serve(whole) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        again = client.post("/v1/embeddings", json={"input": [long_text, "short"]}).json()
        reranked = client.post("/v1/rerank", json={"query": "q", "documents": [long_text]}).json()
    np.testing.assert_array_equal(np.asarray([d["embedding"] for d in again["data"]], np.float32), got[[0, 2]])
    assert reranked["results"][0]["relevance_score"] == rr.score([("q", long_text)], normalize=True)[0]
    service = whole.state.service
    assert service.default_embedder.tokenizer.cut_count == 0 and service.default_reranker.tokenizer.cut_count == 0
    with pytest.raises(ConfigError, match="cut_long_texts"):
        ServerSettings(cut_long_texts="no")


@pytest.mark.slow
def test_no_progress_bars_in_the_server_log(embedder, capfd):
    app = create_app(embedder)
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=120) as client:
        capfd.readouterr()
        response = client.post("/v1/embeddings", json={"input": [f"text {i}" for i in range(2048)]})
        assert response.status_code == 200 and len(response.json()["data"]) == 2048
    assert "Embedding" not in capfd.readouterr().err


@pytest.fixture(scope="module")
def foreign(embedder, models):
    with (
        serve(create_app(embedder, reranker(models, max_length=64))) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=60) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        ("/embed", {"inputs": 3}, 400, "'inputs' must be a string or a list of strings"),
        ("/embed", {"inputs": []}, 400, "'inputs' must not be empty"),
        ("/embed", {"inputs": "x", "dimensions": 0}, 400, "'dimensions' must be a positive integer"),
        ("/embed", {"inputs": "x", "truncation_direction": "middle"}, 400, "'truncation_direction'"),
        ("/embed_sparse", {"input": "x"}, 400, "Unrecognized request argument 'input'"),
        ("/tokenize", {"inputs": [None]}, 400, "'inputs[0]' is null"),
        ("/decode", {"ids": "abc"}, 400, "'ids' must be a list of token ids"),
        ("/decode", {"ids": [-1]}, 400, "token ids of this model are"),
        ("/v2/embed", {"model": "m"}, 400, "Missing required argument 'texts'"),
        ("/v2/embed", {"texts": ["x"], "input_type": "search"}, 400, "Invalid 'input_type' 'search'"),
        ("/v2/embed", {"texts": ["x"], "input_type": "image"}, 400, "text only"),
        ("/v2/embed", {"texts": ["x"], "max_tokens": 8}, 400, "start the server with --max-length 8"),
        ("/v2/embed", {"texts": ["x"], "embedding_type": ["float"]}, 400, "Unrecognized request argument"),
        ("/v2/rerank", {"query": "q"}, 400, "Missing required argument 'documents'"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": 4}, 400, "--reranker-max-length"),
        ("/embeddings", {"input": "x", "modality": "audio"}, 400, "text only"),
        ("/embeddings", {"input": "x", "dimensions": -1}, 400, "'dimensions' must be a positive integer"),
    ],
)
def test_bad_foreign_requests_are_4xx(foreign, path, payload, status, message):
    response = foreign.post(path, json=payload)
    assert response.status_code == status, response.text
    body = response.json()
    text = body["error"] if isinstance(body["error"], str) else body["error"]["message"]
    assert message in text
    assert foreign.get("/health").status_code == 200

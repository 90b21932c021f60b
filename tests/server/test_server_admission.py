"""Admission: tokenizer work goes through the batcher, and caps and the work limit are checked before the work.

Whether work ran is read from what the engine and the server's tokenizer were called with
(spies on the instances), never from timings, except the latency test, whose bound is generous.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from _server_support import m3_embedder, serve
from test_server_hardening import _raw_post, _samples, _statuses, _wait

from bge_core import Embedder
from bge_rag.server import ServerSettings, create_app
from bge_rag.server.admission import Throughput


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    return m3_embedder(models, max_length=64)


class Spy:
    """Counts the calls of one method of one object (and passes them on)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
        self.calls = 0
        method = getattr(target, name)

        def spy(*args, **kwargs):
            self.calls += 1
            return method(*args, **kwargs)

        monkeypatch.setattr(target, name, spy)


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, trust_env=False, timeout=60)


def _long_texts(chars: int, count: int) -> list[str]:
    words = "tokenizers split the text into words and pieces of words before the model sees them "
    return [(words * (chars // len(words) + 1))[:chars] for _ in range(count)]


def test_a_4_mib_tokenize_does_not_hold_up_tiny_embeds(embedder):
    app = create_app(embedder)
    batcher = app.state.service.default_embedder.batcher
    with serve(app) as url, _client(url) as client:

        def tiny() -> float:
            started = time.perf_counter()
            assert client.post("/v1/embeddings", json={"input": "tiny"}).status_code == 200
            return time.perf_counter() - started

        alone = statistics.median(tiny() for _ in range(7))
        with ThreadPoolExecutor(max_workers=1) as pool, _client(url) as other:
            big = pool.submit(other.post, "/tokenize", json={"inputs": _long_texts(100_000, 42)})  # 4.2 MB
            _wait(lambda: batcher.queued_items > 0 or big.done(), "the /tokenize pieces to queue")
            during = []
            while not big.done():
                during.append(tiny())
            response = big.result()
    # Over the default --max-tokenize-ids: refused after counting, without building a 100 MB answer.
    assert response.status_code == 413 and "--max-tokenize-ids" in response.json()["error"]
    assert during, "no tiny embed ran while the /tokenize was being counted"
    assert max(during) < max(10 * alone, 0.5), (alone, during)  # before: a tiny embed waited ~7 s


def test_a_client_leaving_mid_tokenize_drops_its_work(embedder, monkeypatch):
    app = create_app(embedder, settings=ServerSettings(max_piece_items=1))
    service = app.state.service
    batcher = service.default_embedder.batcher
    counted = Spy(monkeypatch, service.default_embedder.tokenizer, "count")
    tokenized = Spy(monkeypatch, service.default_embedder.tokenizer, "tokenize")
    lock = embedder._backbone.lock
    with serve(app) as url, _client(url) as client:
        with ThreadPoolExecutor(max_workers=1) as pool:
            lock.acquire()  # the model is busy with another request, so the /tokenize pieces queue
            try:
                first = pool.submit(client.post, "/v1/embeddings", json={"input": "first"})
                _wait(lambda: batcher.running_items == 1, "the first request to reach the model")
                sock = _raw_post(url, "/tokenize", {"inputs": ["one", "two", "three", "four"]})
                _wait(lambda: batcher.queued_items == 4, "the /tokenize pieces to queue")
                sock.close()
                _wait(lambda: batcher.queued_items == 0, "the abandoned pieces to leave the queue")
            finally:
                lock.release()
            assert first.result().status_code == 200
        assert (counted.calls, tokenized.calls) == (0, 0)
        assert client.post("/tokenize", json={"inputs": "still served"}).status_code == 200
        assert _statuses(_samples(client), "/tokenize").get("499") == 1


def test_an_over_cap_tokenize_is_refused_before_its_answer_is_built(embedder, monkeypatch):
    app = create_app(embedder, settings=ServerSettings(max_tokenize_ids=12))
    tokenized = Spy(monkeypatch, app.state.service.default_embedder.tokenizer, "tokenize")
    text = "a sentence that has more than twelve tokens once the tokenizer has split it up"
    ids = len(embedder.tokenizer(text)["input_ids"])
    assert ids > 12
    with serve(app) as url, _client(url) as client:
        refused = client.post("/tokenize", json={"inputs": text})
        assert refused.status_code == 413
        assert refused.json() == {
            "error": f"The /tokenize answer to this request would hold {ids} token ids; this server answers "
            "at most 12 per request (--max-tokenize-ids). Send fewer or shorter texts.",
            "error_type": "Validation",
        }
        assert tokenized.calls == 0
        # Without special tokens the same count is exact too.
        short = client.post("/tokenize", json={"inputs": "a short text", "add_special_tokens": False})
        assert [t["id"] for t in short.json()[0]] == embedder.tokenizer("a short text", add_special_tokens=False)[
            "input_ids"
        ]
        assert client.post("/decode", json={"ids": [[5, 6, 7]]}).status_code == 200


def test_colbert_over_the_cap_is_refused_before_the_model_runs(embedder, paragraphs, monkeypatch):
    texts = paragraphs[:4]
    vectors = sum(m.shape[0] for m in embedder.encode(texts, dense=False, colbert=True).colbert)
    encodes = Spy(monkeypatch, Embedder, "encode")  # the instance is frozen
    app = create_app(embedder, settings=ServerSettings(max_colbert_vectors=vectors - 1))
    with serve(app) as url, _client(url) as client:
        refused = client.post("/v1/encode", json={"input": texts, "colbert": True})
        assert refused.status_code == 413
        assert f"has {vectors} vectors" in refused.json()["error"]["message"]
        assert "(--max-colbert-vectors)" in refused.json()["error"]["message"]
        assert encodes.calls == 0
    # The cap is the one the post-check enforced: exactly `vectors` is allowed.
    app = create_app(embedder, settings=ServerSettings(max_colbert_vectors=vectors))
    with serve(app) as url, _client(url) as client:
        assert client.post("/v1/encode", json={"input": texts, "colbert": True}).status_code == 200
    assert encodes.calls == 1


def test_a_request_too_large_for_the_work_limit_is_refused_up_front(embedder, paragraphs, monkeypatch):
    app = create_app(embedder, settings=ServerSettings(work_timeout=1.0))
    service = app.state.service
    service.default_embedder.throughput.observe(tokens=10_000, seconds=100.0)  # as if measured: 10 ms per token
    encodes = Spy(monkeypatch, Embedder, "encode")  # the instance is frozen
    with serve(app) as url, _client(url) as client:
        refused = client.post("/v1/embeddings", json={"input": paragraphs[:4]})
        error = refused.json()["error"]
        assert refused.status_code == 413 and error["code"] == "request_too_large"
        assert "more than its work limit of 1 s (--work-timeout)" in error["message"]
        assert "Split it into requests of at most about" in error["message"]
        assert "retry-after" not in refused.headers
        assert encodes.calls == 0
        # One short text: at most 64 tokens x 10 ms, within the limit without counting.
        assert client.post("/v1/embeddings", json={"input": "short"}).status_code == 200
        assert encodes.calls == 1


def test_throughput_is_a_token_weighted_moving_estimate():
    t = Throughput(min_tokens=100, decay=0.5)
    assert t.seconds_per_token is None  # nothing is refused before a measurement
    t.observe(tokens=10, seconds=5.0)  # too small a call: fixed costs, left out
    assert t.seconds_per_token is None
    t.observe(tokens=1000, seconds=1.0)
    assert t.seconds_per_token == pytest.approx(0.001)
    t.observe(tokens=1000, seconds=3.0)
    assert t.seconds_per_token == pytest.approx((0.5 * 1.0 + 3.0) / (0.5 * 1000 + 1000))

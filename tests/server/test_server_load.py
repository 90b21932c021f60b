"""A bounded load test: 32 concurrent clients, 640 mixed requests, each answer checked against its own request.

Correctness only (no timings here); ``benchmarks/serve_load.py`` measures the throughput.
"""

from __future__ import annotations

import asyncio
import base64
import random

import httpx
import numpy as np
import pytest
from _server_support import m3_embedder, reranker, serve_engines
from prometheus_client.parser import text_string_to_metric_families

CLIENTS = 32
REQUESTS_PER_CLIENT = 20
MAX_LENGTH = 32
TIME_LIMIT_S = 240  # a safety net: the test stops by itself even on a very slow machine


@pytest.fixture(scope="module")
def engines(models):
    options = {"max_length": MAX_LENGTH}
    return m3_embedder(models, **options), m3_embedder(models, truncate_dim=128, **options), reranker(models, **options)


@pytest.fixture(scope="module")
def pool(paragraphs) -> list[str]:
    """60 distinct short texts (the first 4-12 words of real paragraphs): a chat app's queries."""
    rng = random.Random(7)
    texts = list(dict.fromkeys(" ".join(p.split()[: rng.randint(4, 12)]) for p in paragraphs[:100]))
    return texts[:60]


def _plan(pool: list[str]) -> list[list[dict]]:
    """Per client, its requests: embeddings of 1-3 texts (query or document, float or base64,
    full or 128 dimensions) and, one time in eight, a rerank of 3 documents."""
    rng = random.Random(1234)
    plans = []
    for _ in range(CLIENTS):
        plan = []
        for _ in range(REQUESTS_PER_CLIENT):
            if rng.random() < 0.125:
                plan.append({"path": "/v1/rerank", "query": rng.choice(pool), "documents": rng.sample(pool, 3)})
                continue
            request = {
                "path": "/v1/embeddings",
                "input": rng.sample(pool, rng.randint(1, 3)),
                "input_type": rng.choice(["query", "document"]),
                "encoding_format": rng.choice(["float", "base64"]),
            }
            if rng.random() < 0.25:
                request["dimensions"] = 128
            plan.append(request)
        plans.append(plan)
    return plans


def _vectors(body: dict) -> np.ndarray:
    rows = []
    for item in body["data"]:
        e = item["embedding"]
        rows.append(np.frombuffer(base64.b64decode(e), "<f4") if isinstance(e, str) else np.asarray(e, np.float32))
    return np.stack(rows)


@pytest.mark.slow
async def test_concurrent_clients_each_get_their_own_answers(engines, pool):
    embedder, truncated, rr = engines
    plans = _plan(pool)
    position = {text: i for i, text in enumerate(pool)}
    expected = {
        ("document", None): embedder.encode_documents(pool),
        ("query", None): embedder.encode_queries(pool),
        ("document", 128): truncated.encode_documents(pool),
        ("query", 128): truncated.encode_queries(pool),
    }
    tokens = {
        kind: [len(ids) for ids in embedder.tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]
        for kind, texts in (("document", pool), ("query", [embedder.query_instruction + t for t in pool]))
    }

    reranks = [r for plan in plans for r in plan if r["path"] == "/v1/rerank"]
    flat = rr.score([(r["query"], d) for r in reranks for d in r["documents"]], normalize=True)
    rerank_scores = {id(r): flat[3 * i : 3 * i + 3] for i, r in enumerate(reranks)}

    def check(request: dict, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        body = response.json()
        if request["path"] == "/v1/rerank":
            got = {r["index"]: r["relevance_score"] for r in body["results"]}
            np.testing.assert_allclose([got[i] for i in range(3)], rerank_scores[id(request)], atol=1e-5, rtol=0)
            return
        rows = [position[t] for t in request["input"]]
        want = expected[(request["input_type"], request.get("dimensions"))][rows]
        np.testing.assert_allclose(_vectors(body), want, atol=2e-5, rtol=0)
        assert body["usage"]["prompt_tokens"] == sum(tokens[request["input_type"]][r] for r in rows)

    async def client(http: httpx.AsyncClient, plan: list[dict]) -> int:
        for request in plan:
            payload = {k: v for k, v in request.items() if k != "path"}
            check(request, await http.post(request["path"], json=payload))
        return len(plan)

    with serve_engines(embedder, rr) as url:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, trust_env=False) as http:
            done = await asyncio.wait_for(asyncio.gather(*(client(http, plan) for plan in plans)), TIME_LIMIT_S)
            metrics = (await http.get("/metrics")).text
    assert sum(done) == CLIENTS * REQUESTS_PER_CLIENT

    samples = {
        (s.name, s.labels.get("model"), s.labels.get("le")): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    calls = samples[("bge_rag_batch_requests_count", "embedder", None)]
    alone = samples[("bge_rag_batch_requests_bucket", "embedder", "1.0")]
    requests = samples[("bge_rag_batch_requests_sum", "embedder", None)]
    embedding_requests = sum(r["path"] == "/v1/embeddings" for plan in plans for r in plan)
    assert requests == embedding_requests
    assert alone < calls < embedding_requests  # concurrent requests were coalesced

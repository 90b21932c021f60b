"""DynamicBatcher: coalescing, key separation, queue bound, timeouts, cancellation, failure isolation.

The model worker is held at a gate (a threading.Event) so that what queues while it is busy is
known exactly; the work itself is the server's real ``encode_process`` on the fixture model.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import numpy as np
import pytest
from _server_support import m3_embedder

from bge_core import Embedder, TextTooLongError
from bge_core.types import join_parts
from bge_rag.server.batcher import DynamicBatcher, QueueFullError, RequestTimeoutError
from bge_rag.server.work import EncodeKey, encode_process

DOC, QUERY = EncodeKey("document"), EncodeKey("query")


class Gated:
    """``process`` that records each call and waits for ``gate`` before working."""

    def __init__(self, process) -> None:
        self.process = process
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[tuple[EncodeKey, list[list[str]]]] = []

    def __call__(self, key, item_lists):
        self.calls.append((key, [list(items) for items in item_lists]))
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return self.process(key, item_lists)


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    return m3_embedder(models, max_length=64)


def _batcher(embedder: Embedder, **limits) -> tuple[DynamicBatcher, Gated]:
    gated = Gated(encode_process(embedder))
    seen: list[tuple[int, int]] = []
    batcher = DynamicBatcher(
        embedder,
        gated,
        max_batch_items=limits.get("max_batch_items", 64),
        max_queue_items=limits.get("max_queue_items", 64),
        on_batch=lambda n, r, s: seen.append((n, r)),
    )
    batcher.seen = seen  # type: ignore[attr-defined]
    return batcher, gated


async def _until(condition, what: str) -> None:
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


async def _busy(batcher: DynamicBatcher, gated: Gated, texts=("first",)) -> asyncio.Task:
    """Submit one request and wait until the worker holds it at the gate."""
    task = asyncio.create_task(batcher.submit(DOC, list(texts), timeout=30))
    await asyncio.to_thread(gated.entered.wait, 30)
    return task


async def test_requests_arriving_while_busy_share_one_call(embedder, paragraphs):
    batcher, gated = _batcher(embedder)
    try:
        first = await _busy(batcher, gated)
        jobs = [paragraphs[0:2], paragraphs[2:3], paragraphs[3:6]]
        tasks = [asyncio.create_task(batcher.submit(DOC, texts, timeout=30)) for texts in jobs]
        await _until(lambda: batcher.queued_items == 6, "three queued requests")
        gated.gate.set()
        results = await asyncio.gather(first, *tasks)
    finally:
        gated.gate.set()
        await batcher.close()
    assert [items for _, items in gated.calls] == [[["first"]], jobs]
    assert batcher.seen == [(1, 1), (6, 3)]
    for texts, part in zip(jobs, results[1:], strict=True):
        assert part.dense.shape == (len(texts), embedder.dimension)
        np.testing.assert_allclose(part.dense, embedder.encode_documents(texts), atol=1e-5, rtol=0)
        assert part.token_counts == [
            len(ids) for ids in embedder.tokenizer(texts, truncation=True, max_length=64)["input_ids"]
        ]


async def test_keys_and_the_batch_limit_separate_calls(embedder):
    batcher, gated = _batcher(embedder, max_batch_items=4)
    try:
        first = await _busy(batcher, gated)
        submitted = [(DOC, ["a", "b", "c"]), (QUERY, ["q1"]), (DOC, ["d", "e", "f"]), (QUERY, ["q2"]), (DOC, ["g"])]
        tasks = [asyncio.create_task(batcher.submit(key, texts, timeout=30)) for key, texts in submitted]
        await _until(lambda: batcher.queued_items == 9, "five queued requests")
        gated.gate.set()
        results = await asyncio.gather(first, *tasks)
    finally:
        gated.gate.set()
        await batcher.close()
    # Oldest request's key first; same-key requests join it while they fit in 4 items.
    assert gated.calls[1:] == [
        (DOC, [["a", "b", "c"], ["g"]]),
        (QUERY, [["q1"], ["q2"]]),
        (DOC, [["d", "e", "f"]]),
    ]
    np.testing.assert_allclose(results[2].dense, embedder.encode_queries(["q1"]), atol=1e-5, rtol=0)


async def test_a_full_queue_refuses_at_once_and_keeps_serving(embedder):
    batcher, gated = _batcher(embedder, max_queue_items=2)
    try:
        first = await _busy(batcher, gated)
        waiting = asyncio.create_task(batcher.submit(DOC, ["x", "y"], timeout=30))
        await _until(lambda: batcher.queued_items == 2, "a queued request")
        with pytest.raises(QueueFullError, match="queue is full"):
            await batcher.submit(DOC, ["z"], timeout=30)
        gated.gate.set()
        await first
        assert (await waiting).dense.shape == (2, embedder.dimension)
        assert (await batcher.submit(DOC, ["z"], timeout=30)).dense.shape == (1, embedder.dimension)
    finally:
        gated.gate.set()
        await batcher.close()


async def test_a_timed_out_request_leaves_the_queue_and_is_never_run(embedder, caplog):
    batcher, gated = _batcher(embedder)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            first = await _busy(batcher, gated)
            with pytest.raises(RequestTimeoutError, match="No result within"):
                await batcher.submit(DOC, ["too late"], timeout=0.05)
            assert batcher.queued_items == 0
            cancelled = asyncio.create_task(batcher.submit(DOC, ["client left"], timeout=30))
            await _until(lambda: batcher.queued_items == 1, "a queued request")
            cancelled.cancel()
            await _until(lambda: batcher.queued_items == 0, "the cancelled request to leave")
            gated.gate.set()
            await first
            await batcher.submit(DOC, ["next"], timeout=30)
            await asyncio.sleep(0)  # let the dropped pieces' callbacks run
            gc.collect()
    finally:
        gated.gate.set()
        await batcher.close()
    assert [items for _, items in gated.calls] == [[["first"]], [["next"]]]
    # The ended requests' pieces leave nothing for asyncio to log as "exception was never retrieved".
    assert "never retrieved" not in caplog.text


async def test_a_failing_request_fails_alone(models, paragraphs):
    strict = m3_embedder(models, max_length=32, truncation=False)
    batcher, gated = _batcher(strict)
    long_text = " ".join(paragraphs[:5])
    try:
        first = await _busy(batcher, gated)
        jobs = (["ok"], [long_text], ["ok too"])
        tasks = [asyncio.create_task(batcher.submit(DOC, texts, timeout=30)) for texts in jobs]
        await _until(lambda: batcher.queued_items == 3, "three queued requests")
        gated.gate.set()
        results = await asyncio.gather(first, *tasks, return_exceptions=True)
    finally:
        gated.gate.set()
        await batcher.close()
    assert isinstance(results[2], TextTooLongError)
    for result, text in ((results[1], "ok"), (results[3], "ok too")):
        np.testing.assert_allclose(result.dense, strict.encode_documents([text]), atol=1e-5, rtol=0)
    # The coalesced call failed, then each request ran alone.
    assert [items for _, items in gated.calls][1:] == [
        [["ok"], [long_text], ["ok too"]],
        [["ok"]],
        [[long_text]],
        [["ok too"]],
    ]


async def test_a_large_request_takes_turns_with_small_ones(embedder, paragraphs):
    """Split into pieces of 2, a request of 8 texts shares each engine call with the small
    requests that arrived after it, instead of making them wait for all 8."""
    gated = Gated(encode_process(embedder))
    batcher = DynamicBatcher(
        embedder, gated, max_batch_items=64, max_queue_items=64, max_piece_items=2, merge=join_parts
    )
    big, small = paragraphs[:8], ["small"]
    try:
        first = await _busy(batcher, gated)
        large = asyncio.create_task(batcher.submit(DOC, big, timeout=30))
        little = asyncio.create_task(batcher.submit(DOC, small, timeout=30))
        await _until(lambda: batcher.queued_items == 9, "both requests to queue")
        gated.gate.set()
        results = await asyncio.gather(first, large, little)
    finally:
        gated.gate.set()
        await batcher.close()
    assert [items for _, items in gated.calls] == [[["first"]], [big[0:2], small], [big[2:4]], [big[4:6]], [big[6:8]]]
    expected = np.concatenate([embedder.encode_documents(big[i : i + 2]) for i in range(0, 8, 2)])
    np.testing.assert_allclose(results[1].dense, expected, atol=1e-6, rtol=0)
    assert len(results[1].token_counts) == 8
    np.testing.assert_allclose(results[2].dense, embedder.encode_documents(small), atol=1e-5, rtol=0)

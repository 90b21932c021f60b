"""Dynamic batching: concurrent requests for one engine coalesced into few engine calls.

Each engine has one worker (the engine's :func:`bge_core.aio.run_serialized` thread). While it
runs a batch, new requests queue; when it is free it takes every queued request with the same
key (same outputs, same kind), up to ``max_batch_items`` texts, and runs them as one engine
call, whose token-budget batching then sorts all texts by length. Results are split back per
request. There is no artificial wait: a lone request runs at once, and under load batches grow
by themselves to what arrived during the previous batch.

The queue is bounded (:class:`QueueFullError` instead of unbounded waiting), each request has
a timeout (:class:`RequestTimeoutError`), and a request whose client gave up is skipped. If a
coalesced call fails, its requests are retried one by one, so a bad request fails alone.

Example:
    >>> batcher = DynamicBatcher(embedder, process, max_batch_items=512, max_queue_items=16384)
    >>> result = await batcher.submit(("query",), ["what is BGE?"], timeout=60)
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..aio import run_serialized
from ..errors import BGEError

logger = logging.getLogger(__name__)

#: ``process(key, [items of request 1, items of request 2, ...])`` -> one result per request.
Process = Callable[[Hashable, list[Sequence[Any]]], list[Any]]
#: ``on_batch(items, requests, seconds)``, called after each engine call.
BatchObserver = Callable[[int, int, float], None]


class QueueFullError(BGEError, RuntimeError):
    """The model's queue is full; the client should retry later."""


class RequestTimeoutError(BGEError, TimeoutError):
    """A request waited longer than its timeout for the model."""


@dataclass(eq=False)
class _Job:
    key: Hashable
    items: Sequence[Any]
    future: asyncio.Future
    queued: bool = field(default=True)


class DynamicBatcher:
    """Coalesces concurrent requests for one engine into engine calls on its worker thread.

    Args:
        engine: The engine whose worker thread runs ``process`` (an ``Embedder``/``Reranker``).
        process: Runs one coalesced call; returns one result per request, in order.
        max_batch_items: Items (texts, pairs) per coalesced call; a larger request runs alone.
        max_queue_items: Items waiting at most; beyond, :meth:`submit` raises ``QueueFullError``.
        on_batch: Called with ``(items, requests, seconds)`` after each engine call.
    """

    def __init__(
        self,
        engine: Any,
        process: Process,
        *,
        max_batch_items: int,
        max_queue_items: int,
        on_batch: Optional[BatchObserver] = None,
    ) -> None:
        self._engine = engine
        self._process = process
        self.max_batch_items = max_batch_items
        self.max_queue_items = max_queue_items
        self._on_batch = on_batch
        self._pending: collections.deque[_Job] = collections.deque()
        self._queued_items = 0
        self._running_items = 0
        self._wakeup: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None

    @property
    def queued_items(self) -> int:
        """Items waiting for the model (not counting the batch it is running)."""
        return self._queued_items

    @property
    def running_items(self) -> int:
        """Items in the engine call now running (0 when idle)."""
        return self._running_items

    async def submit(self, key: Hashable, items: Sequence[Any], timeout: float) -> Any:
        """Queue ``items`` and wait for their result (``process``'s entry for this request).

        Raises:
            QueueFullError: the queue holds too many items already.
            RequestTimeoutError: no result within ``timeout`` seconds.
            Exception: whatever ``process`` raised for this request.
        """
        if self._queued_items + len(items) > self.max_queue_items:
            raise QueueFullError(
                f"The model's queue is full ({self._queued_items} items waiting, limit {self.max_queue_items}); "
                f"retry later."
            )
        self._ensure_worker()
        job = _Job(key, items, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued_items += len(items)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except asyncio.TimeoutError:
            self._drop(job)
            raise RequestTimeoutError(
                f"No result within {timeout:g} s: the model is overloaded; retry later or send fewer texts."
            ) from None
        except asyncio.CancelledError:  # the client went away
            self._drop(job)
            raise

    async def close(self) -> None:
        """Stop the worker and cancel the requests still queued."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._pending:
            job = self._pending.popleft()
            job.future.cancel()
        self._queued_items = 0

    # ------------------------------------------------------------------ worker
    def _ensure_worker(self) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="bge-rag-batcher")

    def _drop(self, job: _Job) -> None:
        job.future.cancel()
        if job.queued:
            job.queued = False
            self._pending.remove(job)
            self._queued_items -= len(job.items)

    def _take(self) -> list[_Job]:
        """Queued jobs sharing the first job's key, up to ``max_batch_items`` (at least one)."""
        first = self._pending[0]
        taken: list[_Job] = []
        kept: collections.deque[_Job] = collections.deque()
        total = 0
        for job in self._pending:
            fits = not taken or total + len(job.items) <= self.max_batch_items
            if job.key == first.key and fits:
                taken.append(job)
                total += len(job.items)
            else:
                kept.append(job)
        self._pending = kept
        for job in taken:
            job.queued = False
            self._queued_items -= len(job.items)
        return taken

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            jobs = self._take()
            self._running_items = sum(len(job.items) for job in jobs)
            try:
                await self._run(jobs)
            finally:
                self._running_items = 0

    async def _run(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            results = await run_serialized(self._engine, self._process, jobs[0].key, [job.items for job in jobs])
        except asyncio.CancelledError:
            for job in jobs:
                job.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the requests that caused it
            if len(jobs) == 1:
                _settle(jobs[0], exc=exc)
                return
            logger.info("A coalesced batch of %d requests failed (%s); retrying them one by one", len(jobs), exc)
            for job in jobs:
                if not job.future.done():
                    await self._run([job])
            return
        if self._on_batch is not None:
            self._on_batch(sum(len(job.items) for job in jobs), len(jobs), time.perf_counter() - started)
        for job, result in zip(jobs, results, strict=True):
            _settle(job, result=result)


def _settle(job: _Job, *, result: Any = None, exc: Optional[BaseException] = None) -> None:
    if job.future.done():  # timed out or cancelled meanwhile
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)


__all__ = ["DynamicBatcher", "QueueFullError", "RequestTimeoutError"]

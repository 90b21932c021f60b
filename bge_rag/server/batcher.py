"""Dynamic batching: concurrent requests for one engine coalesced into few engine calls.

Each engine has one worker (the engine's :func:`bge_core.aio.run_serialized` thread). While it
runs a batch, new requests queue; when it is free it takes every queued request with the same
key (same outputs, same kind), up to ``max_batch_items`` texts, and runs them as one engine
call, whose token-budget batching then sorts all texts by length. Results are split back per
request. There is no artificial wait: a lone request runs at once, and under load batches grow
by themselves to what arrived during the previous batch.

The queue is bounded (:class:`QueueFullError` instead of unbounded waiting), and each request has
two time limits that mean one thing each: how long it may wait for the model before its first
piece starts (:class:`RequestTimeoutError`: it never ran, so waiting less may help) and how long
its work may take once started (:class:`WorkTimeoutError`, which says how much was done). A
request whose client gave up is skipped. If a
coalesced call fails, its requests are retried one by one, so a bad request fails alone.

Example:
    >>> batcher = DynamicBatcher(embedder, process, max_batch_items=512, max_queue_items=16384)  # doctest: +SKIP
    >>> result = await batcher.submit(("query",), ["what is BGE?"], timeout=60)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bge_core.aio import run_serialized
from bge_core.errors import BGEError

logger = logging.getLogger(__name__)

#: The key requests are grouped by (the one given to :meth:`DynamicBatcher.submit`).
K = TypeVar("K", bound=Hashable)
#: ``process(key, [items of request 1, items of request 2, ...])`` -> one result per request.
Process = Callable[[K, list[Sequence[Any]]], list[Any]]
#: ``on_batch(items, requests, seconds)``, called after each engine call.
BatchObserver = Callable[[int, int, float], None]


class QueueFullError(BGEError, RuntimeError):
    """The model's queue is full; the client should retry later."""


class RequestTimeoutError(BGEError, TimeoutError):
    """A request waited longer than its timeout for the model; none of its work had started."""


class WorkTimeoutError(BGEError, TimeoutError):
    """A started request was not done within its work limit; its message says how much was done."""


@dataclass(eq=False)
class _Job(Generic[K]):
    """One piece of a request (a request is split into pieces of at most ``max_piece_items``)."""

    key: K
    items: Sequence[Any]
    future: asyncio.Future
    request: int  # pieces of one request share this id
    started: asyncio.Future  # the request's: set to the time its first piece was taken
    queued: bool = field(default=True)


class DynamicBatcher(Generic[K]):
    """Coalesces concurrent requests for one engine into engine calls on its worker thread.

    Args:
        engine: The engine whose worker thread runs ``process`` (an ``Embedder``/``Reranker``).
        process: Runs one coalesced call; returns one result per request, in order.
        max_batch_items: Items (texts, pairs) per coalesced call; a larger piece (see ``max_piece_items``)
            runs alone.
        max_queue_items: Items waiting at most; beyond, :meth:`submit` raises ``QueueFullError``.
        on_batch: Called with ``(items, requests, seconds)`` after each engine call.
        max_piece_items: A request with more items is split into pieces of this size; an engine
            call takes at most one piece per request, so a large request shares the model with
            the small ones that arrive meanwhile instead of making them wait for all of it, and
            the rest of a request whose client left is dropped between pieces.
        merge: Joins the results of one request's pieces (required with ``max_piece_items``).
    """

    def __init__(
        self,
        engine: Any,
        process: Process[K],
        *,
        max_batch_items: int,
        max_queue_items: int,
        on_batch: BatchObserver | None = None,
        max_piece_items: int | None = None,
        merge: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if max_piece_items is not None and merge is None:
            raise ValueError("max_piece_items needs a merge function")
        self._engine = engine
        self._process = process
        self.max_batch_items = max_batch_items
        self.max_queue_items = max_queue_items
        self._on_batch = on_batch
        self.max_piece_items = max_piece_items
        self._merge = merge
        self._requests = 0
        self._pending: collections.deque[_Job[K]] = collections.deque()
        self._queued_items = 0
        self._running_items = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @property
    def queued_items(self) -> int:
        """Items waiting for the model (not counting the batch it is running)."""
        return self._queued_items

    @property
    def running_items(self) -> int:
        """Items in the engine call now running (0 when idle)."""
        return self._running_items

    async def submit(
        self,
        key: K,
        items: Sequence[Any],
        timeout: float,
        *,
        work_timeout: float | None = None,
        pieces: list[Sequence[Any]] | None = None,
    ) -> Any:
        """Queue ``items`` and wait for their result (``process``'s entry for this request).

        Args:
            key: Requests with equal keys may share an engine call.
            items: The request's texts (or pairs, or token id lists).
            timeout: Seconds the request may wait before its first piece starts.
            work_timeout: Seconds from its first piece's start until its last piece is done
                (``None``: no limit).
            pieces: The request split by the caller (their concatenation is ``items``), instead
                of pieces of ``max_piece_items``; for work whose cost is not one per item.

        Raises:
            QueueFullError: the queue holds too many items already.
            RequestTimeoutError: not started within ``timeout`` seconds (nothing ran).
            WorkTimeoutError: started but not done within ``work_timeout`` seconds; the rest is
                dropped and the message says how many items had been computed.
            Exception: whatever ``process`` raised for this request.
        """
        if self._queued_items + len(items) > self.max_queue_items:
            raise QueueFullError(
                f"The model's queue is full ({self._queued_items} items waiting, limit {self.max_queue_items}); "
                f"retry later."
            )
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        self._requests += 1
        if pieces is None:
            size = self.max_piece_items or max(len(items), 1)
            pieces = [items[i : i + size] for i in range(0, len(items), size)] or [items]
        started = loop.create_future()
        jobs = [_Job(key, piece, loop.create_future(), self._requests, started) for piece in pieces]
        self._pending.extend(jobs)
        self._queued_items += len(items)
        assert self._wakeup is not None
        self._wakeup.set()
        gathered = asyncio.gather(*jobs_futures(jobs))
        # When the wait ends early (timeout, client gone, a failed piece), the pieces are cancelled
        # and ``gathered`` ends with an error nobody awaits: read it, or asyncio logs
        # "_GatheringFuture exception was never retrieved" for every abandoned request.
        gathered.add_done_callback(_retrieve)
        try:
            await asyncio.wait({started, gathered}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not started.done():
                self._drop(jobs)
                raise RequestTimeoutError(
                    f"No result within {timeout:g} s: the request waited that long for the model without "
                    "starting (the server is busy); retry later or send fewer texts."
                )
            if work_timeout is not None and not gathered.done():
                left = work_timeout - (time.perf_counter() - started.result())
                await asyncio.wait({gathered}, timeout=max(left, 0.0))
                if not gathered.done():
                    done = sum(len(job.items) for job in jobs if job.future.done() and not job.future.cancelled())
                    self._drop(jobs)
                    raise WorkTimeoutError(
                        f"The request was stopped after {work_timeout:g} s of work (the work limit): "
                        f"{done} of {len(items)} items had been computed and were discarded. The server was "
                        "busier than its estimate for this request; send it again in smaller requests, or "
                        "when the server is less busy."
                    )
            results = await gathered
        except asyncio.CancelledError:  # the client went away
            self._drop(jobs)
            raise
        except BaseException:
            self._drop(jobs)  # a failed piece: the request's other pieces need not run
            raise
        return results[0] if len(jobs) == 1 else self._merge(results)  # type: ignore[misc]

    async def close(self) -> None:
        """Stop the worker and cancel the requests still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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

    def _drop(self, jobs: list[_Job[K]]) -> None:
        for job in jobs:
            job.future.cancel()
            if job.queued:
                job.queued = False
                self._pending.remove(job)
                self._queued_items -= len(job.items)

    def _take(self) -> list[_Job[K]]:
        """Take the next batch off the queue.

        Returns:
            Queued jobs sharing the first job's key, up to ``max_batch_items`` items (at least one
            job), at most one piece of each request. The other pieces of the requests served go
            behind the requests not served (round robin), so a request of another key (another
            kind, or tokenizer work) that arrived after a large one waits for one of its pieces,
            not for all of them.
        """
        first = self._pending[0]
        taken: list[_Job[K]] = []
        kept: collections.deque[_Job[K]] = collections.deque()
        total = 0
        requests: set[int] = set()
        for job in self._pending:
            fits = not taken or total + len(job.items) <= self.max_batch_items
            if job.key == first.key and fits and job.request not in requests:
                taken.append(job)
                requests.add(job.request)
                total += len(job.items)
            else:
                kept.append(job)
        rest = [job for job in kept if job.request not in requests]
        self._pending = collections.deque(rest + [job for job in kept if job.request in requests])
        now = time.perf_counter()
        for job in taken:
            job.queued = False
            self._queued_items -= len(job.items)
            if not job.started.done():
                job.started.set_result(now)
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

    async def _run(self, jobs: list[_Job[K]]) -> None:
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


def jobs_futures(jobs: list[_Job[K]]) -> list[asyncio.Future]:
    return [job.future for job in jobs]


def _retrieve(future: asyncio.Future) -> None:
    """Mark ``future``'s outcome as read (whoever needed it has it already, or has gone)."""
    if not future.cancelled():
        future.exception()


def _settle(job: _Job[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if job.future.done():  # timed out or cancelled meanwhile
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)


__all__ = ["DynamicBatcher", "QueueFullError", "RequestTimeoutError", "WorkTimeoutError"]

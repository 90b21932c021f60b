"""How a job's planned batches run: inline, as CPU streams, or with accelerator prefetching.

An engine picks one :class:`Executor` when it is constructed (:func:`executor_for`, from its
device and the ``BGE_RAG_*`` variables read then) and hands it every call; results come back in
plan order whichever runs them, and the caller restores input order from the positions, so
outputs are identical to a sequential run.

- **CPU: streams** (:class:`CpuStreamsExecutor`). torch's intra-op threads split every matmul
  statically between threads and wait for the slowest at each operator; when another process
  takes a core, the thread that shares it holds every operator up (``benchmarks/bench.py --busy
  both`` measures it), where one thread alone loses nothing. So by default a job of several
  batches runs as *streams*: one worker thread per CPU the process may use
  (:func:`bge_core.devices.available_cpus`), each with one intra-op thread, each taking the next
  batch. A busy core then slows one stream, not all of them. The thread count is set on bge-rag's
  own worker threads only (OpenMP's per-thread setting, :mod:`.threads`), never process-wide:
  ``torch.get_num_threads()`` and the caller's threads keep their settings.
  ``BGE_RAG_CPU_STREAMS`` / ``BGE_RAG_CPU_THREADS`` (environment, read when the engine is
  built) or :func:`cpu_execution` (a scoped override) change it.
- **Accelerators: pipelining** (:class:`PrefetchExecutor`). While the device runs batch *k*, a
  helper thread pads batch *k + 1* into pinned host memory and starts its non-blocking copy, so
  the device does not wait for the host between batches. ``BGE_RAG_PREFETCH=0`` runs them
  inline instead (:class:`InlineExecutor`).
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_positive
from ..devices import available_cpus
from ..env import EnvSettings, read_env
from .collate import Batch
from .oom import Attempt, Pair
from .plan import split_for_streams
from .threads import thread_control

#: Texts per chunk when a large ``Embedder.encode`` call tokenizes ahead (see ``Executor.tokenize_ahead``).
TOKENIZE_AHEAD_TEXTS = 4096

Make = Callable[[np.ndarray], Batch]

_override: contextvars.ContextVar[tuple[int | None, int | None]] = contextvars.ContextVar(
    "bge_rag_cpu_execution", default=(None, None)
)


@dataclass(frozen=True)
class CpuPlan:
    """How a CPU job runs: ``streams`` batches at once, each on ``threads`` intra-op threads."""

    streams: int
    threads: int


@contextlib.contextmanager
def cpu_execution(streams: int | None = None, threads: int | None = None) -> Iterator[None]:
    """Override CPU streams and/or threads for the calls made inside this block (this context only).

    Args:
        streams: Batches run at once (``1``: one at a time on torch's intra-op threads).
        threads: CPU threads in total, shared out among the streams.

    Raises:
        ConfigError: ``streams`` or ``threads`` is not a positive integer.

    Example:
        >>> from bge_core import Embedder
        >>> embedder = Embedder("BAAI/bge-small-en-v1.5")
        >>> with cpu_execution(streams=1):      # one batch at a time, torch's intra-op threads
        ...     vectors = embedder.encode_documents(["a text", "another"])
    """
    if streams is not None:
        check_positive("streams", streams)
    if threads is not None:
        check_positive("threads", threads)
    token = _override.set((streams, threads))
    try:
        yield
    finally:
        _override.reset(token)


def cpu_plan(
    n_batches: int,
    *,
    streams: int | None = None,
    threads: int | None = None,
    settings: EnvSettings | None = None,
) -> CpuPlan:
    """Streams and threads for a CPU job of ``n_batches`` batches.

    Precedence: the arguments, then :func:`cpu_execution`, then ``settings`` (the
    ``BGE_RAG_CPU_STREAMS`` / ``BGE_RAG_CPU_THREADS`` an engine read when it was built), then the
    defaults: threads = the CPUs the process may use (affinity and cgroup quota) but no more than
    ``torch.get_num_threads()`` of the calling thread (so ``OMP_NUM_THREADS`` and
    ``torch.set_num_threads`` still cap it); streams = threads. Streams never exceed the batches,
    and the threads are shared out among the streams. Without per-thread thread control (a torch
    build whose OpenMP runtime is not found) streams are 1.
    """
    env = settings if settings is not None else EnvSettings()
    o_streams, o_threads = _override.get()
    threads = threads or o_threads or env.cpu_threads or min(available_cpus(), torch.get_num_threads())
    streams = streams or o_streams or env.cpu_streams or threads
    if thread_control() is None:
        streams = 1
    streams = max(1, min(streams, n_batches, threads))
    return CpuPlan(streams=streams, threads=max(1, threads // streams))


@dataclass(frozen=True)
class Executor(ABC):
    """How the planned batches of a job run; one per engine, chosen by :func:`executor_for`."""

    #: Whether a large ``Embedder.encode`` call tokenizes its next chunk of
    #: ``TOKENIZE_AHEAD_TEXTS`` texts on a helper thread while the model runs the current one.
    tokenize_ahead: bool = False

    @abstractmethod
    def run(
        self,
        batches: list[np.ndarray],
        attempt: Attempt,
        make: Make,
        *,
        streams: int | None = None,
        threads: int | None = None,
    ) -> Iterator[Pair]:
        """Run ``attempt`` on every batch; yield its pairs in plan order.

        Args:
            batches: Input positions of each batch, in plan order.
            attempt: Runs one batch (see :func:`bge_core.batching.oom.with_backoff`).
            make: Collates one batch (for executors that collate ahead).
            streams: Per-call override of the CPU streams (see :func:`cpu_plan`); other executors ignore it.
            threads: Per-call override of the threads per stream (see :func:`cpu_plan`); other executors
                ignore it.
        """


@dataclass(frozen=True)
class InlineExecutor(Executor):
    """Each batch collated and run in the calling thread, one after the other."""

    def run(
        self,
        batches: list[np.ndarray],
        attempt: Attempt,
        make: Make,
        *,
        streams: int | None = None,
        threads: int | None = None,
    ) -> Iterator[Pair]:
        """Run the batches one after the other in the calling thread (see :meth:`Executor.run`)."""
        for positions in batches:
            yield from attempt(positions, None)


@dataclass(frozen=True)
class CpuStreamsExecutor(Executor):
    """Batches as CPU streams on bge-rag's worker threads (see the module docstring).

    ``streams`` / ``threads`` are the environment's values (``None``: auto); a call's arguments
    and :func:`cpu_execution` take precedence (see :func:`cpu_plan`).
    """

    streams: int | None = None
    threads: int | None = None

    def plan(self, n_batches: int, *, streams: int | None = None, threads: int | None = None) -> CpuPlan:
        """:func:`cpu_plan` with this executor's environment settings."""
        settings = EnvSettings(cpu_streams=self.streams, cpu_threads=self.threads)
        return cpu_plan(n_batches, streams=streams, threads=threads, settings=settings)

    def run(
        self,
        batches: list[np.ndarray],
        attempt: Attempt,
        make: Make,
        *,
        streams: int | None = None,
        threads: int | None = None,
    ) -> Iterator[Pair]:
        """Run the batches as CPU streams on worker threads (see :meth:`Executor.run`)."""
        texts = sum(int(b.size) for b in batches)
        wanted = self.plan(texts, streams=streams, threads=threads).streams
        batches = split_for_streams(batches, wanted)
        yield from _run_streams(batches, attempt, self.plan(len(batches), streams=streams, threads=threads))


@dataclass(frozen=True)
class PrefetchExecutor(Executor):
    """Each batch collated by a helper thread ``depth`` batches ahead of the one running."""

    depth: int = 2

    def run(
        self,
        batches: list[np.ndarray],
        attempt: Attempt,
        make: Make,
        *,
        streams: int | None = None,
        threads: int | None = None,
    ) -> Iterator[Pair]:
        """Run the batches while a helper thread collates the next ones (see :meth:`Executor.run`)."""
        ahead = _prefetched(batches, make, self.depth)
        try:
            for positions, ready in ahead:
                yield from attempt(positions, ready)
        finally:
            ahead.close()


def executor_for(
    device: torch.device, settings: EnvSettings | None = None, *, prefetch: bool | None = None
) -> Executor:
    """The executor for ``device``: CPU streams on CPUs, prefetching on accelerators.

    Args:
        device: Where the batches run.
        settings: The ``BGE_RAG_*`` variables (default: :func:`bge_core.env.read_env`, read now).
        prefetch: Overrides ``BGE_RAG_PREFETCH``: ``False`` runs batches inline, ``True``
            prefetches also on a CPU (where it only adds a thread; it exists there for tests).

    Returns:
        The executor; engines call this once, in their constructor.

    Raises:
        ConfigError: a ``BGE_RAG_*`` variable has a value it does not accept.
    """
    env = read_env() if settings is None else settings
    if prefetch is None:
        prefetch = env.prefetch
    ahead = device.type != "cpu" if env.tokenize_ahead is None else env.tokenize_ahead
    if device.type == "cpu" and not prefetch:
        return CpuStreamsExecutor(tokenize_ahead=ahead, streams=env.cpu_streams, threads=env.cpu_threads)
    if prefetch is False:
        return InlineExecutor(tokenize_ahead=ahead)
    return PrefetchExecutor(tokenize_ahead=ahead)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """bge-rag's own CPU worker threads (created on first use, reused by every engine)."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="bge-rag-cpu")
        return pool


def _run_streams(batches: list[np.ndarray], attempt: Attempt, plan: CpuPlan) -> Iterator[Pair]:
    """Batches on the CPU: in the calling thread, or as ``plan.streams`` workers, in plan order."""
    set_threads = thread_control()
    inline = plan.streams == 1 and (set_threads is None or plan.threads == torch.get_num_threads())
    if inline or not batches:
        for positions in batches:
            yield from attempt(positions, None)
        return

    def task(positions: np.ndarray) -> list[Pair]:
        set_threads(plan.threads)  # type: ignore[misc]  # this worker thread only
        return list(attempt(positions, None))

    pool = _pool(plan.streams)
    pending: deque[Future[list[Pair]]] = deque()
    todo = iter(batches)
    try:
        for positions in todo:
            pending.append(pool.submit(task, positions))
            if len(pending) > plan.streams:  # keep every worker busy and one batch queued
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for future in pending:  # an error or an abandoned generator: stop queued work, wait for the rest
            future.cancel()
        for future in pending:
            if not future.cancelled():
                future.exception()


def _prefetched(
    batches: Iterable[np.ndarray], make: Make, depth: int = 2
) -> Generator[tuple[np.ndarray, Batch | None], None, None]:
    """``(positions, batch)`` in order, each batch collated by a helper thread ahead of use.

    A batch whose collation failed comes as ``None`` (the caller collates it again itself, so
    an out-of-memory error during the copy goes through the usual back-off).
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for positions in batches:
                if stop.is_set():
                    return
                try:
                    ready: Batch | None = make(positions)
                except Exception:  # retried by the caller in its own thread, where it raises
                    ready = None
                items.put((positions, ready))
        finally:
            items.put(done)

    helper = threading.Thread(target=produce, name="bge-rag-prefetch", daemon=True)
    helper.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while helper.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.05)
        helper.join()


__all__ = [
    "CpuPlan",
    "CpuStreamsExecutor",
    "Executor",
    "InlineExecutor",
    "PrefetchExecutor",
    "TOKENIZE_AHEAD_TEXTS",
    "cpu_execution",
    "cpu_plan",
    "executor_for",
]

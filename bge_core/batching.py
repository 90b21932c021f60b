"""Token-budget batching: tokenize once, sort by length, batch, pad per batch, restore order.

Texts are sorted longest first; each batch takes as many texts as fit both ``max_batch_size``
and ``max_batch_tokens`` (rows x padded length), so long texts get small batches and short
texts large ones. Results are written back by input position, so the caller sees input order.

Out-of-memory errors (and only those) split the failing batch in two, down to one text; a
single text that still does not fit raises :class:`~bge_core.errors.BGEOutOfMemoryError`.

How batches run (see :func:`cpu_plan` and :func:`run_batches`):

- **CPU: streams.** torch's intra-op threads split every matmul statically between threads and
  wait for the slowest at each operator; when another process takes a core, the thread that
  shares it holds every operator up (measured on 2 cores with one busy: 2-2.7x slower, where
  one thread alone loses nothing). So by default a job of several batches runs as *streams*:
  one worker thread per CPU the process may use (:func:`bge_core.devices.available_cpus`), each
  with one intra-op thread, each taking the next batch. A busy core then slows one stream, not
  all of them. The thread count is set on bge-rag's own worker threads only (OpenMP's per-thread
  setting), never process-wide: ``torch.get_num_threads()`` and the caller's threads keep their
  settings. ``BGE_RAG_CPU_STREAMS`` / ``BGE_RAG_CPU_THREADS`` (environment) or
  :func:`cpu_execution` (a scoped override) change it.
- **Accelerators: pipelining.** While the device runs batch *k*, a helper thread pads batch
  *k + 1* into pinned host memory and starts its non-blocking copy, so the device does not wait
  for the host between batches.

Either way results come back in plan order and the caller restores input order from the
positions, so outputs are identical to a sequential run.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

import numpy as np
import torch

from .checks import check_positive
from .devices import available_cpus
from .errors import BGEOutOfMemoryError, ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Texts per batch at most (the caller's ``batch_size``).
DEFAULT_BATCH_SIZE = 256
#: Padded tokens per batch at most on accelerators.
DEFAULT_MAX_BATCH_TOKENS = {"cuda": 65536, "mps": 16384}
#: On CPUs the best budget keeps a batch's activations cache-resident: measured on a 2-core
#: AVX512-BF16 CPU, 1024-2048 tokens for MiniLM (FFN 1536), 512 for BERT-base and -large shapes
#: (FFN 3072 / 4096), all 5-25% faster than 4096-8192. The budget is this many FFN activations,
#: rounded down to a power of two and kept within [512, 8192].
CPU_ACTIVATION_BUDGET = 1 << 21
#: On a CPU each batch costs a fixed amount besides its padded tokens (per-operator and weight
#: traffic costs of a forward pass): measured on one thread of a 2-core AMX Xeon as ~110-160
#: padded tokens' worth for MiniLM-L6 and BERT-base shapes in bf16 (60-80 in fp32). CPU batches
#: are planned to minimize this overhead plus padded tokens (see :func:`plan_batches`), so a
#: server's coalesced queries of mixed lengths are neither padded to the longest one nor cut into
#: many tiny batches. 64 (not the one-thread figure) measured best with two streams, which need
#: batches enough to share out: engine alone on 8-32 mixed short queries and on 64 paragraphs,
#: 3-23% more texts/s than the earlier rule (a batch stopped before a text 25% shorter).
CPU_BATCH_OVERHEAD = 64
#: Inputs at least this long show a progress bar when ``show_progress`` is left as ``None``.
PROGRESS_THRESHOLD = 2048


def resolve_max_batch_tokens(max_batch_tokens: Optional[int], device: torch.device, config: Any = None) -> int:
    """The caller's token budget per batch, or the default for the device and model shape."""
    if max_batch_tokens is not None:
        return check_positive("max_batch_tokens", max_batch_tokens)
    if device.type != "cpu":
        return DEFAULT_MAX_BATCH_TOKENS.get(device.type, 8192)
    hidden = int(getattr(config, "hidden_size", 768) or 768)
    ffn = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
    budget = 1 << max(0, (CPU_ACTIVATION_BUDGET // max(ffn, 1)).bit_length() - 1)
    return max(512, min(8192, budget))


#: Environment variable: ``auto`` (default) or the number of CPU streams (``1``: one batch at a
#: time on torch's intra-op threads, the pre-streams behaviour).
STREAMS_ENV = "BGE_RAG_CPU_STREAMS"
#: Environment variable: CPU threads in total (default: the CPUs the process may use, and never
#: more than the caller's ``torch.get_num_threads()``).
THREADS_ENV = "BGE_RAG_CPU_THREADS"

#: Texts per chunk when a large ``Embedder.encode`` call tokenizes ahead (see ``TOKENIZE_AHEAD_ENV``).
TOKENIZE_AHEAD_TEXTS = 4096
#: Environment variable: ``0`` turns off tokenizing the next chunk of a large call on a helper
#: thread while an accelerator runs the current one (``1`` forces it, also on CPUs, for tests).
TOKENIZE_AHEAD_ENV = "BGE_RAG_TOKENIZE_AHEAD"


def tokenize_ahead_setting() -> Optional[bool]:
    """``BGE_RAG_TOKENIZE_AHEAD`` as a flag, or ``None`` when unset (the default: accelerators only)."""
    return _env_flag(TOKENIZE_AHEAD_ENV)


#: Environment variable: ``0`` turns off prefetching on accelerators (``1`` forces it, also on CPUs).
PREFETCH_ENV = "BGE_RAG_PREFETCH"

_override: contextvars.ContextVar[tuple[Optional[int], Optional[int]]] = contextvars.ContextVar(
    "bge_rag_cpu_execution", default=(None, None)
)


@dataclass(frozen=True)
class CpuPlan:
    """How a CPU job runs: ``streams`` batches at once, each on ``threads`` intra-op threads."""

    streams: int
    threads: int


@contextlib.contextmanager
def cpu_execution(streams: Optional[int] = None, threads: Optional[int] = None) -> Iterator[None]:
    """Override CPU streams and/or threads for the calls made inside this block (this context only).

    Example:
        >>> with cpu_execution(streams=1):      # one batch at a time, torch's intra-op threads
        ...     vectors = embedder.encode_documents(texts)
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


def _env_int(name: str) -> Optional[int]:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "auto"):
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be 'auto' or a positive integer, got {raw!r}") from exc
    return check_positive(name, value)


def _env_flag(name: str) -> Optional[bool]:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 0 or 1, got {raw!r}")


def cpu_plan(n_batches: int, *, streams: Optional[int] = None, threads: Optional[int] = None) -> CpuPlan:
    """Streams and threads for a CPU job of ``n_batches`` batches.

    Precedence: the arguments, then :func:`cpu_execution`, then ``BGE_RAG_CPU_STREAMS`` /
    ``BGE_RAG_CPU_THREADS``, then the defaults: threads = the CPUs the process may use
    (affinity and cgroup quota) but no more than ``torch.get_num_threads()`` of the calling
    thread (so ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` still cap it); streams = threads.
    Streams never exceed the batches, and the threads are shared out among the streams. Without
    per-thread thread control (a torch build whose OpenMP runtime is not found) streams are 1.
    """
    o_streams, o_threads = _override.get()
    threads = threads or o_threads or _env_int(THREADS_ENV) or min(available_cpus(), torch.get_num_threads())
    streams = streams or o_streams or _env_int(STREAMS_ENV) or threads
    if thread_control() is None:
        streams = 1
    streams = max(1, min(streams, n_batches, threads))
    return CpuPlan(streams=streams, threads=max(1, threads // streams))


@functools.lru_cache(maxsize=1)
def thread_control() -> Optional[Callable[[int], None]]:
    """A function setting the intra-op thread count of the calling OS thread only, or ``None``.

    It calls ``omp_set_num_threads`` (a per-thread setting in OpenMP) of the OpenMP runtime
    torch uses, and MKL's ``mkl_set_num_threads_local`` when torch exports it; checked on a
    probe thread, where ``torch.get_num_threads()`` must follow. Other packages bundle their own
    OpenMP runtimes (sentencepiece does), so torch's own folder is searched first and every
    candidate is probed.
    """
    mkl = next(iter(_libraries(("libtorch_cpu",))), None)
    # MKL's Fortran-style entry points take their argument by reference.
    mkl_local = getattr(mkl, "mkl_set_num_threads_local_", None) if mkl is not None else None
    mkl_get = getattr(mkl, "mkl_get_max_threads_", None) if mkl is not None else None
    for omp in _libraries(("libgomp", "libiomp5", "libomp")):
        if not hasattr(omp, "omp_set_num_threads"):
            continue

        def set_threads(n: int, omp: ctypes.CDLL = omp) -> None:
            omp.omp_set_num_threads(ctypes.c_int(n))
            if mkl_local is not None:
                mkl_local(ctypes.byref(ctypes.c_int(n)))

        seen: list[int] = []

        def probe(set_threads: Callable[[int], None] = set_threads) -> None:
            torch.get_num_threads()  # torch's lazy per-thread initialization first
            set_threads(1)
            seen.append(torch.get_num_threads())
            if mkl_get is not None:
                seen.append(int(mkl_get()))

        worker = threading.Thread(target=probe, name="bge-rag-probe")
        worker.start()
        worker.join()
        if seen and all(n == 1 for n in seen):
            return set_threads
    logger.info("Per-thread CPU thread control unavailable; CPU batches run one at a time.")
    return None


def _libraries(prefixes: tuple[str, ...]) -> list[ctypes.CDLL]:
    """Shared libraries whose file names start with a prefix: torch's own, then any mapped."""
    paths: list[str] = []
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    try:
        paths += sorted(os.path.join(torch_lib, n) for n in os.listdir(torch_lib) if n.startswith(prefixes))
    except OSError:
        pass
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths += [line.rsplit(" ", 1)[-1].strip() for line in maps]
    except OSError:
        pass
    found, seen = [], set()
    for path in paths:
        name = os.path.basename(path)
        if path.startswith("/") and name.startswith(prefixes) and ".so" in name and path not in seen:
            seen.add(path)
            try:
                found.append(ctypes.CDLL(path))
            except OSError:
                continue
    return found


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """bge-rag's own CPU worker threads (created on first use, reused by every engine)."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="bge-rag-cpu")
        return pool


@dataclass(frozen=True)
class Batch:
    """A padded batch on its device, and the input positions of its rows."""

    positions: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: Optional[torch.Tensor] = None

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs


def plan_batches(
    lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int, *, batch_overhead: Optional[int] = None,
    min_rows: int = 4,
) -> list[np.ndarray]:
    """Group input positions into batches, longest texts first.

    Args:
        lengths: token count of each input.
        max_batch_size: most rows in a batch.
        max_batch_tokens: most padded tokens (rows x longest row) in a batch; a text longer than
            this still gets a batch of its own.
        batch_overhead: If set (CPUs), the cost of one batch in padded tokens besides its own; the
            batches of the sorted texts are then chosen to minimize the total cost, padded tokens
            plus this per batch, within the limits above and with at least ``min_rows`` rows per
            batch where the limits allow (an exact dynamic programme, linear in the number of
            texts). Mixed short texts (a server's coalesced queries: 6 to 34 tokens) are split
            where padding would cost more than another batch, and only there.
            Without it, each batch takes as many texts as the limits allow (accelerators, where
            fewer and larger batches are what counts).

    Returns:
        Arrays of input positions, one per batch, covering every input exactly once.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = np.maximum(lengths[order], 1)
    n = order.size
    limits = np.minimum(max_batch_size, np.maximum(1, max_batch_tokens // sorted_lengths))
    # take[i]: the size of the batch that starts at sorted position i.
    take = limits
    if batch_overhead is not None:
        # cost[i]: the cheapest plan for the texts from i on.
        cost = np.zeros(n + 1, dtype=np.float64)
        take = np.zeros(n, dtype=np.int64)
        for i in range(n - 1, -1, -1):
            k = int(min(limits[i], n - i))
            sizes_i = np.arange(1, k + 1)
            options = batch_overhead + sizes_i * sorted_lengths[i] + cost[i + 1 : i + k + 1]
            # At least min_rows rows per batch, and no smaller batch left behind, unless the limits
            # leave no choice: a few texts stay together, so equal or repeated texts get bit-equal
            # outputs (a GEMM's rounding can depend on its row count; one row is a different kernel).
            left = n - i - sizes_i
            allowed = (sizes_i >= min(min_rows, k)) & ((left == 0) | (left >= min_rows))
            if allowed.any():
                options = np.where(allowed, options, np.inf)
            best = k - 1 - int(np.argmin(options[::-1]))  # ties: the larger batch
            cost[i], take[i] = options[best], best + 1
    sizes, start = [], 0
    while start < n:
        sizes.append(int(take[start]))
        start += sizes[-1]
    bounds = np.cumsum([0] + sizes)
    return [order[bounds[j] : bounds[j + 1]] for j in range(len(sizes))]


def split_for_streams(batches: list[np.ndarray], streams: int, min_rows: int = 4) -> list[np.ndarray]:
    """``batches`` with the largest split in halves until there are ``streams`` of them, so that a
    small job (a server's coalesced queries: one batch by the token budget) still keeps every CPU
    stream busy instead of running on one stream's threads. Halves keep at least ``min_rows``
    rows: a few texts stay in one batch, so equal texts keep bit-equal outputs (a GEMM's rounding
    can depend on its row count), and reranker ties keep their input order.

    Splitting only shrinks batches, so each stays within the token budget.
    """
    out = list(batches)
    while len(out) < streams:
        largest = max(range(len(out)), key=lambda i: out[i].size, default=None)
        if largest is None or out[largest].size < 2 * min_rows:
            break
        batch = out[largest]
        half = (batch.size + 1) // 2
        out[largest : largest + 1] = [batch[:half], batch[half:]]
    return out


def collate(
    input_ids: Sequence[Sequence[int]],
    positions: np.ndarray,
    pad_id: int,
    device: torch.device,
    token_type_ids: Optional[Sequence[Sequence[int]]] = None,
    pin_memory: Optional[bool] = None,
) -> Batch:
    """Right-pad the rows at ``positions`` into tensors on ``device``.

    On CUDA (``pin_memory=None``) the host tensors are pinned and copied with
    ``non_blocking=True``, so the copy overlaps the work already queued on the device.
    """
    pin = device.type == "cuda" if pin_memory is None else pin_memory

    def to_device(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if device.type == "cpu":
            return tensor
        if pin:
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=pin)

    rows = [input_ids[i] for i in positions]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64) if token_type_ids is not None else None
    for r, (pos, row) in enumerate(zip(positions, rows)):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
        if types is not None:
            types[r, : len(row)] = token_type_ids[pos]  # type: ignore[index]
    return Batch(
        positions=positions,
        input_ids=to_device(ids),
        attention_mask=to_device(mask),
        token_type_ids=None if types is None else to_device(types),
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is a device or host out-of-memory error (and nothing else)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text
    )


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def progress_bar(total: int, show_progress: Optional[bool], desc: str) -> Any:
    """A tqdm bar over ``total`` texts, or ``None``: ``show_progress=None`` shows one from
    ``PROGRESS_THRESHOLD`` texts on."""
    if show_progress is None:
        show_progress = total >= PROGRESS_THRESHOLD
    if not show_progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text")


def run_batches(
    input_ids: Sequence[Sequence[int]],
    forward: Callable[[Batch], T],
    *,
    pad_id: int,
    device: torch.device,
    max_batch_size: int,
    max_batch_tokens: int,
    token_type_ids: Optional[Sequence[Sequence[int]]] = None,
    show_progress: Optional[bool] = None,
    desc: str = "Batches",
    streams: Optional[int] = None,
    threads: Optional[int] = None,
    prefetch: Optional[bool] = None,
) -> Iterator[tuple[np.ndarray, T]]:
    """Run ``forward`` over token-budget batches; yield ``(input positions, output)`` pairs.

    ``forward`` runs under ``torch.inference_mode``. Batches come longest first, so the first
    one is the largest: an out-of-memory error shows early. Pairs come in plan order however
    the batches run.

    Args:
        streams, threads: CPU execution (see :func:`cpu_plan`); ignored on accelerators.
        prefetch: Collate the next batch on a helper thread while this one runs (default: on
            accelerators only). On a CPU this only adds a thread; it exists there for tests.
    """
    lengths = [len(ids) for ids in input_ids]
    batches = plan_batches(lengths, max_batch_size, max_batch_tokens,
                           batch_overhead=CPU_BATCH_OVERHEAD if device.type == "cpu" else None)
    progress = progress_bar(len(lengths), show_progress, desc)

    def make(positions: np.ndarray) -> Batch:
        return collate(input_ids, positions, pad_id, device, token_type_ids)

    def attempt(positions: np.ndarray, ready: Optional[Batch] = None) -> Iterator[tuple[np.ndarray, T]]:
        try:
            batch = ready if ready is not None else make(positions)
            with torch.inference_mode():
                output = forward(batch)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            ready = None
            _free_cache(device)
            if positions.size == 1:
                raise BGEOutOfMemoryError(
                    f"Out of memory on {device} with a single text of {lengths[int(positions[0])]} tokens; "
                    f"lower max_length, use precision='fp16'/'bf16', or a device with more memory."
                ) from exc
            half = positions.size // 2
            logger.warning("Out of memory on %s with %d texts; retrying in two halves.", device, positions.size)
            yield from attempt(positions[:half])
            yield from attempt(positions[half:])
            return
        yield positions, output

    if prefetch is None:
        prefetch = _env_flag(PREFETCH_ENV)
    if device.type == "cpu" and not prefetch:
        wanted = cpu_plan(len(lengths), streams=streams, threads=threads).streams
        batches = split_for_streams(batches, wanted)
        results = _run_cpu(batches, attempt, cpu_plan(len(batches), streams=streams, threads=threads))
    elif prefetch is False:
        results = (pair for positions in batches for pair in attempt(positions))
    else:
        results = (pair for positions, ready in _prefetched(batches, make) for pair in attempt(positions, ready))
    try:
        for done, output in results:
            yield done, output
            if progress is not None:
                progress.update(done.size)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
        if progress is not None:
            progress.close()


Attempt = Callable[[np.ndarray], Iterator[tuple[np.ndarray, Any]]]


def _run_cpu(batches: list[np.ndarray], attempt: Attempt, plan: CpuPlan) -> Iterator[tuple[np.ndarray, Any]]:
    """Batches on the CPU: in the calling thread, or as ``plan.streams`` workers, in plan order."""
    set_threads = thread_control()
    inline = plan.streams == 1 and (set_threads is None or plan.threads == torch.get_num_threads())
    if inline or not batches:
        for positions in batches:
            yield from attempt(positions)
        return

    def task(positions: np.ndarray) -> list[tuple[np.ndarray, Any]]:
        set_threads(plan.threads)  # type: ignore[misc]  # this worker thread only
        return list(attempt(positions))

    pool = _pool(plan.streams)
    pending: deque[Future] = deque()
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


def _prefetched(batches: Iterable[np.ndarray], make: Callable[[np.ndarray], Batch],
                depth: int = 2) -> Iterator[tuple[np.ndarray, Optional[Batch]]]:
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
                    ready: Optional[Batch] = make(positions)
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
            try:
                items.get(timeout=0.05)
            except queue.Empty:
                pass
        helper.join()


__all__ = [
    "Batch",
    "CpuPlan",
    "DEFAULT_BATCH_SIZE",
    "PREFETCH_ENV",
    "STREAMS_ENV",
    "THREADS_ENV",
    "TOKENIZE_AHEAD_ENV",
    "TOKENIZE_AHEAD_TEXTS",
    "tokenize_ahead_setting",
    "check_positive",
    "collate",
    "cpu_execution",
    "cpu_plan",
    "thread_control",
    "resolve_max_batch_tokens",
    "is_out_of_memory",
    "plan_batches",
    "run_batches",
    "split_for_streams",
]

"""One job end to end: plan the batches, collate, run them with an executor, report progress."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

from .collate import Batch, collate
from .executors import Executor, executor_for
from .oom import with_backoff
from .plan import CPU_BATCH_OVERHEAD, plan_batches
from .progress import progress_bar

T = TypeVar("T")


def run_batches(
    input_ids: Sequence[Sequence[int]],
    forward: Callable[[Batch], T],
    *,
    pad_id: int,
    device: torch.device,
    max_batch_size: int,
    max_batch_tokens: int,
    token_type_ids: Sequence[Sequence[int]] | None = None,
    show_progress: bool | None = None,
    desc: str = "Batches",
    executor: Executor | None = None,
    streams: int | None = None,
    threads: int | None = None,
    prefetch: bool | None = None,
) -> Iterator[tuple[np.ndarray, T]]:
    """Run ``forward`` over token-budget batches; yield ``(input positions, output)`` pairs.

    ``forward`` runs under ``torch.inference_mode``. Batches come longest first, so the first
    one is the largest: an out-of-memory error shows early. Pairs come in plan order however
    the batches run.

    Args:
        input_ids: Token ids of each input.
        forward: The model's work on one padded :class:`Batch`.
        pad_id: The tokenizer's padding id.
        device: Where the batches run.
        max_batch_size: Rows per batch at most.
        max_batch_tokens: Padded tokens per batch at most.
        token_type_ids: Token type ids of each input, padded like ``input_ids`` when given.
        show_progress: A progress bar (``None``: for long jobs only).
        desc: The progress bar's label.
        executor: How the batches run: an engine passes the one it chose when it was built
            (:func:`~bge_core.batching.executor_for`); default: one chosen now for ``device``.
        streams: CPU streams for this call (see :func:`~bge_core.batching.cpu_plan`); ignored by
            executors other than CPU streams.
        threads: Threads per CPU stream for this call (see :func:`~bge_core.batching.cpu_plan`);
            ignored by executors other than CPU streams.
        prefetch: Only without ``executor``: collate the next batch on a helper thread while this
            one runs (default: ``BGE_RAG_PREFETCH``, else accelerators only). On a CPU this only
            adds a thread; it exists there for tests.

    Raises:
        TypeError: both ``executor`` and ``prefetch`` were given.
    """
    if executor is not None and prefetch is not None:
        raise TypeError("run_batches takes executor= or prefetch=, not both (the executor decides prefetching)")
    if executor is None:
        executor = executor_for(device, prefetch=prefetch)
    lengths = [len(ids) for ids in input_ids]
    batches = plan_batches(
        lengths, max_batch_size, max_batch_tokens, batch_overhead=CPU_BATCH_OVERHEAD if device.type == "cpu" else None
    )
    progress = progress_bar(len(lengths), show_progress, desc)

    def make(positions: np.ndarray) -> Batch:
        return collate(input_ids, positions, pad_id, device, token_type_ids)

    results = executor.run(
        batches, with_backoff(forward, make, device, lengths), make, streams=streams, threads=threads
    )
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


__all__ = ["run_batches"]

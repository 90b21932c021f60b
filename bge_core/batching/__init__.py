"""Token-budget batching: tokenize once, sort by length, batch, pad per batch, restore order.

One module per job:

- :mod:`.plan` (numpy only): which texts share a batch. Texts are sorted longest first; each
  batch takes as many texts as fit both ``max_batch_size`` and ``max_batch_tokens`` (rows x
  padded length), so long texts get small batches and short texts large ones.
- :mod:`.collate`: a batch's rows right-padded into tensors on the device (:class:`Batch`).
- :mod:`.oom`: out-of-memory errors (and only those) split the failing batch in two, down to one
  text; a single text that still does not fit raises :class:`~bge_core.errors.BGEOutOfMemoryError`.
- :mod:`.executors`: how the batches run (inline, CPU streams, accelerator prefetching): one
  :class:`Executor` per engine, chosen when it is built (:func:`executor_for`).
- :mod:`.threads`: the per-thread intra-op thread count CPU streams use (OpenMP through ctypes).
- :mod:`.progress`: the progress bar of long jobs.
- :mod:`.run`: :func:`run_batches`, one job through all of the above.

Results are written back by input position, so the caller sees input order.
"""

from __future__ import annotations

from .collate import Batch, collate
from .executors import (
    TOKENIZE_AHEAD_TEXTS,
    CpuPlan,
    CpuStreamsExecutor,
    Executor,
    InlineExecutor,
    PrefetchExecutor,
    cpu_execution,
    cpu_plan,
    executor_for,
)
from .oom import is_out_of_memory
from .plan import (
    CPU_ACTIVATION_BUDGET,
    CPU_BATCH_OVERHEAD,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_TOKENS,
    plan_batches,
    resolve_max_batch_tokens,
    split_for_streams,
)
from .progress import PROGRESS_THRESHOLD, progress_bar
from .run import run_batches
from .threads import thread_control

__all__ = [
    "Batch",
    "CPU_ACTIVATION_BUDGET",
    "CPU_BATCH_OVERHEAD",
    "CpuPlan",
    "CpuStreamsExecutor",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_TOKENS",
    "Executor",
    "InlineExecutor",
    "PROGRESS_THRESHOLD",
    "PrefetchExecutor",
    "TOKENIZE_AHEAD_TEXTS",
    "collate",
    "cpu_execution",
    "cpu_plan",
    "executor_for",
    "is_out_of_memory",
    "plan_batches",
    "progress_bar",
    "resolve_max_batch_tokens",
    "run_batches",
    "split_for_streams",
    "thread_control",
]

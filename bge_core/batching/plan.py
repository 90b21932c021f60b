"""The batch plan: which texts share a batch (pure numpy, no torch).

Texts are sorted longest first; each batch takes as many texts as fit both ``max_batch_size``
and ``max_batch_tokens`` (rows x padded length), so long texts get small batches and short
texts large ones. On CPUs the cut of the sorted texts into batches also counts a fixed cost per
batch (:data:`CPU_BATCH_OVERHEAD`, see :func:`plan_batches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checks import check_positive

if TYPE_CHECKING:
    import torch

#: Texts per batch at most (the caller's ``batch_size``).
DEFAULT_BATCH_SIZE = 256
#: Padded tokens per batch at most on accelerators.
DEFAULT_MAX_BATCH_TOKENS = {"cuda": 65536, "mps": 16384}
#: On CPUs the best budget keeps a batch's activations cache-resident, so it shrinks as the
#: model's FFN widens (about 1-2k tokens for MiniLM's FFN 1536, 512 for BERT-base and -large
#: shapes, against 4-8k before; ``benchmarks/bench.py --shapes`` compares them). The budget is
#: this many FFN activations, rounded down to a power of two and kept within [512, 8192].
CPU_ACTIVATION_BUDGET = 1 << 21
#: On a CPU each batch costs a fixed amount besides its padded tokens (per-operator and weight
#: traffic costs of a forward pass), worth on one thread roughly a hundred padded tokens for
#: MiniLM-L6 and BERT-base shapes. CPU batches are planned to minimize this overhead plus padded
#: tokens (see :func:`plan_batches`), so a server's coalesced queries of mixed lengths are neither
#: padded to the longest one nor cut into many tiny batches. A smaller value than the one-thread
#: cost works best with two streams, which need batches enough to share out
#: (``benchmarks/serve_load.py`` and ``benchmarks/bench.py --corpora queries`` measure it).
CPU_BATCH_OVERHEAD = 64


def resolve_max_batch_tokens(max_batch_tokens: int | None, device: torch.device, config: Any = None) -> int:
    """The caller's token budget per batch, or the default for the device and model shape.

    Args:
        max_batch_tokens: The caller's budget, or ``None`` for the default.
        device: Where the batches run (only its ``type`` is used).
        config: The model's config: on CPUs its ``intermediate_size`` (FFN width) sizes the budget.

    Returns:
        Padded tokens per batch at most.

    Raises:
        ConfigError: ``max_batch_tokens`` is not a positive integer.
    """
    if max_batch_tokens is not None:
        return check_positive("max_batch_tokens", max_batch_tokens)
    if device.type != "cpu":
        return DEFAULT_MAX_BATCH_TOKENS.get(device.type, 8192)
    hidden = int(getattr(config, "hidden_size", 768) or 768)
    ffn = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
    budget = 1 << max(0, (CPU_ACTIVATION_BUDGET // max(ffn, 1)).bit_length() - 1)
    return max(512, min(8192, budget))


def plan_batches(
    lengths: Sequence[int],
    max_batch_size: int,
    max_batch_tokens: int,
    *,
    batch_overhead: int | None = None,
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
        min_rows: With ``batch_overhead``, the fewest rows a batch gets where the limits allow.

    Returns:
        Arrays of input positions, one per batch, covering every input exactly once.
    """
    counts = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-counts, kind="stable")
    sorted_lengths = np.maximum(counts[order], 1)
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
    """``batches`` with the largest split in halves until there are ``streams`` of them.

    So a small job (a server's coalesced queries: one batch by the token budget) still keeps every
    CPU stream busy instead of running on one stream's threads. Halves keep at least ``min_rows``
    rows: a few texts stay in one batch, so equal texts keep bit-equal outputs (a GEMM's rounding
    can depend on its row count), and reranker ties keep their input order.

    Splitting only shrinks batches, so each stays within the token budget.

    Args:
        batches: Input positions of each batch, in plan order.
        streams: How many batches the job should have at least.
        min_rows: Rows each half keeps at least (a batch smaller than twice this is not split).

    Returns:
        The batches, the split halves in place of the batch they came from.
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


__all__ = [
    "CPU_ACTIVATION_BUDGET",
    "CPU_BATCH_OVERHEAD",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_TOKENS",
    "plan_batches",
    "resolve_max_batch_tokens",
    "split_for_streams",
]

"""Out-of-memory back-off: a batch that does not fit is split in two, down to one text.

Only real out-of-memory errors (:func:`is_out_of_memory`) are caught; any other error
propagates. A single text that still does not fit raises
:class:`~bge_core.errors.BGEOutOfMemoryError` saying what to change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import BGEOutOfMemoryError
from .collate import Batch

logger = logging.getLogger(__name__)

#: ``(input positions, forward's output)`` for one batch that ran.
Pair = tuple[np.ndarray, Any]
#: Runs one planned batch (collated by the caller when given, else by itself) and yields its
#: pairs: one, or more when out-of-memory errors split it.
Attempt = Callable[[np.ndarray, Batch | None], Iterator[Pair]]


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is a device or host out-of-memory error (and nothing else)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text
    )


def free_cache(device: torch.device) -> None:
    """Return the allocator's cached blocks on ``device`` (CUDA, MPS) before a retry."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def with_backoff(
    forward: Callable[[Batch], Any],
    make: Callable[[np.ndarray], Batch],
    device: torch.device,
    lengths: Sequence[int],
) -> Attempt:
    """An :data:`Attempt` running ``forward`` under ``torch.inference_mode`` with OOM back-off.

    Args:
        forward: The model's work on one padded batch.
        make: Collates the rows at some input positions into a :class:`Batch` on ``device``.
        device: Where the batches run (its cache is freed before a retry).
        lengths: Token count of each input, for the error message.

    Returns:
        ``attempt(positions, ready)``: yields ``(positions, output)``; after an out-of-memory
        error, the pairs of the two halves instead.

    Raises:
        BGEOutOfMemoryError: (from the attempt) a single text does not fit.
    """

    def attempt(positions: np.ndarray, ready: Batch | None = None) -> Iterator[Pair]:
        try:
            batch = ready if ready is not None else make(positions)
            with torch.inference_mode():
                output = forward(batch)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            ready = None
            free_cache(device)
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

    return attempt


__all__ = ["Attempt", "Pair", "free_cache", "is_out_of_memory", "with_backoff"]

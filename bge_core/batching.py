"""Token-budget batching: tokenize once, sort by length, batch, pad per batch, restore order.

Texts are sorted longest first; each batch takes as many texts as fit both ``max_batch_size``
and ``max_batch_tokens`` (rows x padded length), so long texts get small batches and short
texts large ones. Results are written back by input position, so the caller sees input order.

Out-of-memory errors (and only those) split the failing batch in two, down to one text; a
single text that still does not fit raises :class:`~bge_core.errors.BGEOutOfMemoryError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

import numpy as np
import torch

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


def check_positive(name: str, value: Any) -> int:
    """Validate a positive integer argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


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


def plan_batches(lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int) -> list[np.ndarray]:
    """Group input positions into batches, longest texts first.

    Args:
        lengths: token count of each input.
        max_batch_size: most rows in a batch.
        max_batch_tokens: most padded tokens (rows x longest row) in a batch; a text longer than
            this still gets a batch of its own.

    Returns:
        Arrays of input positions, one per batch, covering every input exactly once.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < order.size:
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_batch_size, max_batch_tokens // longest))
        batches.append(order[start : start + size])
        start += size
    return batches


def collate(
    input_ids: Sequence[Sequence[int]],
    positions: np.ndarray,
    pad_id: int,
    device: torch.device,
    token_type_ids: Optional[Sequence[Sequence[int]]] = None,
) -> Batch:
    """Right-pad the rows at ``positions`` into tensors on ``device``."""
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
        input_ids=torch.from_numpy(ids).to(device),
        attention_mask=torch.from_numpy(mask).to(device),
        token_type_ids=None if types is None else torch.from_numpy(types).to(device),
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
) -> Iterator[tuple[np.ndarray, T]]:
    """Run ``forward`` over token-budget batches; yield ``(input positions, output)`` pairs.

    ``forward`` runs under ``torch.inference_mode``. Batches come longest first, so the first
    one is the largest: an out-of-memory error shows early.
    """
    lengths = [len(ids) for ids in input_ids]
    batches = plan_batches(lengths, max_batch_size, max_batch_tokens)
    if show_progress is None:
        show_progress = len(lengths) >= PROGRESS_THRESHOLD
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(lengths), desc=desc, unit="text")

    def attempt(positions: np.ndarray) -> Iterator[tuple[np.ndarray, T]]:
        try:
            batch = collate(input_ids, positions, pad_id, device, token_type_ids)
            with torch.inference_mode():
                output = forward(batch)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
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

    try:
        for positions in batches:
            for done, output in attempt(positions):
                yield done, output
                if progress is not None:
                    progress.update(done.size)
    finally:
        if progress is not None:
            progress.close()


__all__ = [
    "Batch",
    "DEFAULT_BATCH_SIZE",
    "check_positive",
    "collate",
    "resolve_max_batch_tokens",
    "is_out_of_memory",
    "plan_batches",
    "run_batches",
]

"""Padding: the rows of one planned batch as right-padded tensors on the device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Batch:
    """A padded batch on its device, and the input positions of its rows."""

    positions: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None = None

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """The keyword arguments of a Hugging Face model's forward: ids, mask and token types if any."""
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs


def collate(
    input_ids: Sequence[Sequence[int]],
    positions: np.ndarray,
    pad_id: int,
    device: torch.device,
    token_type_ids: Sequence[Sequence[int]] | None = None,
    pin_memory: bool | None = None,
) -> Batch:
    """Right-pad the rows at ``positions`` into tensors on ``device``.

    On CUDA (``pin_memory=None``) the host tensors are pinned and copied with
    ``non_blocking=True``, so the copy overlaps the work already queued on the device.

    Args:
        input_ids: Token ids of every input.
        positions: The inputs of this batch.
        pad_id: The padding id written after each row.
        device: Where the tensors go.
        token_type_ids: Token type ids of every input, padded with zeros, when the model takes them.
        pin_memory: Pin the host tensors before the copy (default: on CUDA only).

    Returns:
        The batch: ids, attention mask (1 on real tokens) and token types if given.
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


__all__ = ["Batch", "collate"]

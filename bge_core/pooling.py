"""Sentence pooling of token states: CLS, mean over real tokens, or the last real token.

Inputs are right-padded (see :mod:`bge_core.batching`), so a row's last real token sits at
``attention_mask.sum() - 1``. Results are float32 whatever the model's dtype.
"""

from __future__ import annotations

import torch

from .registry import Pooling, check_pooling


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool ``(batch, tokens, dim)`` hidden states into ``(batch, dim)`` float32 vectors.

    Mean pooling matches FlagEmbedding: ``sum(h * mask) / sum(mask)``.
    """
    check_pooling(pooling)
    if pooling == "cls":
        return hidden[:, 0].float()
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).float()
        return (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1)
    last = attention_mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()


__all__ = ["pool"]

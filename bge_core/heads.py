"""BGE-M3's output heads: sparse lexical weights and ColBERT token vectors.

Both heads read the same last hidden states as the dense vector, so one forward pass serves
every requested output. They follow FlagEmbedding's ``BGEM3FlagModel`` exactly (identical ids,
weights and vectors to 1e-5 at ``precision="fp32"``; at the bf16 default the measured ColBERT
vectors keep a cosine of at least 0.9997 to fp32 and sparse weights move by at most 0.08,
``benchmarks/bf16_deviation.py``):

- sparse: ``relu(sparse_linear(h))`` per token; drop the tokenizer's cls, eos, pad and unk ids
  (BERT has no eos token, so its ``[SEP]`` keeps a weight; XLM-R drops ``</s>``); keep weights
  above zero; a token id seen several times keeps its largest weight.
- ColBERT: ``colbert_linear(h[:, 1:])`` on the real tokens (CLS dropped, final EOS kept,
  ``len(input_ids) - 1`` vectors per text), then L2-normalized.

The head files are plain ``torch.nn.Linear`` state dicts, loaded with ``weights_only=True``. A
requested head whose file is missing is an error (FlagEmbedding silently uses random heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MissingHeadError, ModelLoadError
from .types import SparseVector

HEAD_FILES = {"sparse": "sparse_linear.pt", "colbert": "colbert_linear.pt"}


def load_linear(path: Path, hidden_size: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Linear:
    """Load a ``Linear(hidden_size, out)`` state dict saved by FlagEmbedding."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign pickle
        raise ModelLoadError(f"Cannot read {path}: {exc}") from exc
    weight = state.get("weight") if isinstance(state, dict) else None
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != hidden_size:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
        raise ModelLoadError(f"{path} is not a Linear({hidden_size}, n) state dict (weight shape {shape}).")
    layer = torch.nn.Linear(hidden_size, weight.shape[0], bias="bias" in state)
    layer.load_state_dict(state)
    return layer.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_head(folder: Path, name: str, hidden_size: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Linear:
    """Load the ``"sparse"`` or ``"colbert"`` head of a BGE-M3 folder.

    Raises:
        MissingHeadError: the folder has no such head file.
    """
    path = folder / HEAD_FILES[name]
    if not path.is_file():
        raise MissingHeadError(
            f"{name} output requested, but {str(folder)!r} has no {HEAD_FILES[name]}: only BGE-M3 "
            f"checkpoints ship it. Request dense output only, or use a BGE-M3 model."
        )
    return load_linear(path, hidden_size, device, dtype)


def unused_token_ids(tokenizer: Any) -> np.ndarray:
    """Ids FlagEmbedding leaves out of lexical weights: the cls, eos, pad and unk tokens."""
    ids = []
    for name in ("cls_token", "eos_token", "pad_token", "unk_token"):
        if getattr(tokenizer, name, None) is not None:
            token_id = getattr(tokenizer, f"{name}_id", None)
            if token_id is not None:
                ids.append(int(token_id))
    return np.asarray(sorted(set(ids)), dtype=np.int64)


@dataclass(frozen=True)
class M3Heads:
    """The heads a request needs, and the ids the sparse head ignores."""

    sparse: torch.nn.Linear | None = None
    colbert: torch.nn.Linear | None = None
    unused_ids: np.ndarray | None = None


def sparse_vectors(
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    head: torch.nn.Linear,
    unused_ids: np.ndarray,
) -> list[SparseVector]:
    """Lexical weights of each row, vectorized over the batch (no Python loop per token)."""
    weights = torch.relu(head(hidden)).squeeze(-1).float().cpu().numpy()
    ids = input_ids.cpu().numpy()
    keep = attention_mask.cpu().numpy().astype(bool) & (weights > 0) & ~np.isin(ids, unused_ids)
    rows, cols = np.nonzero(keep)
    token_ids = ids[rows, cols]
    values = weights[rows, cols]
    # Group by (row, token id) and keep the largest weight of each group.
    order = np.lexsort((token_ids, rows))
    rows, token_ids, values = rows[order], token_ids[order], values[order]
    if values.size:
        starts = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (token_ids[1:] != token_ids[:-1])])
        values = np.maximum.reduceat(values, starts)
        rows, token_ids = rows[starts], token_ids[starts]
    bounds = np.searchsorted(rows, np.arange(ids.shape[0] + 1))
    return [
        SparseVector(token_ids[bounds[r] : bounds[r + 1]], values[bounds[r] : bounds[r + 1]])
        for r in range(ids.shape[0])
    ]


def colbert_vectors(
    hidden: torch.Tensor, attention_mask: torch.Tensor, head: torch.nn.Linear, truncate_dim: int | None = None
) -> list[np.ndarray]:
    """ColBERT vectors of each row: real tokens after CLS, projected, cut, normalized."""
    mask = attention_mask[:, 1:].bool()
    tokens = head(hidden[:, 1:][mask]).float()
    if truncate_dim is not None:
        tokens = tokens[:, :truncate_dim]
    tokens = F.normalize(tokens, dim=-1).cpu().numpy()
    counts = mask.sum(dim=1).cpu().numpy()
    return np.split(tokens, np.cumsum(counts)[:-1])


__all__ = ["HEAD_FILES", "M3Heads", "colbert_vectors", "load_head", "load_linear", "sparse_vectors", "unused_token_ids"]

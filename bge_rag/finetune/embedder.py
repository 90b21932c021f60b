"""Embedder fine-tuning pieces: the batch collator and the model built from a checkpoint.

:class:`EmbedderCollator` turns training rows into FlagEmbedding's batch: each row's group
sampled (:func:`~bge_rag.finetune.data.sample_group`), queries tokenized to ``query_max_len`` and
passages to ``passage_max_len`` and padded as FlagEmbedding's ``AbsEmbedderCollator`` does, teacher
scores as the label. sentence-transformers' trainer hands the two feature sets to the loss in
that order (``query_*`` then ``passage_*`` columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .data import GroupCollator, TrainGroup


def tokenize(tokenizer: Any, texts: list[str], max_length: int, pad_to_multiple_of: int | None) -> dict[str, Any]:
    """FlagEmbedding's collation of one side: truncate to ``max_length``, pad to the longest, tensors."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_tensors=None)
    return dict(tokenizer.pad(encoded, padding=True, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt"))


@dataclass
class EmbedderCollator(GroupCollator):
    """Training rows -> ``query_*`` / ``passage_*`` features (and ``label``: teacher scores) for the trainer.

    The settings are :class:`~bge_rag.finetune.data.GroupCollator`'s; a line's own query
    instruction is its ``prompt`` field (FlagEmbedding's embedder datasets).
    """

    def collate(self, groups: Sequence[TrainGroup]) -> dict[str, Any]:
        """The batch of already-sampled groups."""
        queries = [g.query for g in groups]
        passages = [p for g in groups for p in g.passages]
        batch: dict[str, Any] = {}
        for prefix, texts, limit in (
            ("query", queries, self.query_max_len),
            ("passage", passages, self.passage_max_len),
        ):
            for key, value in tokenize(self.tokenizer, texts, limit, self.pad_to_multiple_of).items():
                batch[f"{prefix}_{key}"] = value
        if groups and groups[0].teacher_scores is not None:
            batch["label"] = torch.tensor([g.teacher_scores for g in groups], dtype=torch.float32)
        return batch


__all__ = ["EmbedderCollator", "tokenize"]

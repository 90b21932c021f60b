"""Embedder fine-tuning pieces: the batch collator and the model built from a checkpoint.

:class:`EmbedderCollator` turns training rows into FlagEmbedding's batch: each row's group
sampled (:func:`~bge_rag.finetune.data.sample_group`), queries tokenized to ``query_max_len`` and
passages to ``passage_max_len`` and padded as FlagEmbedding's ``AbsEmbedderCollator`` does, teacher
scores as the label. sentence-transformers' trainer hands the two feature sets to the loss in
that order (``query_*`` then ``passage_*`` columns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .data import TrainGroup, group_rng, sample_group


def tokenize(tokenizer: Any, texts: list[str], max_length: int, pad_to_multiple_of: int | None) -> dict[str, Any]:
    """FlagEmbedding's collation of one side: truncate to ``max_length``, pad to the longest, tensors."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_tensors=None)
    return dict(tokenizer.pad(encoded, padding=True, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt"))


@dataclass
class EmbedderCollator:
    """Training rows -> ``query_*`` / ``passage_*`` features (and ``label``: teacher scores) for the trainer.

    Attributes:
        tokenizer: The model's tokenizer.
        train_group_size: Passages per query.
        query_max_len: Query token budget.
        passage_max_len: Passage token budget.
        pad_to_multiple_of: Pad lengths to a multiple of this.
        query_instruction: ``query_instruction_for_retrieval``.
        query_instruction_format: Its format.
        passage_instruction: ``passage_instruction_for_retrieval``.
        passage_instruction_format: Its format.
        shuffle_ratio: FlagEmbedding's positive-shuffling augmentation.
        seed: Seeds group sampling (with the epoch and the row).
        epoch: The current epoch (set by :class:`~bge_rag.finetune.training.EpochCallback`).
    """

    tokenizer: Any
    train_group_size: int
    query_max_len: int = 32
    passage_max_len: int = 128
    pad_to_multiple_of: int | None = None
    query_instruction: str | None = None
    query_instruction_format: str = "{}{}"
    passage_instruction: str | None = None
    passage_instruction_format: str = "{}{}"
    shuffle_ratio: float = 0.0
    seed: int = 42
    epoch: int = 0
    valid_label_columns: list[str] = field(default_factory=list)

    def group(self, row: Mapping[str, Any]) -> TrainGroup:
        """The row's group for the current epoch."""
        return sample_group(
            row,
            train_group_size=self.train_group_size,
            rng=group_rng(self.seed, self.epoch, int(row["row"])),
            query_instruction=self.query_instruction,
            query_instruction_format=self.query_instruction_format,
            passage_instruction=self.passage_instruction,
            passage_instruction_format=self.passage_instruction_format,
            shuffle_ratio=self.shuffle_ratio,
        )

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

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The batch of dataset rows: each row's group sampled, then :meth:`collate`."""
        return self.collate([self.group(row) for row in rows])


__all__ = ["EmbedderCollator", "tokenize"]

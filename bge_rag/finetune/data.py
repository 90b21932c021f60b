"""FlagEmbedding's fine-tuning data: JSONL files or folders, checked, and its group sampling.

A training line is ``{"query": str, "pos": [str, ...], "neg": [str, ...]}`` with, for
knowledge distillation, ``"pos_scores"`` / ``"neg_scores"`` (one number per text), and optionally
a per-line instruction (``"prompt"`` for embedders, ``"query_prompt"`` / ``"passage_prompt"`` for
rerankers). ``--train_data`` names files or folders; a folder contributes its ``.json`` /
``.jsonl`` files (FlagEmbedding's rule; also ``.jsonl.gz`` here), in name order.

Every line is checked when the data is read, so a bad one stops the run before training with an
error naming file and line (FlagEmbedding fails later, on an ``assert`` or a
``ZeroDivisionError``, without saying where).

Group sampling is FlagEmbedding's (``AbsEmbedderTrainDataset.__getitem__``): one positive drawn
at random; ``train_group_size - 1`` negatives drawn without replacement, or, when the line has
fewer, from its negatives repeated (so with replacement); teacher scores follow the texts drawn.
The draws come from a generator seeded by ``(seed, epoch, line)``, so a run is reproducible and
the groups do not depend on how the lines are split over processes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bge_core.errors import ConfigError, InvalidInputError
from bge_rag.mining.jsonl import read_training_lines

SUFFIXES = (".json", ".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class TrainGroup:
    """One training example after sampling: the query and its group of passages.

    ``passages[0]`` is the positive; ``teacher_scores`` (knowledge distillation) follow ``passages``.
    """

    query: str
    passages: list[str]
    teacher_scores: list[float] | None


def data_files(paths: Sequence[str | Path]) -> list[Path]:
    """The training files named by ``--train_data``: files as given, folders' JSON files in name order.

    Raises:
        ConfigError: a path does not exist, a file is not JSON lines, or nothing is found.
    """
    files: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
            if not found:
                raise ConfigError(f"--train_data {str(path)!r} is a folder with no .json / .jsonl file")
            files.extend(found)
        elif path.is_file():
            if not path.name.endswith(SUFFIXES):
                raise ConfigError(
                    f"--train_data {str(path)!r} is not a .json / .jsonl file (FlagEmbedding would skip it silently)"
                )
            files.append(path)
        else:
            raise ConfigError(f"--train_data {str(path)!r} does not exist")
    if not files:
        raise ConfigError("--train_data names no file: give JSONL files or folders of them")
    return files


def _scores(where: str, record: Mapping[str, Any], key: str, texts: str) -> list[float]:
    if key not in record:
        raise InvalidInputError(f"{where}: --knowledge_distillation needs {key!r} (one teacher score per {texts!r})")
    value = record[key]
    if not isinstance(value, list) or not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in value
    ):
        raise InvalidInputError(f"{where}: {key!r} must be a list of finite numbers")
    if len(value) != len(record[texts]):
        raise InvalidInputError(
            f"{where}: {key!r} has {len(value)} scores for {len(record[texts])} texts in {texts!r}; one score per text"
        )
    return [float(s) for s in value]


def _optional_text(where: str, record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{where}: {key!r} must be a string")
    return value


def read_train_data(
    paths: Sequence[str | Path],
    *,
    train_group_size: int,
    knowledge_distillation: bool = False,
    max_example_num_per_dataset: int | None = None,
    seed: int = 42,
) -> list[dict[str, Any]]:
    """The checked training rows of every file.

    Each row has ``row`` (its position over all files), ``query``, ``pos``, ``neg``, ``pos_scores``
    and ``neg_scores`` (``None`` without distillation), and ``prompt``, ``query_prompt``,
    ``passage_prompt`` (``None`` when the line has none).

    Args:
        paths: ``--train_data``: files and folders.
        train_group_size: Texts per query (1 positive + negatives); a line needs at least one
            negative when it is above 1.
        knowledge_distillation: Require ``pos_scores`` / ``neg_scores`` and keep them.
        max_example_num_per_dataset: At most this many lines of each file, a seeded random choice
            (FlagEmbedding's option; ``None``: all).
        seed: Seeds that choice.

    Raises:
        ConfigError: a path is missing or not JSON lines, or a file has no line.
        InvalidInputError: a bad line (``file:line`` in the message).
    """
    if train_group_size < 1:
        raise ConfigError(f"--train_group_size must be at least 1 (1 positive + negatives), got {train_group_size}")
    rows: list[dict[str, Any]] = []
    for path in data_files(paths):
        lines = read_training_lines(path, require_neg=train_group_size > 1)
        if not lines:
            raise ConfigError(f"--train_data file {str(path)!r} has no line")
        if max_example_num_per_dataset is not None and len(lines) > max_example_num_per_dataset:
            chosen = random.Random(seed).sample(range(len(lines)), max_example_num_per_dataset)
            lines = [lines[i] for i in sorted(chosen)]
        for where, record in lines:
            if not record["pos"]:
                raise InvalidInputError(f"{where}: 'pos' is empty; every line needs a positive passage")
            if train_group_size > 1 and not record["neg"]:
                raise InvalidInputError(
                    f"{where}: 'neg' is empty and --train_group_size is {train_group_size}; give the line negatives "
                    "(bge-rag mine-negatives) or use --train_group_size 1"
                )
            row: dict[str, Any] = {
                "row": len(rows),
                "query": record["query"],
                "pos": list(record["pos"]),
                "neg": list(record.get("neg") or []),
                "pos_scores": _scores(where, record, "pos_scores", "pos") if knowledge_distillation else None,
                "neg_scores": _scores(where, record, "neg_scores", "neg") if knowledge_distillation else None,
            }
            for key in ("prompt", "query_prompt", "passage_prompt"):
                row[key] = _optional_text(where, record, key)
            rows.append(row)
    return rows


def group_rng(seed: int, epoch: int, row: int) -> random.Random:
    """The generator that samples ``row``'s group in ``epoch``: the same on every process and every run."""
    return random.Random(f"{seed}:{epoch}:{row}")


def shuffle_text(text: str, ratio: float, rng: random.Random) -> str:
    """FlagEmbedding's augmentation: with probability ``ratio``, a text over 100 characters cut in thirds, shuffled."""
    if ratio > 0 and len(text) > 100 and rng.random() < ratio:
        size = len(text) // 3 + 1
        parts = [text[i : i + size] for i in range(0, len(text), size)]
        rng.shuffle(parts)
        return " ".join(parts)
    return text


def sample_group(
    row: Mapping[str, Any],
    *,
    train_group_size: int,
    rng: random.Random,
    query_instruction: str | None = None,
    query_instruction_format: str = "{}{}",
    passage_instruction: str | None = None,
    passage_instruction_format: str = "{}{}",
    query_prompt_field: str = "prompt",
    passage_prompt_field: str | None = None,
    shuffle_ratio: float = 0.0,
) -> TrainGroup:
    """FlagEmbedding's group of one training row: the query and ``train_group_size`` passages.

    The query gets the instruction (the row's ``query_prompt_field`` when set, else
    ``query_instruction``) only when ``query_instruction`` is given, as in FlagEmbedding; passages
    get ``passage_instruction`` (or the row's ``passage_prompt_field``) the same way. With
    ``shuffle_ratio``, that share of positives over 100 characters have their thirds shuffled
    (FlagEmbedding's ``_shuffle_text``).
    """
    query = row["query"]
    if query_instruction is not None:
        query = query_instruction_format.format(row.get(query_prompt_field) or query_instruction, query)
    pos_idx = rng.choice(range(len(row["pos"])))
    passages = [shuffle_text(row["pos"][pos_idx], shuffle_ratio, rng)]
    negatives = row["neg"]
    want = train_group_size - 1
    if want > 0:
        all_idx = list(range(len(negatives)))
        if len(negatives) < want:
            neg_idxs = rng.sample(all_idx * math.ceil(want / len(negatives)), want)
        else:
            neg_idxs = rng.sample(all_idx, want)
    else:
        neg_idxs = []
    passages.extend(negatives[i] for i in neg_idxs)
    teacher: list[float] | None = None
    if row.get("pos_scores") is not None:
        teacher = [row["pos_scores"][pos_idx], *(row["neg_scores"][i] for i in neg_idxs)]
    if passage_instruction is not None:
        passages = [
            passage_instruction_format.format(
                (row.get(passage_prompt_field) if passage_prompt_field else None) or passage_instruction, p
            )
            for p in passages
        ]
    return TrainGroup(query, passages, teacher)


@dataclass
class GroupCollator:
    """What the embedder and reranker collators share: the settings of a batch and its group sampling.

    The trainer calls the collator with dataset rows (:func:`read_train_data`'s); each row's
    group is drawn for the current epoch (:func:`sample_group` with :func:`group_rng`), and
    :meth:`collate` (the subclass's) tokenizes the groups.

    Attributes:
        tokenizer: The model's tokenizer.
        train_group_size: Passages per query: 1 positive + negatives.
        query_max_len: FlagEmbedding's ``query_max_len``.
        passage_max_len: FlagEmbedding's ``passage_max_len``.
        pad_to_multiple_of: Pad lengths to a multiple of this (``None``: to the longest).
        query_instruction: The query instruction (a row's own prompt field replaces it).
        query_instruction_format: Joins instruction and query.
        passage_instruction: The passage instruction (a row's own prompt field replaces it).
        passage_instruction_format: Joins instruction and passage.
        shuffle_ratio: FlagEmbedding's positive-shuffling augmentation.
        seed: Seeds the group sampling (with the epoch and the row).
        epoch: The epoch whose groups are drawn (set at each epoch's start by the trainer's callback).
        valid_label_columns: Dataset columns sentence-transformers' batch samplers treat as
            labels (none: teacher scores come with the sampled groups).
    """

    #: The row fields holding a line's own instructions (FlagEmbedding's names for the model kind).
    query_prompt_field: ClassVar[str] = "prompt"
    passage_prompt_field: ClassVar[str | None] = None

    tokenizer: Any
    train_group_size: int = 8
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
        """``row``'s group in the current epoch."""
        return sample_group(
            row,
            train_group_size=self.train_group_size,
            rng=group_rng(self.seed, self.epoch, int(row["row"])),
            query_instruction=self.query_instruction,
            query_instruction_format=self.query_instruction_format,
            passage_instruction=self.passage_instruction,
            passage_instruction_format=self.passage_instruction_format,
            query_prompt_field=self.query_prompt_field,
            passage_prompt_field=self.passage_prompt_field,
            shuffle_ratio=self.shuffle_ratio,
        )

    def collate(self, groups: Sequence[TrainGroup]) -> dict[str, Any]:
        """The batch of sampled groups (the model kind's tokenization)."""
        raise NotImplementedError

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The batch of dataset rows: each row's group sampled, then :meth:`collate`."""
        return self.collate([self.group(row) for row in rows])


__all__ = [
    "SUFFIXES",
    "GroupCollator",
    "TrainGroup",
    "data_files",
    "group_rng",
    "read_train_data",
    "sample_group",
    "shuffle_text",
]

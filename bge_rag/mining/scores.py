"""Reranker scores for training lines, as FlagEmbedding's ``add_reranker_score.py`` adds them.

Every line ``{"query", "pos", "neg", ...}`` gets ``pos_scores`` and ``neg_scores``: the
reranker's score of each (query, passage) pair, in the order of ``pos`` and ``neg``. These are
the teacher scores FlagEmbedding's fine-tuning reads for distillation. All pairs of the file are
scored in one call, so batches are formed over the whole file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bge_rag.flag_cli import with_instruction

from .jsonl import read_training_file, write_jsonl

if TYPE_CHECKING:
    from bge_core import Reranker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringSummary:
    """What :func:`add_reranker_scores` did.

    Attributes:
        lines: Training lines written.
        pairs: (query, passage) pairs scored.
    """

    lines: int
    pairs: int


def add_reranker_scores(
    input_file: str | Path,
    output_file: str | Path,
    reranker: Reranker,
    *,
    query_instruction: str | None = None,
    query_instruction_format: str = "{}{}",
    passage_instruction: str | None = None,
    passage_instruction_format: str = "{}{}",
    batch_size: int | None = None,
) -> ScoringSummary:
    """Add ``pos_scores`` and ``neg_scores`` to every line of a FlagEmbedding training file.

    Args:
        input_file: JSONL, one ``{"query": str, "pos": [str], "neg": [str], ...}`` per line (a line
            without ``neg`` gets an empty ``neg_scores``).
        output_file: Where to write the lines with the two score lists added; other fields are kept.
        reranker: Scores the pairs; its ``normalize`` decides raw logits or sigmoid.
        query_instruction: Put before each query as FlagEmbedding's ``query_instruction_for_rerank``
            (``None``: none).
        query_instruction_format: Template joining instruction and query:
            ``format.format(instruction, query)``.
        passage_instruction: Put before each passage (``None``: none).
        passage_instruction_format: Template joining instruction and passage.
        batch_size: Pairs per forward pass (default: the reranker's).

    Returns:
        A :class:`ScoringSummary`.

    Raises:
        ConfigError: the input file is missing or the output cannot be written.
        InvalidInputError: a bad line (``file:line`` in the message).

    Example:
        >>> from bge_core import Reranker
        >>> rr = Reranker("BAAI/bge-reranker-base", precision="fp32")
        >>> add_reranker_scores("train_minedHN.jsonl", "train_scored.jsonl", rr)  # doctest: +SKIP
    """
    records = read_training_file(input_file)
    pairs = [
        (
            with_instruction(query_instruction, query_instruction_format, record["query"]),
            with_instruction(passage_instruction, passage_instruction_format, passage),
        )
        for record in records
        for passage in (*record["pos"], *record.get("neg", []))
    ]
    scores = reranker.score(pairs, batch_size=batch_size) if pairs else []
    out = []
    at = 0
    for record in records:
        n_pos, n_neg = len(record["pos"]), len(record.get("neg", []))
        pos_scores, neg_scores = scores[at : at + n_pos], scores[at + n_pos : at + n_pos + n_neg]
        at += n_pos + n_neg
        out.append(
            {**record, "pos_scores": [float(s) for s in pos_scores], "neg_scores": [float(s) for s in neg_scores]}
        )
    write_jsonl(output_file, out)
    logger.info("Scored %d pairs of %d lines", len(pairs), len(out))
    return ScoringSummary(lines=len(out), pairs=len(pairs))

"""Hard-negative mining with FlagEmbedding's ``hn_mine.py`` semantics, reproducibly.

For every training line ``{"query", "pos", "neg", ...}`` the query is searched (exact inner
product, as hn_mine's flat faiss index) against a corpus: the ``candidate_pool`` texts, or else
every ``pos`` and ``neg`` text of the input. The hits ranked ``[a, b)`` (``range_for_sampling``
``"a-b"``, 0-based) that are neither a positive nor the query itself are the candidates; when
there are more than ``negative_number`` of them, that many are drawn at random, else all are
kept in rank order. A line left with fewer is filled with texts drawn at random from the whole
corpus. The result replaces the line's ``neg``; every other field is kept.

What differs from hn_mine, on purpose:

- The corpus keeps the order in which texts first appear (hn_mine's comes from a Python
  ``set``) and every draw comes from ``random.Random(seed)``: the same input, model and seed give
  the same file (hn_mine's output differs on every run).
- The random fill skips the query and the negatives already chosen as well as the positives
  (hn_mine's may return the query, or a negative twice), and a corpus smaller than the draw gives
  what it has instead of hn_mine's ``ValueError``.
- An optional false-negative guard, as sentence-transformers' ``mine_hard_negatives``:
  ``relative_margin``, ``absolute_margin`` and ``max_score`` drop candidates that score too close
  to the query's positives, or too high; off by default.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bge_core.errors import ConfigError
from bge_core.scoring import dense_scores

from ..evaluation.search import search
from .jsonl import read_candidate_pool, read_training_file, write_jsonl

if TYPE_CHECKING:
    from bge_core import Embedder

logger = logging.getLogger(__name__)

#: The seed of the random draws when none is given.
DEFAULT_SEED = 42


def parse_range(text: str) -> tuple[int, int]:
    """``(a, b)`` of a ``range_for_sampling`` string ``"a-b"`` (0 <= a < b).

    Raises:
        ConfigError: not two non-negative integers joined by ``-`` with ``a < b``.
    """
    parts = str(text).split("-")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"range_for_sampling must look like '10-210' (ranks a to b, 0 <= a < b), got {text!r}")
    start, stop = int(parts[0]), int(parts[1])
    if start >= stop:
        raise ConfigError(f"range_for_sampling {text!r}: the start must be below the end")
    return start, stop


@dataclass(frozen=True)
class FalseNegativeGuard:
    """Candidates dropped before sampling, as sentence-transformers' ``mine_hard_negatives`` drops them.

    A candidate's score is its inner product with the query (the search score); the positive score
    used by the margins is the lowest score among the query's positives.

    Attributes:
        relative_margin: Drop a candidate scoring above ``pos - abs(pos) * relative_margin``.
        absolute_margin: Drop a candidate scoring above ``pos - absolute_margin``.
        max_score: Drop a candidate scoring above ``max_score``.
    """

    relative_margin: float | None = None
    absolute_margin: float | None = None
    max_score: float | None = None

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.relative_margin, self.absolute_margin, self.max_score))

    @property
    def needs_positive_scores(self) -> bool:
        """Whether a margin is set (the margins need the query's positive scores)."""
        return self.relative_margin is not None or self.absolute_margin is not None

    def threshold(self, positive_score: float | None) -> float:
        """The highest score a candidate may have (``inf``: no limit)."""
        limit = np.inf if self.max_score is None else float(self.max_score)
        if positive_score is not None:
            if self.relative_margin is not None:
                limit = min(limit, positive_score - abs(positive_score) * self.relative_margin)
            if self.absolute_margin is not None:
                limit = min(limit, positive_score - self.absolute_margin)
        return float(limit)


@dataclass(frozen=True)
class MiningSummary:
    """What :func:`mine_hard_negatives` did.

    Attributes:
        lines: Training lines written.
        corpus_size: Distinct texts searched.
        filled: Lines that needed texts from the random fill.
        short: Lines left with fewer than ``negative_number`` negatives (tiny corpus, or the guard).
        guarded: Candidates the false-negative guard dropped, over all lines.
    """

    lines: int
    corpus_size: int
    filled: int
    short: int
    guarded: int


def build_corpus(records: Sequence[dict[str, Any]], candidate_pool: Sequence[str] | None = None) -> list[str]:
    """The distinct texts to search, in order of first appearance.

    The candidate pool when given, else every ``pos`` then ``neg`` text of each line in turn.
    """
    if candidate_pool is not None:
        return list(dict.fromkeys(candidate_pool))
    texts: dict[str, None] = {}
    for record in records:
        texts.update(dict.fromkeys(record["pos"]))
        texts.update(dict.fromkeys(record.get("neg", [])))
    return list(texts)


def _positive_scores(
    records: Sequence[dict[str, Any]], corpus: list[str], q_vecs: np.ndarray, p_vecs: np.ndarray, embedder: Embedder
) -> list[float | None]:
    """The lowest query-positive score of each line (``None`` for a line without positives)."""
    where = {text: i for i, text in enumerate(corpus)}
    missing = list(dict.fromkeys(t for r in records for t in r["pos"] if t not in where))
    extra = embedder.encode_documents(missing) if missing else np.zeros((0, p_vecs.shape[1]), np.float32)
    extra_where = {text: i for i, text in enumerate(missing)}
    lowest: list[float | None] = []
    for q, record in zip(q_vecs, records):
        if not record["pos"]:
            lowest.append(None)
            continue
        vectors = np.stack([p_vecs[where[t]] if t in where else extra[extra_where[t]] for t in record["pos"]])
        lowest.append(float(np.min(dense_scores(vectors, q))))
    return lowest


def _candidates(
    record: dict[str, Any], corpus: Sequence[str], hits: np.ndarray, scores: np.ndarray, limit: float
) -> tuple[list[int], int]:
    """The ranked hits that are not a positive, the query, or above ``limit``; and how many the limit dropped."""
    positives = set(record["pos"])
    kept, dropped = [], 0
    for index, score in zip(hits.tolist(), scores.tolist()):
        text = corpus[index]
        if text in positives or text == record["query"]:
            continue
        if score > limit:
            dropped += 1
            continue
        kept.append(index)
    return kept, dropped


def _fill(
    picked: list[int],
    need: int,
    record: dict[str, Any],
    corpus: Sequence[str],
    rng: random.Random,
    score: Callable[[int], float] | None,
    limit: float,
) -> int:
    """Add up to ``need`` random corpus texts to ``picked``; returns how many the guard dropped.

    hn_mine draws ``need + len(pos)`` texts and drops the positives; the draw here also covers the
    query and the negatives already picked, which it skips too.
    """
    skip = set(record["pos"]) | {record["query"]} | {corpus[j] for j in picked}
    dropped = 0
    for index in rng.sample(range(len(corpus)), min(len(corpus), need + len(skip))):
        if need == 0:
            break
        if corpus[index] in skip:
            continue
        if score is not None and score(index) > limit:
            dropped += 1
            continue
        picked.append(index)
        need -= 1
    return dropped


def mine_records(
    records: Sequence[dict[str, Any]],
    corpus: Sequence[str],
    q_vecs: np.ndarray,
    p_vecs: np.ndarray,
    *,
    range_for_sampling: str = "10-210",
    negative_number: int = 15,
    seed: int | None = DEFAULT_SEED,
    guard: FalseNegativeGuard | None = None,
    positive_scores: Sequence[float | None] | None = None,
    search_batch_size: int | None = None,
) -> tuple[list[dict[str, Any]], MiningSummary]:
    """Mine negatives for records whose query and corpus vectors are given (the core of the command).

    Args:
        records: Training lines (``query``, ``pos``, optionally ``neg``, ...); not modified.
        corpus: The texts searched, ``p_vecs`` their vectors in the same order.
        q_vecs: One query vector per record (the query instruction applied).
        p_vecs: ``(len(corpus), D)`` document vectors.
        range_for_sampling: ``"a-b"``: ranks ``a`` (included) to ``b`` (excluded), from 0.
        negative_number: Negatives per line.
        seed: Seed of the random draws (``None``: fresh randomness, as hn_mine).
        guard: The false-negative guard (``None``: off).
        positive_scores: Per record, the lowest query-positive score (needed by the margins).
        search_batch_size: Queries scored per search block (``None``: as many as 64 MiB allow).

    Returns:
        The new records (copies, ``neg`` replaced) and a :class:`MiningSummary`.
    """
    start, stop = parse_range(range_for_sampling)
    if negative_number < 0:
        raise ConfigError(f"negative_number must be >= 0, got {negative_number}")
    guard = guard if guard is not None and guard.active else None
    if guard is not None and guard.needs_positive_scores and positive_scores is None:
        raise ConfigError("relative_margin / absolute_margin need the positive scores of every line")
    rng = random.Random(seed)
    q = np.asarray(q_vecs, dtype=np.float32).reshape(len(records), -1)
    p = np.asarray(p_vecs, dtype=np.float32)
    scores, hits = search(
        len(q), len(p), lambda a, b: np.atleast_2d(dense_scores(q[a:b], p)), stop, block_rows=search_batch_size
    )
    limits = [
        guard.threshold(positive_scores[i] if positive_scores is not None else None) if guard else np.inf
        for i in range(len(records))
    ]
    out: list[dict[str, Any]] = []
    chosen: list[list[int]] = []
    guarded = 0
    # First every line's draw from its ranked candidates, then every fill: hn_mine's order of draws.
    for i, record in enumerate(records):
        candidates, dropped = _candidates(record, corpus, hits[i, start:stop], scores[i, start:stop], limits[i])
        guarded += dropped
        chosen.append(rng.sample(candidates, negative_number) if len(candidates) > negative_number else candidates)
    filled = short = 0
    for i, record in enumerate(records):
        picked = chosen[i]
        need = negative_number - len(picked)
        if need > 0 and len(corpus):
            filled += 1
            score = (lambda index, i=i: float(np.dot(q[i], p[index]))) if guard is not None else None
            guarded += _fill(picked, need, record, corpus, rng, score, limits[i])
        short += len(picked) < negative_number
        out.append({**record, "neg": [corpus[j] for j in picked]})
    summary = MiningSummary(lines=len(out), corpus_size=len(corpus), filled=filled, short=short, guarded=guarded)
    return out, summary


def mine_hard_negatives(
    input_file: str | Path,
    output_file: str | Path,
    embedder: Embedder,
    *,
    candidate_pool: str | Path | None = None,
    range_for_sampling: str = "10-210",
    negative_number: int = 15,
    seed: int | None = DEFAULT_SEED,
    relative_margin: float | None = None,
    absolute_margin: float | None = None,
    max_score: float | None = None,
    search_batch_size: int | None = 64,
    query_embedder: Embedder | None = None,
) -> MiningSummary:
    """Mine hard negatives for a FlagEmbedding training file, as ``hn_mine.py`` does, reproducibly.

    Args:
        input_file: JSONL, one ``{"query": str, "pos": [str], "neg": [str], ...}`` per line.
        output_file: Where to write the lines with ``neg`` replaced by the mined negatives.
        embedder: Encodes the corpus (as documents) and, unless ``query_embedder`` is given, the
            queries (with its query instruction).
        candidate_pool: JSONL of ``{"text": str}``: the texts to search (default: every ``pos``
            and ``neg`` text of the input).
        range_for_sampling: ``"a-b"``: candidates are the hits ranked ``a`` to ``b - 1`` (from 0).
        negative_number: Negatives per line.
        seed: Seed of every random draw (default :data:`DEFAULT_SEED`; ``None``: a fresh one each run).
        relative_margin: Guard: drop candidates scoring above ``pos - abs(pos) * relative_margin``,
            ``pos`` being the lowest score of the query's positives.
        absolute_margin: Guard: drop candidates scoring above ``pos - absolute_margin``.
        max_score: Guard: drop candidates scoring above ``max_score``.
        search_batch_size: Queries searched per block (memory only; results do not depend on it).
        query_embedder: Encodes the queries instead of ``embedder`` (e.g. another ``max_length``).

    Returns:
        A :class:`MiningSummary`.

    Raises:
        ConfigError: a missing file or a bad option.
        InvalidInputError: a bad line (``file:line`` in the message).

    Example:
        >>> from bge_core import Embedder
        >>> emb = Embedder("BAAI/bge-small-en-v1.5", precision="fp32", query_instruction="")
        >>> mine_hard_negatives("train.jsonl", "train_minedHN.jsonl", emb, range_for_sampling="2-200")  # doctest: +SKIP
    """
    parse_range(range_for_sampling)  # before any encoding
    guard = FalseNegativeGuard(relative_margin=relative_margin, absolute_margin=absolute_margin, max_score=max_score)
    records = read_training_file(input_file)
    pool = read_candidate_pool(candidate_pool) if candidate_pool is not None else None
    corpus = build_corpus(records, pool)
    if not records:
        write_jsonl(output_file, [])
        return MiningSummary(lines=0, corpus_size=len(corpus), filled=0, short=0, guarded=0)
    logger.info("Encoding %d corpus texts and %d queries", len(corpus), len(records))
    p_vecs = embedder.encode_documents(corpus) if corpus else np.zeros((0, embedder.dimension), np.float32)
    q_vecs = (query_embedder or embedder).encode_queries([r["query"] for r in records])
    positive_scores = (
        _positive_scores(records, corpus, q_vecs, p_vecs, embedder) if guard.needs_positive_scores else None
    )
    mined, summary = mine_records(
        records,
        corpus,
        q_vecs,
        p_vecs,
        range_for_sampling=range_for_sampling,
        negative_number=negative_number,
        seed=seed,
        guard=guard,
        positive_scores=positive_scores,
        search_batch_size=search_batch_size,
    )
    write_jsonl(output_file, mined)
    if summary.guarded:
        logger.info("The false-negative guard dropped %d candidates", summary.guarded)
    if summary.short:
        logger.warning(
            "%d of %d lines have fewer than %d negatives (corpus of %d texts%s)",
            summary.short,
            summary.lines,
            negative_number,
            summary.corpus_size,
            ", guard on" if guard.active else "",
        )
    return summary

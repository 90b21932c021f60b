"""mine_records / mine_hard_negatives: hn_mine's semantics on vectors built in the test, and on files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bge_core.errors import ConfigError, InvalidInputError
from bge_rag.mining.negatives import (
    FalseNegativeGuard,
    build_corpus,
    mine_hard_negatives,
    mine_records,
    parse_range,
)


def _vectors(scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """A query vector and one document vector per score, whose inner products are ``scores``."""
    q = np.array([[1.0, 0.0]], np.float32)
    p = np.array([[s, 0.5] for s in scores], np.float32)
    return q, p


CORPUS = [f"text {i}" for i in range(30)]
# Document i scores 30 - i: rank r is document r.
Q, P = _vectors([30.0 - i for i in range(30)])


def _mine(record: dict, **options) -> tuple[dict, object]:
    out, summary = mine_records([record], CORPUS, Q, P, **options)
    return out[0], summary


def test_ranks_a_to_b_excluded_end() -> None:
    record = {"query": "q", "pos": []}
    out, summary = _mine(record, range_for_sampling="3-8", negative_number=5)
    assert out["neg"] == CORPUS[3:8]  # exactly b - a candidates: kept in rank order, no draw
    assert summary.filled == 0 and summary.short == 0


def test_positives_and_query_excluded() -> None:
    record = {"query": "text 4", "pos": ["text 3", "text 6"]}
    out, _ = _mine(record, range_for_sampling="3-8", negative_number=10, seed=1)
    ranked = [t for t in out["neg"] if t in CORPUS[3:8]]
    assert ranked == ["text 5", "text 7"]
    assert not {"text 3", "text 4", "text 6"} & set(out["neg"])


def test_negative_number_sampled_from_the_range() -> None:
    record = {"query": "q", "pos": []}
    out, _ = _mine(record, range_for_sampling="2-20", negative_number=6, seed=3)
    assert len(out["neg"]) == 6 == len(set(out["neg"]))
    assert set(out["neg"]) <= set(CORPUS[2:20])
    assert out["neg"] != CORPUS[2:8]  # a random draw, not the top of the range


def test_random_fill_when_too_few() -> None:
    record = {"query": "text 0", "pos": ["text 1", "text 2"]}
    out, summary = _mine(record, range_for_sampling="0-5", negative_number=10, seed=5)
    # Ranks 0-4 minus the query and positives: texts 3 and 4, in rank order, then 8 from the fill.
    assert out["neg"][:2] == ["text 3", "text 4"]
    assert len(out["neg"]) == 10 == len(set(out["neg"]))
    assert not {"text 0", "text 1", "text 2"} & set(out["neg"])
    assert summary.filled == 1 and summary.short == 0


def test_fill_from_a_tiny_corpus_gives_what_there_is() -> None:
    records = [{"query": "a", "pos": ["b"], "neg": ["c"]}]
    corpus = build_corpus(records)
    q, p = _vectors([1.0, 0.5])
    out, summary = mine_records(records, corpus, q, p, range_for_sampling="0-10", negative_number=5)
    assert out[0]["neg"] == ["c"]
    assert summary.short == 1


def test_other_fields_kept_and_input_untouched() -> None:
    record = {"id": 7, "query": "q", "pos": ["text 9"], "neg": ["old"], "prompt": "p", "type": "normal"}
    before = json.dumps(record)
    out, _ = _mine(record, range_for_sampling="0-4", negative_number=2, seed=0)
    assert json.dumps(record) == before
    assert {k: v for k, v in out.items() if k != "neg"} == {k: v for k, v in record.items() if k != "neg"}
    assert list(out) == list(record)  # neg keeps its place
    assert "old" not in out["neg"]


def test_deterministic_for_a_seed() -> None:
    records = [{"query": f"q{i}", "pos": []} for i in range(20)]
    qs = np.repeat(Q, 20, axis=0)
    first, _ = mine_records(records, CORPUS, qs, P, range_for_sampling="0-30", negative_number=4, seed=11)
    again, _ = mine_records(records, CORPUS, qs, P, range_for_sampling="0-30", negative_number=4, seed=11)
    other, _ = mine_records(records, CORPUS, qs, P, range_for_sampling="0-30", negative_number=4, seed=12)
    assert first == again
    assert first != other


def test_relative_margin_drops_what_sentence_transformers_drops() -> None:
    # Positive "text 5" scores 25; threshold 25 - 25 * 0.1 = 22.5: ranks scoring 29..23 (texts 1-7) go.
    record = {"query": "q", "pos": ["text 5"]}
    guard = FalseNegativeGuard(relative_margin=0.1)
    out, summary = _mine(record, range_for_sampling="0-12", negative_number=30, guard=guard, positive_scores=[25.0])
    ranked = out["neg"][:4]
    assert ranked == ["text 8", "text 9", "text 10", "text 11"]
    assert summary.guarded >= 7  # texts 0-4, 6, 7 in the range (5 is the positive), more from the fill
    assert all(30 - int(t.split()[1]) <= 22.5 for t in out["neg"])


def test_relative_margin_negative_positive_score() -> None:
    # pos - abs(pos) * m: for pos = -10 and m = 0.5 the limit is -15 (the margin widens the gap, #3819).
    assert FalseNegativeGuard(relative_margin=0.5).threshold(-10.0) == -15.0
    assert FalseNegativeGuard(absolute_margin=2.0).threshold(-10.0) == -12.0
    assert FalseNegativeGuard().threshold(3.0) == np.inf


def test_max_score_drops_only_above() -> None:
    record = {"query": "q", "pos": []}
    guard = FalseNegativeGuard(max_score=26.0)
    out, summary = _mine(record, range_for_sampling="0-8", negative_number=30, guard=guard)
    assert out["neg"][:4] == ["text 4", "text 5", "text 6", "text 7"]  # 26.0 itself is kept
    assert all(30 - int(t.split()[1]) <= 26.0 for t in out["neg"])
    assert summary.guarded >= 4


def test_guard_off_by_default_equals_no_guard() -> None:
    record = {"query": "q", "pos": []}
    assert _mine(record, negative_number=5)[0] == _mine(record, negative_number=5, guard=FalseNegativeGuard())[0]


@pytest.mark.parametrize("text", ["10", "10-", "a-b", "5-5", "7-3", "-1-5", "1-2-3", ""])
def test_range_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match="range_for_sampling"):
        parse_range(text)


def test_range_ok() -> None:
    assert parse_range("10-210") == (10, 210)
    assert parse_range("0-1") == (0, 1)


def test_corpus_first_appearance_order() -> None:
    records = [{"query": "q", "pos": ["b", "a"], "neg": ["c", "b"]}, {"query": "r", "pos": ["d"], "neg": ["a"]}]
    assert build_corpus(records) == ["b", "a", "c", "d"]
    assert build_corpus(records, ["z", "y", "z"]) == ["z", "y"]


# ---------------------------------------------------------------- file errors (no model needed)


class _NoModel:
    """Stands in for an Embedder where the test fails before or without any encoding."""

    dimension = 4

    def encode_documents(self, texts):  # pragma: no cover - must not be reached
        raise AssertionError("encoded")

    encode_queries = encode_documents


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="input_file .*nope.jsonl"):
        mine_hard_negatives(tmp_path / "nope.jsonl", tmp_path / "out.jsonl", _NoModel())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "q", "pos": ["a"]', "not valid JSON"),
        ('["q"]', "expected a JSON object"),
        ('{"pos": ["a"]}', "no 'query' field"),
        ('{"query": 3, "pos": ["a"]}', "'query' that is not a string"),
        ('{"query": "q"}', "no 'pos' field"),
        ('{"query": "q", "pos": "a"}', "'pos' must be a list of strings"),
        ('{"query": "q", "pos": ["a"], "neg": [1]}', "'neg' must be a list of strings"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path / "train.jsonl", ['{"query": "q", "pos": ["a"]}', "", line])
    with pytest.raises(InvalidInputError, match=rf"train\.jsonl:3: .*{message}"):
        mine_hard_negatives(path, tmp_path / "out.jsonl", _NoModel())
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_candidate_pool_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.jsonl", ['{"query": "q", "pos": ["a"]}'])
    pool = _write(tmp_path / "pool.jsonl", ['{"text": "a"}', '{"txt": "b"}'])
    with pytest.raises(InvalidInputError, match=r"pool\.jsonl:2: .*'text'"):
        mine_hard_negatives(path, tmp_path / "out.jsonl", _NoModel(), candidate_pool=pool)


def test_bad_range_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="range_for_sampling"):
        mine_hard_negatives(tmp_path / "nope.jsonl", tmp_path / "out.jsonl", _NoModel(), range_for_sampling="10")


def test_empty_input_gives_empty_output(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.jsonl", [])
    summary = mine_hard_negatives(path, tmp_path / "out.jsonl", _NoModel())
    assert (tmp_path / "out.jsonl").read_text() == ""
    assert summary.lines == 0


def test_empty_corpus_gives_no_negatives() -> None:
    records = [{"query": "q", "pos": []}]
    out, summary = mine_records(records, [], Q, np.zeros((0, 2), np.float32), negative_number=3)
    assert out == [{"query": "q", "pos": [], "neg": []}]
    assert summary.short == 1 and summary.filled == 0

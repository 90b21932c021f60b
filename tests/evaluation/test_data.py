"""Datasets: both layouts read the same, and every inconsistency is an error naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _eval_support import write_jsonl

from bge_core.errors import ConfigError, InvalidInputError
from bge_rag.evaluation import Document, RetrievalDataset, Split, available_splits, load_dataset


def _custom(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", [{"id": 1, "title": "T", "text": "one"}, {"id": "2", "text": "two"}])
    write_jsonl(folder / "test_queries.jsonl", [{"id": "a", "text": "query a"}, {"id": 7, "text": "query b"}])
    write_jsonl(
        folder / "test_qrels.jsonl",
        [{"qid": "a", "docid": 1, "relevance": 1}, {"qid": 7, "docid": "2", "relevance": "2"}],
    )
    return folder


def _beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(
        folder / "corpus.jsonl", [{"_id": "1", "title": "T", "text": "one"}, {"_id": "2", "title": "", "text": "two"}]
    )
    write_jsonl(
        folder / "queries.jsonl",
        [{"_id": "a", "text": "query a"}, {"_id": "7", "text": "query b"}, {"_id": "dev-only", "text": "x"}],
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na\t1\t1\n7\t2\t2\n", encoding="utf-8")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\ndev-only\t1\t1\n", encoding="utf-8")
    return folder


def test_custom_and_beir_layouts_read_the_same(tmp_path: Path) -> None:
    custom = load_dataset(_custom(tmp_path / "c"))
    beir = load_dataset(_beir(tmp_path / "b"))
    for data in (custom, beir):
        assert list(data.corpus) == ["1", "2"]  # ids are strings, JSON numbers included
        assert data.corpus["1"] == Document("T", "one") and data.corpus["1"].full_text == "T one"
        assert data.corpus["2"].full_text == "two"  # FlagEmbedding's f"{title} {text}".strip()
        test = data.split("test")
        assert test.queries == {"a": "query a", "7": "query b"}
        assert test.qrels == {"a": {"1": 1}, "7": {"2": 2}}
    # BEIR's queries.jsonl holds every split: a split keeps the queries its qrels judge
    assert load_dataset(tmp_path / "b", ["dev"]).split("dev").queries == {"dev-only": "x"}
    assert available_splits(tmp_path / "b") == ["dev", "test"]
    assert custom.corpus_digest() == load_dataset(tmp_path / "c").corpus_digest()
    assert custom.corpus_digest() != beir.corpus_digest() or custom.corpus == beir.corpus


@pytest.mark.parametrize(
    ("file", "lines", "error", "match"),
    [
        (
            "corpus.jsonl",
            ['{"id": 1, "text": "one"}', "{not json"],
            InvalidInputError,
            r"corpus.jsonl:2: not valid JSON",
        ),
        (
            "corpus.jsonl",
            ['{"id": 1, "text": "a"}', '{"id": "1", "text": "b"}'],
            InvalidInputError,
            r":2: duplicate document id '1' \(first at .*:1\)",
        ),
        ("corpus.jsonl", ['{"id": 1}'], InvalidInputError, r":1: 'text' must be a string, got nothing"),
        ("corpus.jsonl", ['{"text": "x"}'], InvalidInputError, r":1: 'id' must be a string or an integer"),
        ("corpus.jsonl", [], InvalidInputError, "the corpus is empty"),
        (
            "test_queries.jsonl",
            ['{"id": "a", "text": 3}'],
            InvalidInputError,
            r"test_queries.jsonl:1: 'text' must be a string, got int",
        ),
        (
            "test_qrels.jsonl",
            ['{"qid": "a", "docid": "9", "relevance": 1}'],
            InvalidInputError,
            r"test_qrels.jsonl:1: document '9' is not in the corpus",
        ),
        (
            "test_qrels.jsonl",
            ['{"qid": "zz", "docid": "1", "relevance": 1}'],
            InvalidInputError,
            r"query 'zz' is not among the queries",
        ),
        (
            "test_qrels.jsonl",
            ['{"qid": "a", "docid": "1", "relevance": 0.5}'],
            InvalidInputError,
            r"relevance must be an integer",
        ),
        ("test_qrels.jsonl", ['{"qid": "a", "docid": "1"}'], InvalidInputError, r"'relevance' is missing"),
        (
            "test_qrels.jsonl",
            ['{"qid": "a", "docid": "1", "relevance": 1}', '{"qid": "a", "docid": 1, "relevance": 2}'],
            InvalidInputError,
            r":2: query 'a' judges document '1' twice",
        ),
        (
            "test_qrels.jsonl",
            ['{"qid": "a", "docid": "1", "relevance": 1}'],
            InvalidInputError,
            r"test_queries.jsonl:2: query '7' has no relevance judgement",
        ),
        ("test_qrels.jsonl", [], InvalidInputError, "test_queries.jsonl:1: query 'a' has no relevance judgement"),
        (
            "test_qrels.jsonl",
            ['{"qid": "a", "docid": "1", "relevance": 1}', '{"qid": 7, "docid": "2", "relevance": 0}'],
            InvalidInputError,
            r"test_qrels.jsonl:2: query '7' has no relevant document \(every judgement is 0\)",
        ),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, file: str, lines: list[str], error: type, match: str) -> None:
    folder = _custom(tmp_path / "c")
    (folder / file).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(error, match=match):
        load_dataset(folder)


def test_missing_things(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    folder = _custom(tmp_path / "c")
    with pytest.raises(ConfigError, match="has no split 'dev'.*Splits found: test"):
        load_dataset(folder, ["dev"])
    (folder / "test_queries.jsonl").unlink()
    with pytest.raises(ConfigError, match="has no split 'test'"):
        load_dataset(folder)
    beir = _beir(tmp_path / "b")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na\t1\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"test.tsv:2: expected 3 tab-separated columns"):
        load_dataset(beir)
    with pytest.raises(ConfigError, match="Invalid layout"):
        load_dataset(beir, layout="msmarco")


def test_byte_order_marks_and_other_headers(tmp_path: Path) -> None:
    folder = _custom(tmp_path / "c")
    for name in ("corpus.jsonl", "test_queries.jsonl", "test_qrels.jsonl"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # saved "UTF-8 with BOM" on Windows
    assert load_dataset(folder).split("test").qrels == {"a": {"1": 1}, "7": {"2": 2}}
    beir = _beir(tmp_path / "b")
    (beir / "qrels" / "test.tsv").write_text("qid\tdocid\trel\na\t1\t1\n7\t2\t2\n", encoding="utf-8")
    assert load_dataset(beir).split("test").qrels == {"a": {"1": 1}, "7": {"2": 2}}
    (beir / "qrels" / "test.tsv").write_text("a\t1\t1\n7\t2\t2\n", encoding="utf-8")  # no header: all data
    assert load_dataset(beir).split("test").qrels == {"a": {"1": 1}, "7": {"2": 2}}


def test_dataset_from_dicts_is_checked() -> None:
    corpus = {"d": Document("", "text")}
    with pytest.raises(InvalidInputError, match="not in the corpus"):
        RetrievalDataset("x", corpus, {"test": Split({"q": "?"}, {"q": {"nope": 1}})})
    with pytest.raises(InvalidInputError, match="has no query"):
        RetrievalDataset("x", corpus, {"test": Split({}, {})})
    with pytest.raises(InvalidInputError, match="no relevant document, every judgement is 0"):
        RetrievalDataset("x", corpus, {"test": Split({"q": "?"}, {"q": {"d": 0}})})
    data = RetrievalDataset("x", corpus, {"test": Split({"q": "?"}, {"q": {"d": 1}})})
    with pytest.raises(ConfigError, match="no split 'dev'. Splits: test"):
        data.split("dev")
    assert json.dumps(data.split("test").qrels) == '{"q": {"d": 1}}'

"""Retrieval datasets on disk: FlagEmbedding's custom layout and BEIR's, checked line by line.

Two layouts are read (``layout="auto"`` tells them apart by the ``qrels/`` folder):

- **custom** (FlagEmbedding's ``--dataset_dir``): ``corpus.jsonl`` (``{"id", "title", "text"}``,
  title optional), ``<split>_queries.jsonl`` (``{"id", "text"}``) and ``<split>_qrels.jsonl``
  (``{"qid", "docid", "relevance"}``);
- **beir**: ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl`` (``{"_id",
  "text"}``, all splits together) and ``qrels/<split>.tsv`` (a ``query-id corpus-id score``
  header, then tab-separated rows). A split's queries are those its qrels name, as BEIR's own
  loader keeps them.

Ids are strings (JSON numbers are converted, as trec_eval compares strings). Whatever would make
the metrics quietly wrong is an error naming the file and line: unreadable JSON, a missing or
non-string field, a duplicate id, a qrel naming a document or query that does not exist, a
custom-layout query without any judgement (FlagEmbedding's MRR fails on it with a ``KeyError``),
an empty split.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bge_core.errors import ConfigError, InvalidInputError
from bge_rag.jsonl import read_objects

LAYOUTS = ("auto", "custom", "beir")


@dataclass(frozen=True)
class Document:
    """One corpus entry."""

    title: str
    text: str

    @property
    def full_text(self) -> str:
        """The text retrieval encodes: ``f"{title} {text}".strip()``, as FlagEmbedding's evaluation."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class Lines:
    """Where a split's entries were read (``"file:line"``), so that its checks can name them."""

    queries: dict[str, str] = field(default_factory=dict)  # qid -> where the query is
    qrels: dict[str, str] = field(default_factory=dict)  # qid -> its first judgement
    pairs: dict[tuple[str, str], str] = field(default_factory=dict)  # (qid, docid) -> the judgement


@dataclass(frozen=True)
class Split:
    """The queries of one split and their relevance judgements (``qrels[qid][docid] = grade``).

    ``lines`` (set by :func:`load_dataset`) tells where each entry was read, for error messages.
    """

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    lines: Lines = field(default_factory=Lines, compare=False, repr=False)


@dataclass(frozen=True)
class RetrievalDataset:
    """A corpus with one or more splits of judged queries.

    Build one with :func:`load_dataset`, or directly from dicts (ids are strings)::

        RetrievalDataset(
            name="mine",
            corpus={"d1": Document("", "Pandas eat bamboo.")},
            splits={"test": Split(queries={"q1": "What do pandas eat?"}, qrels={"q1": {"d1": 1}})},
        )
    """

    name: str
    corpus: dict[str, Document]
    splits: dict[str, Split]
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.splits:
            raise ConfigError(f"Dataset {self.name!r} has no split.")
        for name, split in self.splits.items():
            _check_split(self.name, name, split, self.corpus)

    def split(self, name: str) -> Split:
        """The split called ``name``, or an error listing the splits there are."""
        try:
            return self.splits[name]
        except KeyError:
            raise ConfigError(
                f"Dataset {self.name!r} has no split {name!r}. Splits: {', '.join(self.splits)}."
            ) from None

    def corpus_digest(self) -> str:
        """SHA-256 of the corpus (ids, titles, texts in order): the key of cached embeddings."""
        return self._corpus_digest

    @cached_property
    def _corpus_digest(self) -> str:
        h = hashlib.sha256()
        for doc_id, doc in self.corpus.items():
            for part in (doc_id, doc.title, doc.text):
                data = part.encode("utf-8")
                h.update(len(data).to_bytes(8, "little"))
                h.update(data)
        return h.hexdigest()


def _check_split(dataset: str, name: str, split: Split, corpus: dict[str, Document]) -> None:
    """Everything that would make the metrics quietly wrong; ``file:line`` first when known."""
    where = f"split {name!r} of dataset {dataset!r}"
    lines = split.lines
    for qid, judged in split.qrels.items():
        for docid in judged:
            at = lines.pairs.get((qid, docid))
            if qid not in split.queries:
                if at:
                    raise InvalidInputError(f"{at}: query {qid!r} is not among the queries")
                raise InvalidInputError(f"The {where} judges query {qid!r}, which it does not have.")
            if docid not in corpus:
                if at:
                    raise InvalidInputError(f"{at}: document {docid!r} is not in the corpus")
                raise InvalidInputError(f"The {where} judges document {docid!r} for query {qid!r}: not in the corpus.")
    if not split.queries:
        raise InvalidInputError(f"The {where} has no query.")
    missing = [qid for qid in split.queries if qid not in split.qrels]
    if missing:
        at = lines.queries.get(missing[0])
        if at:
            raise InvalidInputError(f"{at}: query {missing[0]!r} has no relevance judgement; {_UNJUDGED_WHY}")
        raise InvalidInputError(
            f"{len(missing)} queries of the {where} have no relevance judgement (first: {missing[0]!r}); "
            f"{_UNJUDGED_WHY}"
        )
    hopeless = [qid for qid, judged in split.qrels.items() if not any(grade > 0 for grade in judged.values())]
    if hopeless:
        at = lines.qrels.get(hopeless[0])
        if at:
            raise InvalidInputError(
                f"{at}: query {hopeless[0]!r} has no relevant document (every judgement is 0); {_UNJUDGED_WHY}"
            )
        raise InvalidInputError(
            f"{len(hopeless)} queries of the {where} have no relevant document, every judgement is 0 "
            f"(first: {hopeless[0]!r}); {_UNJUDGED_WHY}"
        )


_UNJUDGED_WHY = (
    "metrics would count them as failures (FlagEmbedding's evaluation stops on them with a KeyError or "
    "ZeroDivisionError). Judge a relevant document for each or remove them."
)


# ------------------------------------------------------------------------------------- files
def _id(record: dict[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        got = "nothing" if value is None else type(value).__name__
        raise InvalidInputError(f"{where}: {key!r} must be a string or an integer, got {got}")
    text = str(value)
    if not text:
        raise InvalidInputError(f"{where}: {key!r} is empty")
    return text


def _text(record: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise InvalidInputError(f"{where}: {key!r} must be a string, got {got}")
    return value


def _read_corpus(path: Path, id_key: str) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    seen: dict[str, str] = {}
    for where, record in read_objects(path):
        doc_id = _id(record, id_key, where)
        if doc_id in corpus:
            raise InvalidInputError(f"{where}: duplicate document id {doc_id!r} (first at {seen[doc_id]})")
        seen[doc_id] = where
        corpus[doc_id] = Document(_text(record, "title", where, required=False), _text(record, "text", where))
    if not corpus:
        raise InvalidInputError(f"{path}: the corpus is empty")
    return corpus


def _read_queries(path: Path, id_key: str, seen: dict[str, str] | None = None) -> dict[str, str]:
    """Queries by id; ``seen`` (when given) gets each id's ``file:line``."""
    queries: dict[str, str] = {}
    seen = {} if seen is None else seen
    for where, record in read_objects(path):
        qid = _id(record, id_key, where)
        if qid in queries:
            raise InvalidInputError(f"{where}: duplicate query id {qid!r} (first at {seen[qid]})")
        seen[qid] = where
        queries[qid] = _text(record, "text", where)
    return queries


def _grade(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInputError(f"{where}: the relevance must be an integer, got {type(value).__name__}")
    try:
        grade = float(value)
    except ValueError:
        raise InvalidInputError(f"{where}: the relevance must be an integer, got {value!r}") from None
    if grade != int(grade):
        raise InvalidInputError(f"{where}: the relevance must be an integer, got {value!r}")
    return int(grade)


def _add_qrel(qrels: dict[str, dict[str, int]], lines: Lines, qid: str, docid: str, grade: int, where: str) -> None:
    judged = qrels.setdefault(qid, {})
    if docid in judged:
        raise InvalidInputError(f"{where}: query {qid!r} judges document {docid!r} twice")
    judged[docid] = grade
    lines.pairs[(qid, docid)] = where
    lines.qrels.setdefault(qid, where)


def _custom_split(folder: Path, name: str, corpus: dict[str, Document]) -> Split:
    queries_path, qrels_path = folder / f"{name}_queries.jsonl", folder / f"{name}_qrels.jsonl"
    for path in (queries_path, qrels_path):
        if not path.is_file():
            raise ConfigError(
                f"Split {name!r}: {path} is missing "
                "(the custom layout has <split>_queries.jsonl and <split>_qrels.jsonl)."
            )
    lines = Lines()
    queries = _read_queries(queries_path, "id", lines.queries)
    qrels: dict[str, dict[str, int]] = {}
    for where, record in read_objects(qrels_path):
        qid, docid = _id(record, "qid", where), _id(record, "docid", where)
        if "relevance" not in record:
            raise InvalidInputError(f"{where}: 'relevance' is missing")
        _add_qrel(qrels, lines, qid, docid, _grade(record["relevance"], where), where)
    return Split(queries=queries, qrels=qrels, lines=lines)


def _beir_split(folder: Path, name: str, all_queries: dict[str, str], corpus: dict[str, Document]) -> Split:
    path = folder / "qrels" / f"{name}.tsv"
    if not path.is_file():
        raise ConfigError(f"Split {name!r}: {path} is missing (the BEIR layout has qrels/<split>.tsv).")
    qrels: dict[str, dict[str, int]] = {}
    lines = Lines()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            where = f"{path}:{number}"
            if number == 1 and len(row) == 3 and not _is_integer(row[2].strip()):
                continue  # the header (BEIR's is "query-id corpus-id score"; others name them otherwise)
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise InvalidInputError(
                    f"{where}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}"
                )
            qid, docid = row[0].strip(), row[1].strip()
            _add_qrel(qrels, lines, qid, docid, _grade(row[2].strip(), where), where)
    # BEIR's queries.jsonl holds every split: this one's are those its qrels judge.
    queries = {qid: all_queries[qid] for qid in qrels if qid in all_queries}
    return Split(queries=queries, qrels=qrels, lines=lines)


def _is_integer(text: str) -> bool:
    try:
        return float(text) == int(float(text))
    except ValueError:
        return False


def detect_layout(folder: str | os.PathLike) -> str:
    """``"beir"`` when ``folder`` has a ``qrels/`` folder, else ``"custom"``."""
    return "beir" if (Path(folder) / "qrels").is_dir() else "custom"


def available_splits(folder: str | os.PathLike, layout: str = "auto") -> list[str]:
    """The splits a dataset folder has files for, sorted."""
    path = Path(folder)
    layout = detect_layout(path) if layout == "auto" else layout
    if layout == "beir":
        return sorted(p.stem for p in (path / "qrels").glob("*.tsv"))
    return sorted(
        p.name[: -len("_qrels.jsonl")]
        for p in path.glob("*_qrels.jsonl")
        if (path / f"{p.name[: -len('_qrels.jsonl')]}_queries.jsonl").is_file()
    )


def load_dataset(
    folder: str | os.PathLike,
    splits: str | Sequence[str] = ("test",),
    *,
    layout: str = "auto",
    name: str | None = None,
) -> RetrievalDataset:
    """Read and check a retrieval dataset folder.

    Args:
        folder: The dataset folder (FlagEmbedding's ``--dataset_dir``).
        splits: The split names to read (default ``test``).
        layout: ``"custom"``, ``"beir"`` or ``"auto"`` (BEIR when there is a ``qrels/`` folder).
        name: The dataset's name in results (default: the folder's name).

    Returns:
        A :class:`RetrievalDataset`.

    Raises:
        ConfigError: the folder, a file of a requested split or a split is missing.
        InvalidInputError: a file holds something that would make the metrics wrong; the message
            names the file and line.
    """
    path = Path(folder)
    if layout not in LAYOUTS:
        raise ConfigError(f"Invalid layout {layout!r}. Valid layouts are: {', '.join(LAYOUTS)}.")
    if not path.is_dir():
        raise ConfigError(f"Dataset folder {path} does not exist.")
    names = [splits] if isinstance(splits, str) else list(dict.fromkeys(splits))
    if not names:
        raise ConfigError("Give at least one split.")
    layout = detect_layout(path) if layout == "auto" else layout
    corpus_path = path / "corpus.jsonl"
    if not corpus_path.is_file():
        raise ConfigError(f"{corpus_path} is missing.")
    id_key = "_id" if layout == "beir" else "id"
    corpus = _read_corpus(corpus_path, id_key)
    have = available_splits(path, layout)
    unknown = [s for s in names if s not in have]
    if unknown:
        raise ConfigError(
            f"{path} has no split {unknown[0]!r} ({layout} layout). Splits found: {', '.join(have) or 'none'}."
        )
    if layout == "beir":
        queries_path = path / "queries.jsonl"
        if not queries_path.is_file():
            raise ConfigError(f"{queries_path} is missing.")
        all_queries = _read_queries(queries_path, "_id")
        read = {s: _beir_split(path, s, all_queries, corpus) for s in names}
    else:
        read = {s: _custom_split(path, s, corpus) for s in names}
    return RetrievalDataset(name=name or path.resolve().name, corpus=corpus, splits=read, path=path)


__all__ = [
    "LAYOUTS",
    "Document",
    "Lines",
    "RetrievalDataset",
    "Split",
    "available_splits",
    "detect_layout",
    "load_dataset",
]

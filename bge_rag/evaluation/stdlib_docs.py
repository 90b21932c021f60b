"""A small retrieval set from real English text: the docstrings of Python's standard library.

Each public function, class and method of a fixed list of standard-library modules (defined in
the module, not imported into it) whose docstring has a summary and a body gives one query and
one document:

- the **query** is the summary: the first sentence of the docstring's first paragraph,
- the **document** is the body: everything after that sentence, doctest examples removed, so
  the query is not a substring of its document and has to be found by meaning,
- the **relevance** is 1 for that one document (and 0, unlisted, for every other).

A docstring whose body has fewer than ``min_body_words`` words is left out. One whose body is
long enough but whose summary is no query (a signature line such as ``wrap(text) -> [str]``,
fewer than 4 words) gives, with ``distractors=True``, a document that no query asks for.

Titles are left empty: one title would be shared by every document of a module (so it cannot tell
them apart), and a qualified name as title (``statistics.median``) would hand the query its
answer by string match. Ids are qualified names (``json.dumps``); a query and its document carry
the same id. Text is whitespace-collapsed and otherwise as written (reST and Google markup kept).

Docstrings change between Python versions (and a few functions exist on some platforms only): the
set is deterministic for one Python version on one platform (sorted by qualified name; summaries
or bodies that two docstrings share are dropped, with both docstrings), and :func:`write_custom_dataset`
records the version in ``_info.json``. Nothing is downloaded; every Python install has the text.

    python -m bge_rag.evaluation.stdlib_docs OUT_DIR [--limit N] [--no-distractors]

writes FlagEmbedding's custom dataset format (``corpus.jsonl``, ``test_queries.jsonl``,
``test_qrels.jsonl``), which ``python -m FlagEmbedding.evaluation.custom --dataset_dir OUT_DIR``
and ``bge-rag eval`` read.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

#: The modules read (the result is sorted by id, whatever their order). Mostly pure Python, whose
#: docstrings live in Lib/ and change rarely, plus a few C modules with full docstrings (itertools,
#: decimal, collections' C types). None needs an optional build part (tkinter, sqlite3) and none is
#: deprecated for removal, so every Python from 3.10 on imports them all.
MODULES: tuple[str, ...] = (
    "argparse",
    "ast",
    "base64",
    "bdb",
    "bisect",
    "calendar",
    "cmd",
    "code",
    "codecs",
    "collections",
    "configparser",
    "contextlib",
    "csv",
    "dataclasses",
    "decimal",
    "difflib",
    "doctest",
    "email.charset",
    "email.generator",
    "email.header",
    "email.message",
    "email.parser",
    "email.utils",
    "enum",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gettext",
    "glob",
    "gzip",
    "heapq",
    "hmac",
    "http.client",
    "http.cookiejar",
    "http.cookies",
    "http.server",
    "imaplib",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "json.decoder",
    "json.encoder",
    "logging",
    "logging.handlers",
    "mailbox",
    "pathlib",
    "pprint",
    "queue",
    "random",
    "sched",
    "selectors",
    "shlex",
    "shutil",
    "smtplib",
    "socketserver",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "traceback",
    "unittest.case",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "xml.sax.handler",
    "zipfile",
)

#: A summary with fewer words is not a query ("Constructor.", "Close the file.").
MIN_QUERY_WORDS = 4
#: A body with fewer words is not a document.
MIN_BODY_WORDS = 15

Corpus = dict[str, dict[str, str]]
Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]

_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")  # "dumps(obj, *, skipkeys=False, ...)"
_SENTENCE_END = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[a-z0-9)'\"`][.!?])\s+(?=[A-Z])")


def build_stdlib_docs(
    *,
    modules: tuple[str, ...] = MODULES,
    limit: int | None = None,
    distractors: bool = True,
    min_body_words: int = MIN_BODY_WORDS,
) -> tuple[Corpus, Queries, Qrels]:
    """The retrieval set as BEIR-style plain dicts: ``(corpus, queries, qrels)``.

    Args:
        modules: Standard-library modules to read (default :data:`MODULES`).
        limit: Keep at most this many queries, spread evenly over the sorted ids (a fixed,
            reproducible subset); the corpus keeps their documents and the distractors.
        distractors: Add the bodies of docstrings whose summary is no query (no query is
            relevant to them).
        min_body_words: Shortest body, in words, that is a document.

    Returns:
        ``corpus`` ``{id: {"title": "", "text": body}}``, ``queries`` ``{id: summary}`` and
        ``qrels`` ``{query id: {document id: 1}}``, every dict sorted by id.

    Example:
        >>> corpus, queries, qrels = build_stdlib_docs(limit=100)
        >>> len(queries), all(qrels[q] == {q: 1} for q in queries)
        (100, True)
    """
    pairs: list[tuple[str, str | None, str]] = []  # (id, summary or None, body)
    for qualname, doc in _docstrings(modules):
        summary, body = _split(doc)
        if len(body.split()) < min_body_words:
            continue
        usable = summary if _is_query(summary) else None
        pairs.append((qualname, usable, body))
    # A summary or body that two docstrings share could be relevant to either: drop both.
    summaries = Counter(s for _, s, _ in pairs if s is not None)
    bodies = Counter(b for _, _, b in pairs)
    pairs = [(i, s, b) for i, s, b in pairs if bodies[b] == 1 and (s is None or summaries[s] == 1)]
    # A summary equal to another docstring's body would be a string match.
    body_set = set(bodies)
    pairs = [(i, None if s in body_set else s, b) for i, s, b in pairs]

    with_query = [(i, s, b) for i, s, b in pairs if s is not None]
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if limit is not None and limit < len(with_query):
        step = len(with_query) / limit
        with_query = [with_query[int(n * step)] for n in range(limit)]
    kept = {i for i, _, _ in with_query}
    corpus: Corpus = {}
    for i, s, b in pairs:
        if i in kept or (distractors and s is None):
            corpus[i] = {"title": "", "text": b}
    queries: Queries = {i: s for i, s, _ in with_query if s is not None}
    qrels: Qrels = {i: {i: 1} for i in queries}
    return corpus, queries, qrels


def write_custom_dataset(
    folder: str | Path,
    corpus: Corpus,
    queries: Queries,
    qrels: Qrels,
    *,
    split: str = "test",
    info: dict[str, Any] | None = None,
) -> Path:
    """Write a retrieval set in FlagEmbedding's custom format (what ``bge-rag eval`` reads too).

    Files: ``corpus.jsonl`` (``{"id", "title", "text"}``), ``{split}_queries.jsonl``
    (``{"id", "text"}``), ``{split}_qrels.jsonl`` (``{"qid", "docid", "relevance"}``) and
    ``_info.json`` (the Python version, the counts and ``info``), which FlagEmbedding does not read.

    Args:
        folder: Created if missing; existing files of these names are replaced.
        corpus: ``{id: {"title", "text"}}``, as :func:`build_stdlib_docs` returns it.
        queries: ``{id: text}``.
        qrels: ``{query id: {document id: relevance}}``.
        split: The split name in the file names.
        info: More fields for ``_info.json``.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_jsonl(
        folder / "corpus.jsonl", ({"id": i, "title": d["title"], "text": d["text"]} for i, d in corpus.items())
    )
    _write_jsonl(folder / f"{split}_queries.jsonl", ({"id": i, "text": t} for i, t in queries.items()))
    rows = ({"qid": q, "docid": d, "relevance": r} for q, docs in qrels.items() for d, r in docs.items())
    _write_jsonl(folder / f"{split}_qrels.jsonl", rows)
    record = {
        "python_version": platform.python_version(),
        "corpus": len(corpus),
        "queries": len(queries),
        "qrels": sum(len(d) for d in qrels.values()),
        **(info or {}),
    }
    (folder / "_info.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return folder


def read_custom_dataset(folder: str | Path, split: str = "test") -> tuple[Corpus, Queries, Qrels]:
    """Read a folder :func:`write_custom_dataset` wrote (FlagEmbedding's custom format)."""
    folder = Path(folder)
    corpus = {r["id"]: {"title": r.get("title", ""), "text": r["text"]} for r in _read_jsonl(folder / "corpus.jsonl")}
    queries = {r["id"]: r["text"] for r in _read_jsonl(folder / f"{split}_queries.jsonl")}
    qrels: Qrels = {}
    for r in _read_jsonl(folder / f"{split}_qrels.jsonl"):
        qrels.setdefault(r["qid"], {})[r["docid"]] = int(r["relevance"])
    return corpus, queries, qrels


# --------------------------------------------------------------------------- docstrings
def _docstrings(modules: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(qualified name, raw docstring)`` of every public function, class and method, sorted."""
    found: dict[str, str] = {}
    for name in modules:
        module = importlib.import_module(name)
        for qualname, obj in _members(name, module):
            doc = _own_doc(obj)
            if doc:
                found.setdefault(qualname, doc)
    return sorted(found.items())


def _members(module_name: str, module: Any) -> Iterator[tuple[str, Any]]:
    """Public functions and classes defined in ``module`` (not imported), and their methods."""
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", None) != module_name:
            continue
        yield f"{module_name}.{name}", obj
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_"):
                    yield f"{module_name}.{name}.{attr}", member


def _own_doc(obj: Any) -> str | None:
    """The docstring written for ``obj`` itself (never one inherited, unlike ``inspect.getdoc``)."""
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    elif isinstance(obj, property):
        obj = obj.fget
    if not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.isdatadescriptor(obj)):
        return None
    doc = getattr(obj, "__doc__", None)
    return doc if isinstance(doc, str) and doc.strip() else None


def _split(doc: str) -> tuple[str, str]:
    """``(summary, body)``: the first paragraph and the rest, doctests out, whitespace collapsed."""
    paragraphs = [" ".join(_drop_doctests(p).split()) for p in re.split(r"\n\s*\n", inspect.cleandoc(doc))]
    summary, rest = _first_sentence(paragraphs[0])
    return summary, " ".join(" ".join([rest, *paragraphs[1:]]).split())


def _first_sentence(paragraph: str) -> tuple[str, str]:
    """``paragraph`` split after its first sentence (a full stop, ``?`` or ``!`` before a capital)."""
    parts = _SENTENCE_END.split(paragraph, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _drop_doctests(paragraph: str) -> str:
    """``paragraph`` without its doctest lines and their expected output (to the paragraph's end)."""
    kept: list[str] = []
    for line in paragraph.splitlines():
        if line.lstrip().startswith(">>>"):
            break  # the prompt and the output after it, to the blank line
        kept.append(line)
    return "\n".join(kept)


def _is_query(summary: str) -> bool:
    return len(summary.split()) >= MIN_QUERY_WORDS and not _SIGNATURE.match(summary)


# --------------------------------------------------------------------------- files
def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bge_rag.evaluation.stdlib_docs",
        description="Write the standard-library docstring retrieval set in FlagEmbedding's custom format.",
    )
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--limit", type=int, help="keep at most this many queries, spread evenly")
    parser.add_argument("--no-distractors", action="store_true", help="leave out the bodies no query asks for")
    args = parser.parse_args(argv)
    corpus, queries, qrels = build_stdlib_docs(limit=args.limit, distractors=not args.no_distractors)
    info = {
        "source": "bge_rag.evaluation.stdlib_docs",
        "modules": list(MODULES),
        "limit": args.limit,
        "distractors": not args.no_distractors,
    }
    folder = write_custom_dataset(args.out_dir, corpus, queries, qrels, info=info)
    print(f"{folder}: {len(queries)} queries, {len(corpus)} documents (Python {platform.python_version()})")
    return 0


__all__ = ["MODULES", "build_stdlib_docs", "read_custom_dataset", "write_custom_dataset"]

if __name__ == "__main__":
    raise SystemExit(main())

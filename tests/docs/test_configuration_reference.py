"""docs/reference/configuration.md documents every setting the code has, and none it no longer has.

Each checked section of the page lists its names in the FIRST COLUMN of its tables, in backticks
(`` `max_length` ``, `` `--max-inputs` ``, `` `BGE_RAG_CPU_STREAMS` ``). For each section the test
compares those names with what the code defines, both ways:

- ``## Embedder`` / ``## Reranker``: the constructors' parameters (``inspect.signature``).
- ``### Embedder calls`` / ``### Reranker calls``: the options (parameters with a default) of the
  public encode / score methods.
- ``## Server flags`` / ``## Embed command flags``: the long options of ``bge-rag serve`` /
  ``bge-rag embed``, read from the parser the CLI itself builds (``bge_rag.cli.build_parser``).
- ``## Environment variables``: every ``BGE_RAG_*`` variable the packages read (see
  :func:`variables_read`); besides, no ``BGE_RAG_*`` name anywhere on the page may be one the
  packages do not read.

No model is loaded: importing the engine and building the parser is all it takes.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "configuration.md"
PACKAGES = ("bge_core", "bge_rag", "integrations")
VARIABLE = re.compile(r"BGE_RAG_[A-Z0-9_]+")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


# --------------------------------------------------------------------------- what the code defines
def _python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def variables_read() -> set[str]:
    """The ``BGE_RAG_*`` variables the packages read.

    The code names a variable it reads in a string constant of its own: ``STREAMS_ENV =
    "BGE_RAG_CPU_STREAMS"`` (bge_core/env.py), ``API_KEY_ENV = "BGE_RAG_API_KEY"``, or directly in
    ``os.environ.get("BGE_RAG_...")``. So a variable counts when some string literal in
    bge_core, bge_rag or integrations is exactly its name. A name inside a longer string (a
    docstring, a help text, an error message such as ``"set BGE_RAG_X=0"``) or in a comment does not
    count: that is prose about a variable, not a read of it. The literals come from the parsed
    source (``ast``), so comments are never seen.
    """
    return {name for path in _python_files() for name in variable_literals(path.read_text(encoding="utf-8"), path)}


def variable_literals(source: str, filename: str | Path = "<source>") -> set[str]:
    """The string literals of ``source`` that are exactly a ``BGE_RAG_*`` name."""
    found = set()
    for node in ast.walk(ast.parse(source, filename=str(filename))):
        if isinstance(node, ast.JoinedStr):
            # f"BGE_RAG_{name}" would build a name this scan cannot see: make that loud.
            for part in node.values:
                if isinstance(part, ast.Constant) and str(part.value).endswith("BGE_RAG_"):
                    raise AssertionError(f"{filename}: a BGE_RAG_* name built at run time; teach this test to see it")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.fullmatch(node.value):
            found.add(node.value)
    return found


def constructor_parameters(cls: type) -> set[str]:
    return {name for name in inspect.signature(cls).parameters if name != "self"}


def method_options(cls: type, *methods: str) -> set[str]:
    """Parameters with a default (the inputs, ``texts`` / ``pairs`` / ``query``, have none)."""
    return {
        name
        for method in methods
        for name, parameter in inspect.signature(getattr(cls, method)).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def embedder() -> type:
    from bge_core import Embedder

    return Embedder


def reranker() -> type:
    from bge_core import Reranker

    return Reranker


EMBEDDER_CALLS = ("encode", "encode_queries", "encode_documents", "encode_chunked", "compute_score")
RERANKER_CALLS = ("score", "rerank", "score_layers")


def command_flags(command: str) -> set[str]:
    """Long options of one ``bge-rag`` subcommand, as the CLI's own parser defines them.

    argparse has no public way to list a parser's options, so this reads its ``_actions``, the
    attribute argparse's own help formatter reads.
    """
    from bge_rag.cli import build_parser

    parser = build_parser()
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices[command]
    return {
        next(o for o in action.option_strings if o.startswith("--"))
        for action in sub._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    }


# --------------------------------------------------------------------------- what the page says
def _lines() -> list[str]:
    if not PAGE.is_file():
        pytest.fail(f"{PAGE.relative_to(ROOT)} does not exist")
    return PAGE.read_text(encoding="utf-8").splitlines()


def section(heading: str) -> list[str]:
    """The lines under ``heading`` (e.g. ``"## Embedder"``) up to the next heading of its level or above.

    Lines inside code blocks are never headings.
    """
    level = len(heading.split()[0])
    lines, start, in_code = _lines(), None, False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            in_code = not in_code
        if in_code:
            continue
        match = HEADING.match(line)
        if not match:
            continue
        if start is None and line.strip() == heading:
            start = i + 1
        elif start is not None and len(match.group(1)) <= level:
            return lines[start:i]
    if start is None:
        pytest.fail(f"{PAGE.relative_to(ROOT)} has no section {heading!r}")
    return lines[start:]


def first_column_names(lines: list[str]) -> set[str]:
    """Names in backticks in the first cell of each table row (the first word in each pair of backticks)."""
    names = set()
    for line in lines:
        if not line.lstrip().startswith("|"):
            continue
        first_cell = line.strip().split("|")[1]
        names.update(code.split()[0] for code in re.findall(r"`([^`]+)`", first_cell) if code.split())
    return names


SECTIONS: dict[str, Callable[[], set[str]]] = {
    "## Embedder": lambda: constructor_parameters(embedder()),
    "## Reranker": lambda: constructor_parameters(reranker()),
    "### Embedder calls": lambda: method_options(embedder(), *EMBEDDER_CALLS),
    "### Reranker calls": lambda: method_options(reranker(), *RERANKER_CALLS),
    "## Server flags": lambda: command_flags("serve"),
    "## Embed command flags": lambda: command_flags("embed"),
    "## Environment variables": variables_read,
}


@pytest.mark.parametrize("heading", list(SECTIONS))
def test_section_lists_exactly_what_the_code_defines(heading):
    expected = SECTIONS[heading]()
    documented = first_column_names(section(heading))
    missing, stale = sorted(expected - documented), sorted(documented - expected)
    assert not (missing or stale), (
        f"{PAGE.relative_to(ROOT)}, section {heading!r}: "
        f"missing (add a table row whose first cell is the name in backticks): {missing}; "
        f"documented but no longer in the code (remove them): {stale}"
    )


def test_page_names_no_variable_the_code_does_not_read():
    unread = sorted(set(VARIABLE.findall(PAGE.read_text(encoding="utf-8"))) - variables_read())
    assert not unread, f"{PAGE.relative_to(ROOT)} names variables no package reads: {unread}"


def test_the_variable_scan_sees_the_engines_variables():
    """The scan finds what bge_core.env declares and the server's key, and skips names in prose."""
    from bge_core import env
    from bge_rag.server.settings import API_KEY_ENV

    declared = {getattr(env, name) for name in env.__all__ if name.endswith("_ENV")}
    assert declared | {API_KEY_ENV} <= variables_read()
    source = 'X = "BGE_RAG_READ"\n"""Docstring naming BGE_RAG_PROSE."""\nraise ValueError("set BGE_RAG_MESSAGE=1")\n'
    assert variable_literals(source) == {"BGE_RAG_READ"}

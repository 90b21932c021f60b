"""Finding the Python code blocks of the docs and README, with their markers.

A page's ```python (or ```py) blocks are collected, fences indented inside admonitions or content
tabs included. An HTML comment on the line directly above a fence changes what happens to it:

- ``<!-- snippet: skip REASON -->``: the block is not run; the report shows REASON.

Anywhere in a page, ``<!-- snippet-server: ARGS -->`` asks for ``bge-rag serve ARGS`` to be running
while the page's blocks run, at the address written ``http://localhost:8000`` in the blocks.
Any other ``snippet`` comment is an error, so a misspelt marker cannot skip a block unnoticed.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_URL = "http://localhost:8000"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*snippet(?P<kind>[-\w]*):?\s*(?P<body>.*?)\s*-->\s*$")
_PYTHON = {"python", "py", "python3"}


class MarkerError(ValueError):
    """A snippet marker that the runner does not understand, or one that is not above a block."""


@dataclass(frozen=True)
class Block:
    """One fenced Python block: its page, the line of its first code line (1-based) and its code."""

    page: str
    line: int
    code: str
    skip: str | None = None


@dataclass(frozen=True)
class Page:
    """A Markdown page's Python blocks and the server it asks for (``bge-rag serve`` arguments)."""

    path: str
    blocks: tuple[Block, ...]
    server_args: tuple[str, ...] | None = None


def pages() -> list[Path]:
    """README.md, CONTRIBUTING.md, CHANGELOG.md and every Markdown file under docs/, in a stable order."""
    top = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md") if (ROOT / name).is_file()]
    return [*top, *sorted((ROOT / "docs").rglob("*.md"))]


def parse(path: Path) -> Page:
    """The Python blocks of one Markdown file, with their markers checked.

    Raises:
        MarkerError: an unknown marker, a skip without a reason, a skip marker not directly above a
            Python block, or more than one server marker.
    """
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    server: tuple[str, ...] | None = None
    pending_skip: tuple[int, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        if marker:
            kind, body = marker["kind"], marker["body"]
            if kind == "-server":
                if server is not None:
                    raise MarkerError(f"{rel}:{i + 1}: a page asks for one server at most")
                server = tuple(shlex.split(body))
            elif kind == "" and body.split(maxsplit=1)[:1] == ["skip"]:
                reason = body[len("skip") :].strip()
                if not reason:
                    raise MarkerError(f"{rel}:{i + 1}: 'snippet: skip' needs a reason after 'skip'")
                pending_skip = (i + 1, reason)
            else:
                raise MarkerError(
                    f"{rel}:{i + 1}: unknown marker {line.strip()!r}; "
                    "use '<!-- snippet: skip REASON -->' or '<!-- snippet-server: ARGS -->'"
                )
            i += 1
            if pending_skip and not (i < len(lines) and _is_python_fence(lines[i])):
                raise MarkerError(f"{rel}:{pending_skip[0]}: a skip marker must be directly above a ```python block")
            continue
        fence = _FENCE.match(line)
        if fence is None:
            i += 1
            continue
        end = _closing(lines, i, fence["indent"], fence["fence"], rel)
        if _is_python_fence(line):
            code = textwrap.dedent("\n".join(lines[i + 1 : end]))
            blocks.append(Block(rel, i + 2, code + "\n", pending_skip[1] if pending_skip else None))
        pending_skip = None
        i = end + 1
    return Page(rel, tuple(blocks), server)


def _is_python_fence(line: str) -> bool:
    fence = _FENCE.match(line)
    if fence is None or not fence["info"].strip():
        return False
    language = fence["info"].strip().split()[0].lstrip(".{").rstrip("}")
    return language in _PYTHON


def _closing(lines: list[str], start: int, indent: str, fence: str, page: str) -> int:
    """The index of the line closing the fence opened at ``start`` (the last line if never closed)."""
    closer = re.compile(rf"^{re.escape(indent)}[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    for j in range(start + 1, len(lines)):
        if closer.match(lines[j]):
            return j
    raise MarkerError(f"{page}:{start + 1}: the code fence opened here is never closed")

"""Griffe extension: our docstrings' Sphinx-isms read as Markdown in the API reference.

The docstrings are Google style, read by people in editors and by ``help()`` as well as by the site,
and use two habits that mkdocstrings would show raw:

- Sphinx roles (``:class:`~bge_core.errors.TextTooLongError```): shown as inline code, the last
  component only where the target starts with ``~`` (as Sphinx shows it).
- One ``Args:`` entry for several parameters (``cache_dir, revision, token: Passed to the hub.``):
  split into one entry per parameter, so that each gets its own row, type and default.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters):\s*$")
_GROUPED = re.compile(r"^(\s+)([A-Za-z_]\w*(?:,\s*[A-Za-z_]\w*)+):(.*)$")


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"``{target.rsplit('.', 1)[-1] if short else target}``"


def rewrite(text: str) -> str:
    """``text`` with Sphinx roles as inline code and grouped ``Args:`` entries split."""
    text = _ROLE.sub(_role, text)
    lines = text.splitlines()
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if (section := _SECTION.match(line)) is not None:
            section_indent = len(section.group(1))
        elif line.strip() and section_indent is not None and indent <= section_indent:
            section_indent = None  # the next section (or the end of the indented block)
        grouped = _GROUPED.match(line) if section_indent is not None else None
        if grouped is None:
            out.append(line)
            i += 1
            continue
        pad, names, description = grouped.groups()
        more = []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(pad)):
            more.append(lines[i])
            i += 1
        for name in (part.strip() for part in names.split(",")):
            out += [f"{pad}{name}:{description}", *more]
    return "\n".join(out)


class DocstringRewrites(Extension):
    """Apply :func:`rewrite` to every docstring once the object tree is built."""

    def on_object(self, *, obj: Object, **_: Any) -> None:  # noqa: D102
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)

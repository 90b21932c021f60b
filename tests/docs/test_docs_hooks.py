"""The site's build hooks: docstring rewrites for the API reference, generated pages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_roles_become_inline_code():
    rewrite = _load("griffe_docstrings").rewrite
    text = "Raises :class:`~bge_core.errors.TextTooLongError`; see :meth:`Embedder.encode` and :mod:`bge_core`."
    assert rewrite(text) == "Raises ``TextTooLongError``; see ``Embedder.encode`` and ``bge_core``."


def test_grouped_args_are_split_with_their_continuation_lines_and_other_sections_kept():
    rewrite = _load("griffe_docstrings").rewrite
    text = "Args:\n    model: M.\n    cache_dir, token: Hub\n        options.\n    last: L.\n"
    text += "\nRaises:\n    A, B: kept.\n"
    assert rewrite(text).splitlines() == [
        "Args:",
        "    model: M.",
        "    cache_dir: Hub",
        "        options.",
        "    token: Hub",
        "        options.",
        "    last: L.",
        "",
        "Raises:",
        "    A, B: kept.",
    ]


def test_generated_pages_are_the_changelog_and_the_benchmarks_report():
    pages = _load("generated_pages").generated_pages()
    assert pages["changelog.md"] == (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert pages["benchmarks.md"].startswith("# Benchmarks")
    assert not (ROOT / "docs" / "benchmarks.md").exists() and not (ROOT / "docs" / "changelog.md").exists()

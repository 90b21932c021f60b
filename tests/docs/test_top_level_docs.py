"""README.md and CONTRIBUTING.md, read on GitHub rather than on the site: links resolve, README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_LINK = re.compile(r"\]\((?!https?://|mailto:)([^)#\s]+)(?:#[^)\s]*)?\)")


@pytest.mark.parametrize("name", ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"])
def test_relative_links_resolve(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    targets = _LINK.findall(text)
    assert name != "README.md" or targets, "README.md links to no page"
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"{name} links to paths that do not exist: {missing}"


def test_readme_is_an_overview_not_the_manual():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to a page under docs/"
    text = "\n".join(lines)
    for command in ("./dev.sh demo", "./dev.sh test"):  # the two set-up commands stay visible
        assert command in text


_TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def test_tests_named_in_the_docs_exist():
    # The supported-model table names the parity test behind each row; a renamed test must not rot it.
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    refs = {(page.name, *ref) for page in pages for ref in _TEST_REF.findall(page.read_text(encoding="utf-8"))}
    assert len(refs) >= 10, refs
    missing = [
        f"{page}: {path}::{name}"
        for page, path, name in sorted(refs)
        if not (ROOT / path).is_file() or not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.M)
    ]
    assert not missing, missing

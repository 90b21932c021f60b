"""Shared pieces of the Haystack adapter tests (imported by the tests in tests/adapters/haystack/)."""

from __future__ import annotations

import os
from pathlib import Path

# Haystack sends usage telemetry by default (a background HTTP client, set up when haystack is first
# imported): tests never touch the network. The variable covers a first import here and subprocesses;
# the module flag, which Haystack checks on each event, covers an earlier import.
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

from haystack import Document  # noqa: E402
from haystack.telemetry import _telemetry  # noqa: E402

_telemetry.telemetry = None

#: Settings every model-running test uses: exact fp32 arithmetic, short inputs.
FAST = {"precision": "fp32", "max_length": 64}


def registry_named(folder: Path, name: str, root: Path) -> Path:
    """A folder called ``name`` whose files link to ``folder``'s files.

    bge_core's registry recognizes a local folder by its name, so a fixture folder called
    ``bge-small-en-v1.5`` gets that model's registry settings (its query instruction).
    """
    target = root / name
    target.mkdir(parents=True, exist_ok=True)
    for item in Path(folder).iterdir():
        link = target / item.name
        if not link.exists():
            link.symlink_to(item.resolve())
    return target


def sample_documents(paragraphs: list[str]) -> list[Document]:
    """Eight real paragraphs as Documents, with meta (a title on most, none on some)."""
    return [
        Document(content=text, meta={"title": f"Section {i}" if i % 3 else None, "position": i})
        for i, text in enumerate(paragraphs[:24:3])
    ]

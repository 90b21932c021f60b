"""Training files for the mining tests: real paragraphs as FlagEmbedding fine-tuning lines."""

from __future__ import annotations

import json
from pathlib import Path

LINES = 24


def training_lines(paragraphs: list[str], n: int = LINES) -> list[dict]:
    """Real training lines: a paragraph's opening words as the query, the paragraph as positive."""
    docs = [p for p in paragraphs if len(p.split()) > 12][: 2 * n]
    return [
        {
            "id": i,
            "query": " ".join(docs[i].split()[:8]),
            "pos": [docs[i]],
            "neg": [docs[n + i]],
            "source": "python-docs",
        }
        for i in range(n)
    ]


def write_lines(path: Path, lines: list[dict]) -> Path:
    """Write ``lines`` as JSONL to ``path`` and return it."""
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    """The objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

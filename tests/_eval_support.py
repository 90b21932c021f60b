"""Shared by the evaluation tests: a judged dataset of real paragraphs, FlagEmbedding's runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


FLAG_RUNNER = Path(__file__).parent / "evaluation" / "_flag_runner.py"


def build_dataset(folder: Path, paragraphs: list[str], n: int = 90) -> Path:
    """FlagEmbedding's custom layout: a query is a paragraph's first words, its document the rest.

    Some documents have titles, some queries have two relevant documents (the next paragraph at
    grade 1), and a third of the corpus is never relevant, so every metric has work to do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = [], [], []
    usable = [p for p in paragraphs if len(p.split()) >= 24][:n]
    for i, text in enumerate(usable):
        words = text.split()
        corpus.append({"id": f"doc-{i}", "title": "Python" if i % 3 == 0 else "", "text": " ".join(words[9:])})
        if i % 3 != 2:
            queries.append({"id": f"q-{i}", "text": " ".join(words[:9])})
            qrels.append({"qid": f"q-{i}", "docid": f"doc-{i}", "relevance": 2 if i % 2 else 1})
            if i % 5 == 0 and i + 1 < len(usable):
                qrels.append({"qid": f"q-{i}", "docid": f"doc-{i + 1}", "relevance": 1})
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "test_queries.jsonl", queries)
    write_jsonl(folder / "test_qrels.jsonl", qrels)
    return folder


def run_flagembedding(*args: str | os.PathLike, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m FlagEmbedding.evaluation.custom ARGS`` offline, in a subprocess."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(cwd / "hf")}
    proc = subprocess.run(
        [sys.executable, str(FLAG_RUNNER), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc

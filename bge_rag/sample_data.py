"""Real English text that every Python installation carries, for demos and benchmarks.

The paragraphs come from the Python language reference as shipped in ``pydoc_data`` (the text
behind ``help("with")`` and friends): documentation prose of mixed length, available offline.
"""

from __future__ import annotations

import re

from bge_core.errors import MissingExtraError


def python_docs_paragraphs(min_words: int = 8, limit: int | None = None) -> list[str]:
    """Paragraphs of the Python language reference, whitespace-normalized, deduplicated.

    Args:
        min_words: Drop paragraphs with fewer words (headings, stray lines).
        limit: Return at most this many, spread evenly over the whole reference (a fixed,
            reproducible selection in document order).
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some minimal Python builds strip pydoc_data
        raise MissingExtraError(
            "This Python has no pydoc_data module; pass your own corpus (e.g. bge-rag demo --corpus FILE)."
        ) from exc
    seen: set[str] = set()
    paragraphs: list[str] = []
    for key in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[key]):
            text = " ".join(block.split())
            if len(text.split()) >= min_words and text not in seen:
                seen.add(text)
                paragraphs.append(text)
    if limit is None or limit >= len(paragraphs):
        return paragraphs
    step = len(paragraphs) / max(limit, 1)
    return [paragraphs[int(i * step)] for i in range(limit)]


__all__ = ["python_docs_paragraphs"]

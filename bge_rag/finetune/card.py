"""The model card of a fine-tuned folder: what it was trained from, how, and how it measured."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_LOADERS = {
    "embedder": """```python
from bge_core import Embedder
from sentence_transformers import SentenceTransformer

model = Embedder("{folder}")  # pooling, instruction and normalization as trained
st = SentenceTransformer("{folder}")  # the same vectors at fp32 (encode_query / encode_document)
```""",
    "m3": """```python
from bge_core import Embedder

model = Embedder("{folder}")  # dense, and sparse / ColBERT from sparse_linear.pt / colbert_linear.pt
out = model.encode(["a text"], dense=True, sparse=True, colbert=True)
# FlagEmbedding: BGEM3FlagModel("{folder}") gives the same outputs.
```""",
    "reranker": """```python
from bge_core import Reranker
from sentence_transformers import CrossEncoder

model = Reranker("{folder}")  # FlagEmbedding's pair formatting; FlagReranker("{folder}") gives the same scores
ce = CrossEncoder("{folder}")
```""",
}


def model_card(
    kind: str,
    folder: Path,
    base: str,
    arguments: Mapping[str, Any],
    train: Mapping[str, Any],
    evaluation_table: str | None,
) -> str:
    """Markdown for ``README.md``: the base checkpoint, the options that differ from the defaults, the results."""
    lines = [
        "---",
        f"base_model: {json.dumps(base)}",
        "library_name: sentence-transformers",
        "tags: [bge-rag, fine-tuned, " + ("cross-encoder" if kind == "reranker" else "sentence-similarity") + "]",
        "---",
        "",
        f"# {folder.name}",
        "",
        f"Fine-tuned from `{base}` with `bge-rag finetune {kind}` (FlagEmbedding's objective on "
        "sentence-transformers' trainer).",
        "",
        "## Use",
        "",
        _LOADERS[kind].format(folder=folder),
        "",
        "## Training",
        "",
        "| option | value |",
        "|---|---|",
        *(f"| `--{name}` | `{json.dumps(value, ensure_ascii=False)}` |" for name, value in sorted(arguments.items())),
        "",
        "| result | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in train.items()),
    ]
    if evaluation_table:
        lines += ["", "## Evaluation", "", "Before (the base checkpoint) and after fine-tuning:", "", evaluation_table]
    return "\n".join(lines) + "\n"


__all__ = ["model_card"]

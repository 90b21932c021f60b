"""bge_rag.finetune: fine-tune BGE embedders, BGE-M3 and rerankers on your data, served exactly afterwards.

FlagEmbedding's fine-tuning (its data format, group sampling, instructions, losses and BGE-M3's
unified objective) on sentence-transformers' trainers (``SentenceTransformerTrainer`` /
``CrossEncoderTrainer``, Hugging Face ``Trainer`` underneath). The command line is
``bge-rag finetune embedder|m3|reranker`` with FlagEmbedding's arguments; in Python::

    from bge_rag.finetune import DataArguments, EmbedderTrainingArguments, ModelArguments, finetune_embedder

    folder = finetune_embedder(  # doctest: +SKIP
        ModelArguments("BAAI/bge-small-en-v1.5"),
        DataArguments(train_data=["train.jsonl"], train_group_size=4),
        EmbedderTrainingArguments(output_dir="bge-small-tuned", num_train_epochs=1),
    )

The output folder loads in :class:`bge_core.Embedder` / :class:`bge_core.Reranker`,
sentence-transformers and FlagEmbedding with equal outputs. Training needs
``pip install 'bge-rag[finetune]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .arguments import (
        DataArguments,
        EmbedderTrainingArguments,
        EvalArguments,
        ModelArguments,
        RerankerDataArguments,
        RerankerTrainingArguments,
    )
    from .runner import finetune_embedder, finetune_reranker

_HOMES = {
    "DataArguments": "arguments",
    "EmbedderTrainingArguments": "arguments",
    "EvalArguments": "arguments",
    "ModelArguments": "arguments",
    "RerankerDataArguments": "arguments",
    "RerankerTrainingArguments": "arguments",
    "finetune_embedder": "runner",
    "finetune_reranker": "runner",
}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use.

    ``bge-rag --help`` registers the command without loading sentence-transformers, which the
    argument classes build on.
    """
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


__all__ = [
    "DataArguments",
    "EmbedderTrainingArguments",
    "EvalArguments",
    "ModelArguments",
    "RerankerDataArguments",
    "RerankerTrainingArguments",
    "finetune_embedder",
    "finetune_reranker",
]

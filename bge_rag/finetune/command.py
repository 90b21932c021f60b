"""``bge-rag finetune embedder|m3|reranker``: FlagEmbedding's fine-tuning command lines.

``torchrun --nproc_per_node 2 -m FlagEmbedding.finetune.embedder.encoder_only.base ARGS`` becomes
``torchrun --nproc_per_node 2 -m bge_rag finetune embedder ARGS`` (``...encoder_only.m3``:
``finetune m3``; ``FlagEmbedding.finetune.reranker.encoder_only.base``: ``finetune reranker``),
with the same ARGS. bge-rag's own options (``--eval_data`` ...) come on top.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from bge_rag.flag_cli import parse_dataclasses, register_passthrough

KINDS = {
    "embedder": "FlagEmbedding.finetune.embedder.encoder_only.base",
    "m3": "FlagEmbedding.finetune.embedder.encoder_only.m3",
    "reranker": "FlagEmbedding.finetune.reranker.encoder_only.base",
}
_USAGE = (
    "usage: bge-rag finetune {embedder,m3,reranker} [FlagEmbedding's options] [--eval_data DIR ...]\n\n"
    "Fine-tune a BGE model with FlagEmbedding's options and losses on sentence-transformers' trainers.\n"
    + "\n".join(f"  {kind:9s} the options of python -m {module}" for kind, module in KINDS.items())
    + "\n\n`bge-rag finetune KIND --help` lists every option of KIND."
)


def register(subparsers: Any) -> None:
    """Add ``finetune`` to ``subparsers`` (from ``parser.add_subparsers()``)."""
    register_passthrough(
        subparsers,
        "finetune",
        "fine-tune an embedder, BGE-M3 or a reranker with FlagEmbedding's command line",
        run_finetune,
    )


def require_training_packages() -> None:
    """sentence-transformers' trainers and what they need, or the extra to install.

    Raises:
        MissingExtraError: naming ``pip install 'bge-rag[finetune]'``.
    """
    import importlib.util

    from bge_core.errors import MissingExtraError

    missing = [
        name for name in ("sentence_transformers", "datasets", "accelerate") if not importlib.util.find_spec(name)
    ]
    if missing:
        raise MissingExtraError(f"bge-rag finetune needs {', '.join(missing)}: pip install 'bge-rag[finetune]'")


def run_finetune(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bge-rag finetune KIND`` with the arguments after the kind."""
    out = out or sys.stdout
    argv = list(args.arguments)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE, file=out)
        return 0 if argv else 2
    kind, rest = argv[0], argv[1:]
    if kind not in KINDS:
        print(f"bge-rag finetune: unknown kind {kind!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    require_training_packages()
    from .arguments import (
        DataArguments,
        EmbedderTrainingArguments,
        EvalArguments,
        ModelArguments,
        RerankerDataArguments,
        RerankerTrainingArguments,
    )

    description = f"Fine-tune with the options of python -m {KINDS[kind]} (and bge-rag's --eval_* options)."
    if kind == "reranker":
        from .runner import finetune_reranker

        model, data, training, evaluation = parse_dataclasses(
            "bge-rag finetune reranker",
            description,
            (ModelArguments, RerankerDataArguments, RerankerTrainingArguments, EvalArguments),
            rest,
        )
        folder = finetune_reranker(model, data, training, evaluation)
    else:
        from .runner import finetune_embedder

        model, data, training, evaluation = parse_dataclasses(
            f"bge-rag finetune {kind}",
            description,
            (ModelArguments, DataArguments, EmbedderTrainingArguments, EvalArguments),
            rest,
        )
        folder = finetune_embedder(model, data, training, evaluation, kind=kind)
    if training.process_index == 0:
        import json

        from .training import RESULTS_FILE

        table = json.loads((folder / RESULTS_FILE).read_text(encoding="utf-8")).get("table")
        if table:
            print(f"Before (the checkpoint trained from) and after fine-tuning:\n{table}", file=out)
        print(f"Fine-tuned model written to {folder}", file=out)
    return 0


__all__ = ["KINDS", "register", "require_training_packages", "run_finetune"]

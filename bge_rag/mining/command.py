"""``bge-rag mine-negatives`` and ``bge-rag score-pairs``: FlagEmbedding's data preparation scripts.

The options are those of FlagEmbedding's ``scripts/hn_mine.py`` and
``scripts/add_reranker_score.py`` (:mod:`bge_rag.mining.arguments`), parsed by
``transformers.HfArgumentParser`` exactly as there. The ``bge-rag`` parser hands everything after
the subcommand to it untouched, so that ``bge-rag --help`` does not import transformers;
``bge-rag mine-negatives --help`` lists the options.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from bge_core.errors import ConfigError
from bge_rag.flag_cli import (
    load_embedders,
    load_reranker,
    parse_dataclasses,
    refuse_unsupported,
    register_passthrough,
)

if TYPE_CHECKING:
    from bge_core import Embedder, Reranker

    from .arguments import EmbedderArgs, RerankerArgs

logger = logging.getLogger(__name__)

_MINE_DESCRIPTION = (
    "Mine hard negatives for a FlagEmbedding training file, with the options of FlagEmbedding's "
    "scripts/hn_mine.py: each line's 'neg' becomes negative_number texts drawn from the search results "
    "ranked range_for_sampling, positives and the query excluded. Unlike hn_mine the output is reproducible "
    "(--seed), and --relative_margin / --absolute_margin / --max_score can drop likely false negatives."
)
_SCORE_DESCRIPTION = (
    "Add reranker scores (pos_scores, neg_scores) to every line of a FlagEmbedding training file, with the "
    "options of FlagEmbedding's scripts/add_reranker_score.py."
)


def register(subparsers: Any) -> None:
    """Add ``mine-negatives`` and ``score-pairs`` to ``subparsers`` (from ``parser.add_subparsers()``)."""
    register_passthrough(
        subparsers,
        "mine-negatives",
        "hard negatives for fine-tuning data, as FlagEmbedding's hn_mine.py, reproducible",
        run_mine,
    )
    register_passthrough(
        subparsers,
        "score-pairs",
        "reranker scores for fine-tuning data, as FlagEmbedding's add_reranker_score.py",
        run_score,
    )


def build_embedders(args: EmbedderArgs) -> tuple[Embedder, Embedder | None]:
    """The passage embedder and, when the query length differs, a query embedder, as hn_mine loads its model.

    Raises:
        ConfigError: an hn_mine option bge-rag cannot honour, set to a non-default value.
    """
    refuse_unsupported(
        "bge-rag mine-negatives",
        {
            "examples_for_task": "in-context examples are not supported",
            "examples_instruction_format": "in-context examples are not supported",
        },
        args,
    )
    if args.embedder_model_class is not None:
        logger.info(
            "--embedder_model_class %s: bge-rag tells the model class from the model's config",
            args.embedder_model_class,
        )
    return load_embedders(
        args.embedder_name_or_path,
        command="bge-rag mine-negatives",
        devices=args.devices,
        use_fp16=args.use_fp16,
        pooling=args.pooling_method,
        normalize=args.normalize_embeddings,
        query_instruction=args.query_instruction_for_retrieval,
        query_instruction_format=args.query_instruction_format_for_retrieval,
        batch_size=args.batch_size,
        passage_max_length=args.embedder_passage_max_length,
        query_max_length=args.embedder_query_max_length,
        trust_remote_code=args.trust_remote_code,
        cache_dir=args.cache_dir,
    )


def build_reranker(args: RerankerArgs) -> Reranker:
    """The reranker as add_reranker_score loads it.

    Raises:
        ConfigError: no reranker given, or an option bge-rag cannot honour.
    """
    if args.reranker_name_or_path is None:
        raise ConfigError("--reranker_name_or_path is required")
    refuse_unsupported(
        "bge-rag score-pairs",
        {"reranker_peft_path": "merge the adapter into the model and pass that folder"},
        args,
    )
    if args.reranker_model_class is not None:
        logger.info(
            "--reranker_model_class %s: bge-rag tells the reranker kind from the model's config",
            args.reranker_model_class,
        )
    return load_reranker(
        args.reranker_name_or_path,
        devices=args.devices,
        use_fp16=args.use_fp16,
        use_bf16=args.use_bf16,
        normalize=args.normalize,
        max_length=args.reranker_max_length,
        query_max_length=args.reranker_query_max_length,
        batch_size=args.reranker_batch_size,
        trust_remote_code=args.trust_remote_code,
        cache_dir=args.cache_dir,
        prompt=args.prompt,
        cutoff_layers=args.cutoff_layers,
        compress_ratio=args.compress_ratio,
        compress_layers=args.compress_layers,
    )


def run_mine(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bge-rag mine-negatives`` with the arguments after the subcommand."""
    out = out or sys.stdout
    from .arguments import EmbedderArgs, MiningDataArgs, ReproducibilityArgs
    from .negatives import mine_hard_negatives, parse_range

    data, model, extra = parse_dataclasses(
        "bge-rag mine-negatives", _MINE_DESCRIPTION, (MiningDataArgs, EmbedderArgs, ReproducibilityArgs), args.arguments
    )
    parse_range(data.range_for_sampling)  # a bad range fails before the model loads
    if data.use_gpu_for_searching:
        print("Note: --use_gpu_for_searching is not needed: the search is exact, with numpy.", file=out)
    embedder, query_embedder = build_embedders(model)
    summary = mine_hard_negatives(
        data.input_file,
        data.output_file,
        embedder,
        query_embedder=query_embedder,
        candidate_pool=data.candidate_pool,
        range_for_sampling=data.range_for_sampling,
        negative_number=data.negative_number,
        search_batch_size=data.search_batch_size,
        seed=extra.seed,
        relative_margin=extra.relative_margin,
        absolute_margin=extra.absolute_margin,
        max_score=extra.max_score,
    )
    print(
        f"Mined negatives for {summary.lines} lines from {summary.corpus_size} texts into {data.output_file} "
        f"(seed {extra.seed}); {summary.filled} lines filled at random"
        + (f", {summary.guarded} candidates dropped by the guard" if summary.guarded else "")
        + (f", {summary.short} lines short of {data.negative_number}" if summary.short else "")
        + ".",
        file=out,
    )
    return 0


def run_score(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bge-rag score-pairs`` with the arguments after the subcommand."""
    out = out or sys.stdout
    from .arguments import RerankerArgs, ScoreDataArgs
    from .scores import add_reranker_scores

    data, model = parse_dataclasses(
        "bge-rag score-pairs", _SCORE_DESCRIPTION, (ScoreDataArgs, RerankerArgs), args.arguments
    )
    if data.input_file is None or data.output_file is None:
        raise ConfigError("--input_file and --output_file are required")
    reranker = build_reranker(model)
    summary = add_reranker_scores(
        data.input_file,
        data.output_file,
        reranker,
        query_instruction=model.query_instruction_for_rerank,
        query_instruction_format=model.query_instruction_format_for_rerank,
        passage_instruction=model.passage_instruction_for_rerank,
        passage_instruction_format=model.passage_instruction_format_for_rerank,
    )
    print(f"Scored {summary.pairs} pairs of {summary.lines} lines into {data.output_file}.", file=out)
    return 0

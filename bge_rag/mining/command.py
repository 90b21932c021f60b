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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from bge_core.errors import ConfigError

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
    for name, help_text, func in (
        (
            "mine-negatives",
            "hard negatives for fine-tuning data, as FlagEmbedding's hn_mine.py, reproducible",
            run_mine,
        ),
        ("score-pairs", "reranker scores for fine-tuning data, as FlagEmbedding's add_reranker_score.py", run_score),
    ):
        # No option of its own (prefix_chars that no argument starts with): every argument, --help
        # included, reaches HfArgumentParser in run_mine / run_score.
        p = subparsers.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
        p.add_argument("arguments", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)


def _parse(prog: str, description: str, types: tuple[type, ...], argv: Sequence[str]) -> tuple[Any, ...]:
    """``argv`` parsed into the dataclasses ``types`` by HfArgumentParser (``--help`` exits there)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(list(types), prog=prog, description=description)  # type: ignore[arg-type]
    *parsed, rest = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=True)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return tuple(parsed)


def _one_device(devices: Sequence[str] | None) -> str | None:
    if devices and len(devices) > 1:
        raise ConfigError(
            f"--devices {' '.join(devices)}: bge-rag runs on one device; pass one (FlagEmbedding's multi-device "
            f"pool gives the same numbers)."
        )
    return devices[0] if devices else None


def _precision(device: str | None, use_fp16: bool) -> str:
    """FlagEmbedding's dtype: fp16 on an accelerator with use_fp16; fp32 on the CPU whatever use_fp16 says."""
    from bge_core.devices import resolve_device

    return "fp16" if use_fp16 and resolve_device(device).type != "cpu" else "fp32"


def build_embedders(args: EmbedderArgs) -> tuple[Embedder, Embedder | None]:
    """The passage embedder and, when the query length differs, a query embedder, as hn_mine loads its model.

    Raises:
        ConfigError: an hn_mine option bge-rag cannot honour, set to a non-default value.
    """
    if args.examples_for_task is not None:
        raise ConfigError("--examples_for_task is not supported by bge-rag mine-negatives")
    if args.examples_instruction_format != "{}{}":
        raise ConfigError("--examples_instruction_format is not supported by bge-rag mine-negatives")
    if args.embedder_model_class is not None:
        logger.info(
            "--embedder_model_class %s: bge-rag tells the model class from the model's config",
            args.embedder_model_class,
        )
    from bge_core import Embedder

    device = _one_device(args.devices)
    options: dict[str, Any] = {
        "device": device,
        "precision": _precision(device, args.use_fp16),
        "batch_size": args.batch_size,
        "pooling": args.pooling_method,
        "normalize": args.normalize_embeddings,
        # hn_mine applies no instruction unless one is given, whatever the model's usual one.
        "query_instruction": args.query_instruction_for_retrieval or "",
        "query_instruction_format": args.query_instruction_format_for_retrieval,
        "trust_remote_code": True if args.trust_remote_code else None,
        "cache_dir": args.cache_dir,
    }
    embedder = Embedder(args.embedder_name_or_path, max_length=args.embedder_passage_max_length, **options)
    usual = embedder.spec.query_instruction
    if args.query_instruction_for_retrieval is None and usual:
        logger.warning(
            "No query instruction (as hn_mine without --query_instruction_for_retrieval); %s is usually used with %r",
            args.embedder_name_or_path,
            usual,
        )
    if embedder.spec.pooling and embedder.spec.pooling != args.pooling_method:
        logger.warning(
            "--pooling_method %s (hn_mine's default for every model); %s usually pools with %s",
            args.pooling_method,
            args.embedder_name_or_path,
            embedder.spec.pooling,
        )
    query_embedder = None
    if args.embedder_query_max_length != embedder.max_length:
        query_embedder = Embedder(args.embedder_name_or_path, max_length=args.embedder_query_max_length, **options)
    return embedder, query_embedder


def build_reranker(args: RerankerArgs) -> Reranker:
    """The reranker as add_reranker_score loads it.

    Raises:
        ConfigError: no reranker given, or an option bge-rag cannot honour.
    """
    if args.reranker_name_or_path is None:
        raise ConfigError("--reranker_name_or_path is required")
    if args.reranker_peft_path is not None:
        raise ConfigError(
            "--reranker_peft_path is not supported: merge the adapter into the model and pass that folder"
        )
    if args.reranker_model_class is not None:
        logger.info(
            "--reranker_model_class %s: bge-rag tells the reranker kind from the model's config",
            args.reranker_model_class,
        )
    from bge_core import Reranker

    device = _one_device(args.devices)
    options: dict[str, Any] = {
        "device": device,
        "normalize": args.normalize,
        "max_length": args.reranker_max_length,
        "query_max_length": args.reranker_query_max_length,
        "batch_size": args.reranker_batch_size,
        "trust_remote_code": True if args.trust_remote_code else None,
        "cache_dir": args.cache_dir,
        "prompt": args.prompt,
        "cutoff_layers": args.cutoff_layers,
        "compress_ratio": args.compress_ratio,
        "compress_layers": args.compress_layers,
    }
    precision = _precision(device, args.use_fp16)
    reranker = Reranker(args.reranker_name_or_path, precision=precision, **options)
    if args.use_bf16 and precision == "fp32":
        if reranker.llm_kind is None:
            logger.info("--use_bf16: FlagEmbedding's cross-encoder reranker ignores it; so does bge-rag")
        else:  # FlagEmbedding's LLM rerankers load in bf16 (on a GPU with use_fp16, .half() wins)
            reranker = Reranker(args.reranker_name_or_path, precision="bf16", **options)
    return reranker


def run_mine(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bge-rag mine-negatives`` with the arguments after the subcommand."""
    out = out or sys.stdout
    from .arguments import EmbedderArgs, MiningDataArgs, ReproducibilityArgs
    from .negatives import mine_hard_negatives, parse_range

    data, model, extra = _parse(
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

    data, model = _parse("bge-rag score-pairs", _SCORE_DESCRIPTION, (ScoreDataArgs, RerankerArgs), args.arguments)
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

"""``bge-rag eval``: FlagEmbedding's custom-dataset evaluation command line, run on bge_core.

``bge-rag eval`` takes the arguments of ``python -m FlagEmbedding.evaluation.custom`` unchanged
(parsed by the same ``transformers.HfArgumentParser``, so ``--flag``, ``--flag False``,
``--no_flag`` and space-separated lists work alike) and writes the same files: the search results
``OUTPUT_DIR/<model>/<reranker or NoReranker>/<split>.json``, their metrics
``.../EVAL/eval_results.json``, and the summary at ``--eval_output_path`` (``json`` or ``markdown``)
over every model evaluated in ``OUTPUT_DIR``. At fp32 the metrics equal FlagEmbedding's.

What it adds: several ``--embedder_name_or_path`` and ``--reranker_name_or_path`` values and
``--retrieval_modes`` (dense, sparse, colbert, dense+sparse, hybrid) compared in one run, a table
on the terminal, the BEIR layout, ``--precision``, and corpus embeddings cached under
``--corpus_embd_save_dir`` by content (a changed corpus or model is never served stale vectors).
An option it cannot honour is an error naming it, never ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bge_core.errors import ConfigError
from bge_rag.flag_cli import (
    PRECISIONS,
    load_embedders,
    load_reranker,
    one_device,
    parse_dataclasses,
    refuse_unsupported,
    register_passthrough,
)

from .data import LAYOUTS, RetrievalDataset, load_dataset
from .metrics import DEFAULT_K_VALUES, check_metric_names, default_metrics, metric_names
from .retrieval import M3_WEIGHTS, MODES, CorpusCache, EmbedderRetriever, Reranking
from .runner import NO_RERANKER, Report, compare, side_by_side

logger = logging.getLogger(__name__)

EMBEDDER_CLASSES = (
    "encoder-only-base",
    "encoder-only-m3",
    "decoder-only-base",
    "decoder-only-icl",
    "decoder-only-pseudo_moe",
)
RERANKER_CLASSES = ("encoder-only-base", "decoder-only-base", "decoder-only-layerwise", "decoder-only-lightweight")
#: FlagEmbedding's default pooling of each model class (used when the class is named, the pooling not).
_CLASS_POOLING = {
    "encoder-only-base": "cls",
    "encoder-only-m3": "cls",
    "decoder-only-base": "last_token",
    "decoder-only-icl": "last_token",
}


@dataclass
class EvalArgs:
    """FlagEmbedding's ``AbsEvalArgs`` (same names and defaults), plus bge-rag's own options."""

    eval_name: str | None = field(default=None, metadata={"help": "The name of the evaluation, kept in result files."})
    dataset_dir: str | None = field(
        default=None,
        metadata={
            "help": "The dataset folder: corpus.jsonl, <split>_queries.jsonl, <split>_qrels.jsonl "
            "(FlagEmbedding's custom layout), or BEIR's corpus.jsonl, queries.jsonl, qrels/<split>.tsv."
        },
    )
    force_redownload: bool = field(default=False, metadata={"help": "Not supported: datasets are local folders."})
    dataset_names: list[str] | None = field(
        default=None, metadata={"help": "Not supported: give each dataset folder as --dataset_dir."}
    )
    splits: list[str] = field(default_factory=lambda: ["test"], metadata={"help": "Splits to evaluate (default test)."})
    corpus_embd_save_dir: str | None = field(
        default=None,
        metadata={
            "help": "Cache corpus embeddings here (Parquet, keyed by model, settings and corpus content; "
            "reused across runs and resumed after an interruption)."
        },
    )
    output_dir: str = field(default="./search_results", metadata={"help": "Where search results and metrics go."})
    search_top_k: int = field(default=1000, metadata={"help": "Documents retrieved per query."})
    rerank_top_k: int = field(default=100, metadata={"help": "Candidates reranked per query."})
    cache_path: str | None = field(default=None, metadata={"help": "Accepted for compatibility; unused (local data)."})
    token: str | None = field(
        default_factory=lambda: os.getenv("HF_TOKEN", None), metadata={"help": "Hugging Face token for hub models."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Encode the corpus again even when it is cached."})
    ignore_identical_ids: bool = field(default=False, metadata={"help": "Drop results whose id equals the query's."})
    k_values: list[int] = field(
        default_factory=lambda: list(DEFAULT_K_VALUES), metadata={"help": "Metric cutoffs (default 1 3 5 10 100 1000)."}
    )
    eval_output_method: str = field(
        default="markdown", metadata={"help": "Summary file format.", "choices": ["json", "markdown"]}
    )
    eval_output_path: str = field(default="./eval_results.md", metadata={"help": "The summary file."})
    eval_metrics: list[str] = field(
        default_factory=lambda: ["ndcg_at_10", "recall_at_10"],
        metadata={"help": "Metrics in the markdown summary and the terminal table."},
    )
    # --- bge-rag's own options --------------------------------------------------------------
    retrieval_modes: list[str] = field(
        default_factory=lambda: ["dense"],
        metadata={"help": f"bge-rag: retrieval modes to compare ({', '.join(MODES)}); all but dense need BGE-M3."},
    )
    hybrid_weights: list[float] = field(
        default_factory=lambda: list(M3_WEIGHTS),
        metadata={
            "help": "bge-rag: [dense, sparse, colbert] weights of dense+sparse and hybrid (default 0.4 0.2 0.4)."
        },
    )
    precision: str | None = field(
        default=None,
        metadata={
            "help": "bge-rag: auto, fp32, bf16 or fp16. Default: FlagEmbedding's choice: on CPU fp32 (it computes "
            "fp32 there whatever --use_fp16 says), on a GPU fp16 with --use_fp16, bf16 with --use_bf16.",
            "choices": list(PRECISIONS),
        },
    )
    dataset_layout: str = field(
        default="auto",
        metadata={
            "help": "bge-rag: custom, beir or auto (beir when there is a qrels/ folder).",
            "choices": list(LAYOUTS),
        },
    )


@dataclass
class EvalModelArgs:
    """FlagEmbedding's ``AbsEvalModelArgs`` (same names and defaults but the batch sizes)."""

    embedder_name_or_path: list[str] = field(
        metadata={"help": "Embedding model(s): hub ids or folders; several are compared.", "required": True}
    )
    embedder_model_class: str | None = field(
        default=None,
        metadata={"help": "FlagEmbedding's model class (sets the default pooling).", "choices": list(EMBEDDER_CLASSES)},
    )
    normalize_embeddings: bool = field(default=True, metadata={"help": "L2-normalize dense vectors."})
    pooling_method: str | None = field(default=None, metadata={"help": "cls, mean or last_token."})
    use_fp16: bool = field(default=True, metadata={"help": "fp16 on a GPU (see --precision)."})
    devices: list[str] | None = field(default=None, metadata={"help": "One device: cpu, cuda, cuda:1, mps."})
    query_instruction_for_retrieval: str | None = field(
        default=None, metadata={"help": "Query instruction. None applies none, as FlagEmbedding's evaluation."}
    )
    query_instruction_format_for_retrieval: str = field(default="{}{}", metadata={"help": "Instruction format."})
    examples_for_task: str | None = field(default=None, metadata={"help": "Not supported by bge-rag eval."})
    examples_instruction_format: str = field(default="{}{}", metadata={"help": "Not supported by bge-rag eval."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the models' own code."})
    reranker_name_or_path: list[str] | None = field(
        default=None, metadata={"help": "Reranker(s): each reranks every retriever's results."}
    )
    reranker_model_class: str | None = field(
        default=None,
        metadata={"help": "FlagEmbedding's reranker class (checked, not needed).", "choices": list(RERANKER_CLASSES)},
    )
    reranker_peft_path: str | None = field(default=None, metadata={"help": "Not supported: merge the adapter first."})
    use_bf16: bool = field(default=False, metadata={"help": "bf16 on a GPU (see --precision)."})
    query_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Instruction before queries."})
    query_instruction_format_for_rerank: str = field(default="{}{}", metadata={"help": "Its format."})
    passage_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Instruction before passages."})
    passage_instruction_format_for_rerank: str = field(default="{}{}", metadata={"help": "Its format."})
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face cache folder for hub models."})
    domain_for_pseudo_moe: str | None = field(default=None, metadata={"help": "Not supported by bge-rag eval."})
    embedder_batch_size: int = field(
        default=3000, metadata={"help": "Texts per batch at most (a token budget bounds each batch too)."}
    )
    reranker_batch_size: int = field(
        default=3000, metadata={"help": "Pairs per batch at most (a token budget bounds each batch too)."}
    )
    embedder_query_max_length: int = field(default=512, metadata={"help": "Max tokens per query."})
    embedder_passage_max_length: int = field(default=512, metadata={"help": "Max tokens per passage."})
    truncate_dim: int | None = field(default=None, metadata={"help": "Keep the first N dimensions (Matryoshka)."})
    reranker_query_max_length: int | None = field(default=None, metadata={"help": "Max query tokens per pair."})
    reranker_max_length: int = field(default=512, metadata={"help": "Max tokens per pair."})
    normalize: bool = field(default=False, metadata={"help": "Sigmoid on reranker scores."})
    prompt: str | None = field(default=None, metadata={"help": "LLM reranker prompt."})
    cutoff_layers: list[int] | None = field(
        default=None, metadata={"help": "Layer-wise / lightweight reranker layers."}
    )
    compress_ratio: int = field(default=1, metadata={"help": "Lightweight reranker compress ratio."})
    compress_layers: list[int] | None = field(default=None, metadata={"help": "Lightweight reranker compress layers."})

    def __post_init__(self) -> None:
        # As FlagEmbedding: a literal backslash-n in a format means a newline.
        for name in (
            "query_instruction_format_for_retrieval",
            "examples_instruction_format",
            "query_instruction_format_for_rerank",
            "passage_instruction_format_for_rerank",
        ):
            setattr(self, name, getattr(self, name).replace("\\n", "\n"))


#: Options bge-rag eval cannot honour: an error when given a value other than the default.
_UNSUPPORTED = {
    "force_redownload": "datasets are read from --dataset_dir only",
    "dataset_names": "give each dataset's folder as --dataset_dir (one run per dataset)",
    "examples_for_task": "in-context examples are not supported by bge-rag eval",
    "examples_instruction_format": "in-context examples are not supported by bge-rag eval",
    "reranker_peft_path": "merge the PEFT adapter into the reranker and pass the merged folder",
    "domain_for_pseudo_moe": "the decoder-only-pseudo_moe class is not supported",
}


def parse(argv: Sequence[str]) -> tuple[EvalArgs, EvalModelArgs]:
    """Parse and check a command line; an unsupported option is a :class:`ConfigError`."""
    eval_args, model_args = parse_dataclasses(
        "bge-rag eval", (__doc__ or "").split("\n\n")[0], (EvalArgs, EvalModelArgs), argv
    )
    check(eval_args, model_args)
    return eval_args, model_args


def check(eval_args: EvalArgs, model_args: EvalModelArgs) -> None:
    """Refuse what cannot be run exactly, naming the option."""
    refuse_unsupported("bge-rag eval", _UNSUPPORTED, eval_args, model_args)
    if model_args.embedder_model_class == "decoder-only-pseudo_moe":
        raise ConfigError("--embedder_model_class decoder-only-pseudo_moe is not supported by bge-rag eval.")
    if eval_args.dataset_dir is None:
        raise ConfigError("--dataset_dir is required: bge-rag eval reads a local dataset folder.")
    one_device(model_args.devices)
    for mode in eval_args.retrieval_modes:
        if mode not in MODES:
            raise ConfigError(f"--retrieval_modes: invalid mode {mode!r}. Valid modes are: {', '.join(MODES)}.")
    if len(eval_args.hybrid_weights) != 3:
        raise ConfigError(
            f"--hybrid_weights takes three numbers (dense, sparse, colbert), got {eval_args.hybrid_weights}."
        )


def label(path: str) -> str:
    """A model's name in result folders: its path's last part, as FlagEmbedding's ``os.path.basename``."""
    stripped = path.rstrip("/\\")
    return os.path.basename(stripped) or stripped


def build(eval_args: EvalArgs, model_args: EvalModelArgs) -> tuple[list[EmbedderRetriever], list[Reranking | None]]:
    """The retrievers (every model in every mode) and the reranking stages of a command line."""
    for option, paths in (
        ("--embedder_name_or_path", model_args.embedder_name_or_path),
        ("--reranker_name_or_path", model_args.reranker_name_or_path or []),
    ):
        named: dict[str, str] = {}
        for path in paths:
            if label(path) in named:
                raise ConfigError(
                    f"{option}: {named[label(path)]} and {path} are both named {label(path)!r}, and results are "
                    "filed by the folder's name (as FlagEmbedding's): rename one folder, or evaluate them in "
                    "separate runs with different --output_dir."
                )
            named[label(path)] = path
    cache = CorpusCache(eval_args.corpus_embd_save_dir, overwrite=eval_args.overwrite)
    retrievers: list[EmbedderRetriever] = []
    for path in model_args.embedder_name_or_path:
        embedder, query_embedder = load_embedders(
            path,
            command="bge-rag eval",
            devices=model_args.devices,
            use_fp16=model_args.use_fp16,
            precision=eval_args.precision,
            pooling=model_args.pooling_method or _CLASS_POOLING.get(model_args.embedder_model_class or ""),
            normalize=model_args.normalize_embeddings,
            query_instruction=model_args.query_instruction_for_retrieval,
            query_instruction_format=model_args.query_instruction_format_for_retrieval,
            batch_size=model_args.embedder_batch_size,
            passage_max_length=model_args.embedder_passage_max_length,
            query_max_length=model_args.embedder_query_max_length,
            truncate_dim=model_args.truncate_dim,
            trust_remote_code=model_args.trust_remote_code,
            cache_dir=model_args.cache_dir,
            token=eval_args.token,
        )
        for mode in dict.fromkeys(eval_args.retrieval_modes):
            retrievers.append(
                EmbedderRetriever(
                    embedder,
                    mode=mode,
                    weights=eval_args.hybrid_weights,
                    query_embedder=query_embedder,
                    cache=cache,
                    name=label(path) if mode == "dense" else f"{label(path)}-{mode}",
                )
            )
    stages: list[Reranking | None] = [None]
    for path in model_args.reranker_name_or_path or []:
        reranker = load_reranker(
            path,
            devices=model_args.devices,
            use_fp16=model_args.use_fp16,
            use_bf16=model_args.use_bf16,
            precision=eval_args.precision,
            normalize=model_args.normalize,
            max_length=model_args.reranker_max_length,
            query_max_length=model_args.reranker_query_max_length,
            batch_size=model_args.reranker_batch_size,
            trust_remote_code=model_args.trust_remote_code,
            cache_dir=model_args.cache_dir,
            token=eval_args.token,
            prompt=model_args.prompt,
            cutoff_layers=model_args.cutoff_layers,
            compress_ratio=model_args.compress_ratio,
            compress_layers=model_args.compress_layers,
        )
        stages.append(
            Reranking(
                reranker,
                top_k=eval_args.rerank_top_k,
                name=label(path),
                query_instruction=model_args.query_instruction_for_rerank,
                query_instruction_format=model_args.query_instruction_format_for_rerank,
                passage_instruction=model_args.passage_instruction_for_rerank,
                passage_instruction_format=model_args.passage_instruction_format_for_rerank,
            )
        )
    return retrievers, stages


def dataset_digest(dataset: RetrievalDataset) -> str:
    """SHA-256 of a dataset's corpus and judgements: which runs in one output folder are comparable."""
    qrels = {name: split.qrels for name, split in dataset.splits.items()}
    blob = dataset.corpus_digest() + json.dumps(qrels, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def write_results(report: Report, eval_args: EvalArgs, digest: str | None = None) -> None:
    """FlagEmbedding's per-run files: search results per split and ``EVAL/eval_results.json``."""
    out = Path(eval_args.output_dir)
    evals: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for run in report.runs:
        folder = out / run.retriever / run.reranker
        folder.mkdir(parents=True, exist_ok=True)
        data = {
            "eval_name": eval_args.eval_name,
            "model_name": run.retriever,
            "reranker_name": run.reranker,
            "split": run.split,
            "dataset_name": None,
            # bge-rag's addition (FlagEmbedding's loader ignores it): the summary gathers only
            # results of this dataset (see collect).
            "dataset_digest": digest,
            "search_results": run.results,
        }
        (folder / f"{run.split}.json").write_text(json.dumps(data, indent=4), encoding="utf-8")
        evals.setdefault((run.retriever, run.reranker), {})[run.split] = run.metrics
    for (retriever, reranker), by_split in evals.items():
        target = out / retriever / reranker / "EVAL" / "eval_results.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(by_split, indent=4), encoding="utf-8")


def collect(
    output_dir: str | os.PathLike, digest: str | None = None
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Every ``<model>/<reranker>/EVAL/eval_results.json`` under ``output_dir``, as FlagEmbedding gathers them.

    With ``digest``, results of another dataset (an earlier run on other data in the same folder)
    are left out with a warning; results without a digest (written by FlagEmbedding) are kept.
    """
    root = Path(output_dir)
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for model in sorted(p for p in root.iterdir() if p.is_dir()):
        for reranker in sorted(p for p in model.iterdir() if p.is_dir()):
            path = reranker / "EVAL" / "eval_results.json"
            if not path.is_file():
                continue
            theirs = _recorded_digest(reranker)
            if digest is not None and theirs is not None and theirs != digest:
                logger.warning(
                    "%s/%s in %s holds results of another dataset (an earlier run): left out of the summary",
                    model.name,
                    reranker.name,
                    root,
                )
                continue
            out.setdefault(model.name, {})[reranker.name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def _recorded_digest(folder: Path) -> str | None:
    for path in sorted(folder.glob("*.json")):
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("dataset_digest")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(recorded, str):
            return recorded
    return None


def flag_markdown(results: dict[str, dict[str, dict[str, dict[str, float]]]], metrics: Sequence[str]) -> str:
    """FlagEmbedding's markdown summary: a table per metric, splits and their average, values in percent."""
    lines: list[str] = []
    for metric in metrics:
        splits = sorted({s for by_rr in results.values() for by_split in by_rr.values() for s in by_split})
        rows = []
        for model, by_rr in results.items():
            for reranker, by_split in by_rr.items():
                values = [by_split.get(s, {}).get(metric) for s in splits]
                average = None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type]
                rows.append(((model, reranker), [average, *values]))
        columns = ["average", *splits]
        best = []
        for c in range(len(columns)):
            present = [(float(v[c]), key) for key, v in rows if v[c] is not None]  # type: ignore[arg-type]
            best.append(max(present, key=lambda item: item[0])[1] if present else None)
        lines += [f"## {metric}", "", f"| Model | Reranker | {' | '.join(columns)} |"]
        lines.append(f"| :---- | :---- | {' | '.join(':---:' for _ in columns)} |")
        for key, values in rows:
            cells = []
            for c, v in enumerate(values):
                cells.append("-" if v is None else (f"**{v * 100:.3f}**" if key == best[c] else f"{v * 100:.3f}"))
            lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " | ")
        lines.append("")
    return "\n".join(lines) + "\n"


def register(subparsers: Any) -> None:
    """Add ``eval`` to the ``bge-rag`` subcommands (its arguments go to :func:`parse`)."""
    register_passthrough(
        subparsers,
        "eval",
        "retrieval metrics on your data; python -m FlagEmbedding.evaluation.custom's arguments (eval --help)",
        run_eval,
    )


def run_eval(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bge-rag eval`` with the arguments after the subcommand."""
    return run(args.arguments, out)


def run(argv: Sequence[str], out: TextIO | None = None) -> int:
    """Run ``bge-rag eval ARGV``: evaluate, write FlagEmbedding's files, print the table."""
    out = out or sys.stdout
    eval_args, model_args = parse(argv)
    assert eval_args.dataset_dir is not None
    dataset = load_dataset(
        eval_args.dataset_dir, eval_args.splits, layout=eval_args.dataset_layout, name=eval_args.eval_name
    )
    metrics = eval_args.eval_metrics
    if metrics == EvalArgs().eval_metrics and "ndcg_at_10" not in metric_names(eval_args.k_values):
        metrics = default_metrics(eval_args.k_values)  # the default names k=10, which these k values lack
    check_metric_names(metrics, eval_args.k_values)
    retrievers, stages = build(eval_args, model_args)
    report = compare(
        retrievers,
        dataset,
        rerankers=stages,
        splits=eval_args.splits,
        k_values=eval_args.k_values,
        top_k=eval_args.search_top_k,
        ignore_identical_ids=eval_args.ignore_identical_ids,
    )
    digest = dataset_digest(dataset)
    write_results(report, eval_args, digest)
    gathered = collect(eval_args.output_dir, digest)
    target = Path(eval_args.eval_output_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if eval_args.eval_output_method == "json":
        target.write_text(json.dumps(gathered, indent=4), encoding="utf-8")
    else:
        target.write_text(flag_markdown(gathered, metrics), encoding="utf-8")
    print(side_by_side(report.to_dict(), metrics), file=out)
    print(f"\nSearch results in {eval_args.output_dir}; summary in {target}.", file=out)
    return 0


__all__ = [
    "NO_RERANKER",
    "EvalArgs",
    "EvalModelArgs",
    "build",
    "check",
    "collect",
    "flag_markdown",
    "parse",
    "run",
]

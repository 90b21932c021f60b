"""Run retrievers (and rerankers) over a dataset's splits and collect the metrics side by side."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bge_core.errors import ConfigError

from .data import RetrievalDataset
from .metrics import DEFAULT_K_VALUES, check_k_values, check_metric_names, compute_metrics, default_metrics
from .retrieval import EmbedderRetriever, Reranking, Results, Retriever, as_retriever

logger = logging.getLogger(__name__)

#: The reranker name of first-stage results, as in FlagEmbedding's result folders.
NO_RERANKER = "NoReranker"
#: Metrics shown when none are named: FlagEmbedding's ``--eval_metrics`` default.
DEFAULT_SHOWN = ("ndcg_at_10", "recall_at_10")


@dataclass(frozen=True)
class Run:
    """One (retriever, reranker, split) cell: its metrics and the ranked results behind them."""

    retriever: str
    reranker: str
    split: str
    metrics: dict[str, float]
    results: Results = field(repr=False)


@dataclass
class Report:
    """The runs of one evaluation, with FlagEmbedding's result layouts and a side-by-side table."""

    dataset: str
    k_values: list[int]
    runs: list[Run] = field(default_factory=list)

    def metrics(self, retriever: str, reranker: str = NO_RERANKER, split: str = "test") -> dict[str, float]:
        """The metrics of one cell."""
        for run in self.runs:
            if (run.retriever, run.reranker, run.split) == (retriever, reranker, split):
                return run.metrics
        cells = ", ".join(f"{r.retriever}/{r.reranker}/{r.split}" for r in self.runs)
        raise ConfigError(f"No run {retriever}/{reranker}/{split}. Runs: {cells}.")

    def to_dict(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """``{retriever: {reranker: {split: {metric: value}}}}``: FlagEmbedding's JSON output."""
        out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for run in self.runs:
            out.setdefault(run.retriever, {}).setdefault(run.reranker, {})[run.split] = dict(run.metrics)
        return out

    def table(self, metrics: Sequence[str] | None = None) -> str:
        """A markdown table: one row per (retriever, reranker), a column per metric and split.

        Args:
            metrics: Metric names (``ndcg_at_10``, ...; default nDCG and recall at 10, or at the
                nearest k value below). An unknown name is an error listing the valid ones.
        """
        names = default_metrics(self.k_values) if metrics is None else check_metric_names(metrics, self.k_values)
        return side_by_side(self.to_dict(), names)

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` (``--eval_output_method json``)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=4), encoding="utf-8")
        return target


def side_by_side(results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]], metrics: Sequence[str]) -> str:
    """Markdown of ``{retriever: {reranker: {split: metrics}}}``, values in percent, best in bold."""
    splits = sorted({s for by_rr in results.values() for by_split in by_rr.values() for s in by_split})
    columns = [(m, s) for m in metrics for s in splits]
    rows = [(ret, rr, by_split) for ret, by_rr in results.items() for rr, by_split in by_rr.items()]
    best = {
        col: max((by_split.get(col[1], {}).get(col[0], float("-inf")) for _, _, by_split in rows), default=None)
        for col in columns
    }
    head = [m if len(splits) == 1 else f"{m} ({s})" for m, s in columns]
    lines = [
        "| Retriever | Reranker | " + " | ".join(head) + " |",
        "| :-- | :-- | " + " | ".join("--:" for _ in columns) + " |",
    ]
    for ret, rr, by_split in rows:
        cells = []
        for col in columns:
            value = by_split.get(col[1], {}).get(col[0])
            if value is None:
                cells.append("-")
            else:
                text = f"{value * 100:.3f}"
                cells.append(f"**{text}**" if len(rows) > 1 and value == best[col] else text)
        lines.append(f"| {ret} | {rr} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _as_reranking(item: Any, rerank_top_k: int) -> Reranking | None:
    if item is None or isinstance(item, Reranking):
        return item
    return Reranking(item, top_k=rerank_top_k)


def _without_identical(results: Results) -> Results:
    return {qid: {d: s for d, s in docs.items() if d != qid} for qid, docs in results.items()}


def compare(
    retrievers: Iterable[Any],
    dataset: RetrievalDataset,
    *,
    rerankers: Sequence[Any] = (None,),
    splits: str | Sequence[str] | None = None,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    top_k: int = 1000,
    rerank_top_k: int = 100,
    ignore_identical_ids: bool = False,
    id_field: str = "id",
    show_progress: bool | None = None,
) -> Report:
    """Evaluate several retrievers, each alone and followed by each reranker, on the same queries.

    Args:
        retrievers: Each an :class:`~bge_rag.evaluation.EmbedderRetriever` (a BGE model in a mode),
            a :class:`bge_core.Embedder` (dense), or an application's LangChain / LlamaIndex
            retriever (see :class:`~bge_rag.evaluation.AppRetriever`).
        dataset: The dataset (:func:`~bge_rag.evaluation.load_dataset`).
        rerankers: ``None`` (no reranking) and/or :class:`bge_core.Reranker` /
            :class:`~bge_rag.evaluation.Reranking` objects; every retriever is run with each.
        splits: The splits to evaluate (default: all the dataset has).
        k_values: Metric cutoffs.
        top_k: Documents retrieved per query (FlagEmbedding's ``--search_top_k``).
        rerank_top_k: Candidates reranked per query, for rerankers not given as ``Reranking``.
        ignore_identical_ids: Drop a document whose id equals the query's (FlagEmbedding's option,
            for datasets whose queries are also documents).
        id_field: The metadata field of an application retriever's documents holding corpus ids.
        show_progress: A progress bar over the stages (each retrieval and each reranking), beside
            the engines' own bars for encoding and reranking (``None``: on a terminal).

    Returns:
        A :class:`Report` with a run per (retriever, reranker, split).
    """
    ks = check_k_values(k_values)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    names = [s for s in ([splits] if isinstance(splits, str) else (splits or list(dataset.splits)))]
    split_objs = {name: dataset.split(name) for name in names}
    items = [as_retriever(r, id_field=id_field) for r in retrievers]
    stages = [_as_reranking(r, rerank_top_k) for r in rerankers]
    if not items:
        raise ConfigError("Give at least one retriever.")
    if not stages:
        raise ConfigError("Give at least one reranker option (None for none).")
    _check_unique([r.name for r in items], "retriever")
    _check_unique([NO_RERANKER if s is None else s.name for s in stages], "reranker")
    _share_encodings(items)
    all_queries: dict[str, str] = {}
    for split in split_objs.values():
        all_queries.update(split.queries)
    if ignore_identical_ids:
        lost = [q for s in split_objs.values() for q, judged in s.qrels.items() if judged.get(q, 0) > 0]
        if lost:
            logger.warning(
                "ignore_identical_ids drops the document whose id equals the query's, and %d of %d queries have "
                "that document judged relevant (first: %r): their metrics will count it as a miss.",
                len(lost),
                sum(len(s.queries) for s in split_objs.values()),
                lost[0],
            )
    report = Report(dataset=dataset.name, k_values=ks)
    bar = _stage_bar(len(items) * len(stages), show_progress)
    for retriever in items:
        logger.info(
            "Retrieving with %s (%d queries, %d documents)", retriever.name, len(all_queries), len(dataset.corpus)
        )
        _stage(bar, f"{retriever.name}: retrieve")
        found = retriever.retrieve(dataset, all_queries, top_k)
        if ignore_identical_ids:
            found = _without_identical(found)
        for stage in stages:
            if stage is None:
                ranked, label = found, NO_RERANKER
            else:
                logger.info("Reranking the top %d of %s with %s", stage.top_k, retriever.name, stage.name)
                _stage(bar, f"{retriever.name}: rerank with {stage.name}")
                ranked = stage.rerank(dataset, all_queries, found, ignore_identical_ids=ignore_identical_ids)
                label = stage.name
            for name, split in split_objs.items():
                results = {qid: ranked[qid] for qid in split.queries}
                report.runs.append(Run(retriever.name, label, name, compute_metrics(split.qrels, results, ks), results))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return report


def _stage_bar(total: int, show_progress: bool | None) -> Any:
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    if not show_progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Evaluating", unit="stage")


def _stage(bar: Any, description: str) -> None:
    if bar is not None:
        bar.set_description(description)


def evaluate(
    retriever: Any,
    dataset: RetrievalDataset,
    *,
    reranker: Any = None,
    splits: str | Sequence[str] | None = None,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    top_k: int = 1000,
    rerank_top_k: int = 100,
    ignore_identical_ids: bool = False,
    id_field: str = "id",
    show_progress: bool | None = None,
) -> Report:
    """Evaluate one retriever, and with ``reranker`` also its reranked results.

    ``retriever`` is anything :func:`compare` takes: a BGE retriever, an Embedder, or an
    application's LangChain or LlamaIndex retriever whose documents carry the corpus id in
    ``metadata[id_field]``. The report has the first-stage runs (reranker ``"NoReranker"``) and,
    with a reranker, the reranked ones.
    """
    rerankers = (None,) if reranker is None else (None, reranker)
    return compare(
        [retriever],
        dataset,
        rerankers=rerankers,
        splits=splits,
        k_values=k_values,
        top_k=top_k,
        rerank_top_k=rerank_top_k,
        ignore_identical_ids=ignore_identical_ids,
        id_field=id_field,
        show_progress=show_progress,
    )


def _check_unique(names: list[str], what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(
                f"Two {what}s are named {name!r}; name them apart: EmbedderRetriever(..., name=...), "
                "AppRetriever(app_retriever, name=...) or Reranking(reranker, name=...)."
            )
        seen.add(name)


def _share_encodings(items: list[Retriever]) -> None:
    """Let the modes of one embedder share one corpus encoding (the union of their outputs)."""
    groups: dict[int, list[EmbedderRetriever]] = {}
    for item in items:
        if isinstance(item, EmbedderRetriever):
            groups.setdefault(id(item.embedder), []).append(item)
    for group in groups.values():
        union = tuple(o for o in ("dense", "sparse", "colbert") if any(o in r.outputs for r in group))
        cache = group[0].cache
        for r in group:
            r.outputs = union
            r.cache = cache


__all__ = ["DEFAULT_SHOWN", "NO_RERANKER", "Report", "Run", "compare", "evaluate", "side_by_side"]

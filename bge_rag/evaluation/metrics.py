"""Retrieval metrics, computed as FlagEmbedding's evaluation computes them.

nDCG, MAP, recall and precision at each cutoff come from trec_eval (through pytrec_eval, as in
FlagEmbedding; ``pip install 'bge-rag[eval]'`` installs the ``pytrec-eval-terrier`` build, which
ships wheels). MRR and capped recall follow FlagEmbedding's (BEIR's) definitions. Every value is
the mean over queries rounded to 5 decimals, and named as in FlagEmbedding's result files
(``ndcg_at_10``, ``map_at_10``, ``recall_at_10``, ``precision_at_10``, ``mrr_at_10``,
``recall_cap_at_10``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bge_core.errors import ConfigError, MissingExtraError

#: Metric families, in the order FlagEmbedding writes them.
METRICS = ("ndcg", "map", "recall", "precision", "mrr", "recall_cap")
#: FlagEmbedding's default cutoffs.
DEFAULT_K_VALUES = (1, 3, 5, 10, 100, 1000)

Qrels = Mapping[str, Mapping[str, int]]
Results = Mapping[str, Mapping[str, float]]


def _pytrec_eval() -> Any:
    try:
        import pytrec_eval
    except ImportError as exc:
        raise MissingExtraError(f"Retrieval metrics need pytrec_eval ({exc}): pip install 'bge-rag[eval]'") from exc
    return pytrec_eval


def check_k_values(k_values: Sequence[int]) -> list[int]:
    """The cutoffs as a list of positive integers, or an error."""
    values = list(k_values)
    if not values:
        raise ConfigError("Give at least one k value.")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k values must be positive integers, got {k!r}")
    return values


def metric_names(k_values: Sequence[int]) -> list[str]:
    """Every metric :func:`compute_metrics` gives for ``k_values``, in its order."""
    return [f"{name}_at_{k}" for name in METRICS for k in check_k_values(k_values)]


def check_metric_names(names: Sequence[str], k_values: Sequence[int]) -> list[str]:
    """``names`` if each is a metric computed at ``k_values``, else an error listing the valid ones."""
    valid = metric_names(k_values)
    for name in names:
        if name not in valid:
            raise ConfigError(
                f"Unknown metric {name!r} for k values {list(k_values)}. Valid: {', '.join(valid)} "
                "(name_at_k, with k among the k values)."
            )
    return list(names)


def default_metrics(k_values: Sequence[int]) -> list[str]:
    """NDCG and recall at 10 (FlagEmbedding's default), else at the nearest k below 10, else the smallest."""
    ks = check_k_values(k_values)
    below = [k for k in ks if k <= 10]
    k = max(below) if below else min(ks)
    return [f"ndcg_at_{k}", f"recall_at_{k}"]


def _ranked(doc_scores: Mapping[str, float], k: int) -> list[str]:
    # Python's sort is stable: equal scores keep the order of the mapping, as in FlagEmbedding.
    return [d for d, _ in sorted(doc_scores.items(), key=lambda item: item[1], reverse=True)[:k]]


def compute_metrics(qrels: Qrels, results: Results, k_values: Sequence[int] = DEFAULT_K_VALUES) -> dict[str, float]:
    """Every metric at every cutoff, as FlagEmbedding's ``AbsEvaluator.compute_metrics``.

    Args:
        qrels: ``qrels[qid][docid]`` relevance grades (> 0 is relevant).
        results: ``results[qid][docid]`` retrieval scores, higher is better; every query of
            ``results`` must be judged in ``qrels``.
        k_values: Cutoffs.

    Returns:
        ``{"ndcg_at_10": 0.51234, ...}``: means over queries, rounded to 5 decimals.
    """
    ks = check_k_values(k_values)
    unjudged = [qid for qid in results if qid not in qrels]
    if unjudged:
        raise ConfigError(f"{len(unjudged)} queries have results but no judgement (first: {unjudged[0]!r}).")
    if not qrels:
        raise ConfigError("No relevance judgement to evaluate against.")
    cut = ",".join(str(k) for k in ks)
    evaluator = _pytrec_eval().RelevanceEvaluator(
        {q: dict(d) for q, d in qrels.items()}, {f"map_cut.{cut}", f"ndcg_cut.{cut}", f"recall.{cut}", f"P.{cut}"}
    )
    per_query = evaluator.evaluate({q: {d: float(s) for d, s in r.items()} for q, r in results.items()})
    n = len(per_query)
    out: dict[str, float] = {}
    for name, key in (("ndcg", "ndcg_cut"), ("map", "map_cut"), ("recall", "recall"), ("precision", "P")):
        for k in ks:
            total = sum(scores[f"{key}_{k}"] for scores in per_query.values())
            out[f"{name}_at_{k}"] = round(total / n, 5) if n else 0.0
    k_max = max(ks)
    top = {qid: _ranked(doc_scores, k_max) for qid, doc_scores in results.items()}
    # MRR and capped recall divide by the number of judged queries, as FlagEmbedding's do.
    for k in ks:
        rr = 0.0
        for qid, hits in top.items():
            relevant = {d for d, grade in qrels[qid].items() if grade > 0}
            rr += next((1.0 / rank for rank, d in enumerate(hits[:k], 1) if d in relevant), 0.0)
        out[f"mrr_at_{k}"] = round(rr / len(qrels), 5)
    for k in ks:
        capped = 0.0
        for qid, hits in top.items():
            relevant_count = sum(1 for grade in qrels[qid].values() if grade > 0)
            found = sum(1 for d in hits[:k] if qrels[qid].get(d, 0) > 0)
            # FlagEmbedding divides by min(relevant, k) and fails on a query with nothing relevant.
            capped += found / min(relevant_count, k) if relevant_count else 0.0
        out[f"recall_cap_at_{k}"] = round(capped / len(qrels), 5)
    return {f"{name}_at_{k}": out[f"{name}_at_{k}"] for name in METRICS for k in ks}


__all__ = [
    "DEFAULT_K_VALUES",
    "METRICS",
    "check_k_values",
    "check_metric_names",
    "compute_metrics",
    "default_metrics",
    "metric_names",
]

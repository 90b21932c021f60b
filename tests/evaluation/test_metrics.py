"""The metrics equal FlagEmbedding's AbsEvaluator.compute_metrics, value for value and key for key."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bge_core.errors import ConfigError
from bge_rag.evaluation import compute_metrics, dense_search, top_k_rows


def _case(seed: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(40)]
    qrels, results = {}, {}
    for q in range(25):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 4))
        # graded, and now and then a judged-but-irrelevant (0) document
        qrels[qid] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        if all(v == 0 for v in qrels[qid].values()):
            qrels[qid][judged[0]] = 1
        found = rng.sample(docs, rng.randint(0, 30))
        # ties on purpose: scores from a small set of values
        results[qid] = {d: float(rng.choice([0.1, 0.25, 0.5, 0.5, 0.75, 0.9])) for d in found}
    return qrels, results


@pytest.mark.parity
@pytest.mark.parametrize("seed", range(6))
def test_equal_to_flagembedding(flag, seed: int) -> None:
    from FlagEmbedding.abc.evaluation.evaluator import AbsEvaluator

    qrels, results = _case(seed)
    k_values = [1, 3, 5, 10, 100]
    expected = AbsEvaluator.compute_metrics(qrels=qrels, search_results=results, k_values=k_values)
    got = compute_metrics(qrels, results, k_values)
    assert list(got) == list(expected)
    assert got == pytest.approx(expected, abs=1e-12)


def test_values_by_hand() -> None:
    qrels = {"a": {"x": 1}, "b": {"y": 1, "z": 1}}
    results = {"a": {"w": 0.9, "x": 0.8}, "b": {"y": 0.1}}
    m = compute_metrics(qrels, results, [1, 2])
    # a: its relevant x at rank 2; b: y (one of two relevant) at rank 1
    assert m["mrr_at_1"] == 0.5 and m["mrr_at_2"] == 0.75
    assert m["recall_at_2"] == 0.75 and m["recall_cap_at_1"] == 0.5
    assert m["precision_at_1"] == 0.5 and m["precision_at_2"] == 0.5


def test_errors() -> None:
    with pytest.raises(ConfigError, match="k values"):
        compute_metrics({"a": {"x": 1}}, {"a": {}}, [0])
    with pytest.raises(ConfigError, match="no judgement"):
        compute_metrics({"a": {"x": 1}}, {"b": {"x": 1.0}}, [1])


def test_top_k_equals_flat_faiss_index_and_breaks_ties_by_index() -> None:
    import faiss

    rng = np.random.default_rng(0)
    q = rng.standard_normal((37, 24)).astype(np.float32)
    d = rng.standard_normal((501, 24)).astype(np.float32)
    values, indices = dense_search(q, d, 20)
    index = faiss.IndexFlatIP(24)
    index.add(d)
    f_values, f_indices = index.search(q, 20)
    assert (indices == f_indices).all()
    np.testing.assert_allclose(values, f_values, atol=1e-5)
    tied = np.array([[0.5, 1.0, 0.5, 1.0, 0.2]], dtype=np.float32)
    v, i = top_k_rows(tied, 3)
    assert i.tolist() == [[1, 3, 0]] and v.tolist() == [[1.0, 1.0, 0.5]]
    v, i = top_k_rows(tied, 99)  # k above the columns keeps them all
    assert i.tolist() == [[1, 3, 0, 2, 4]]

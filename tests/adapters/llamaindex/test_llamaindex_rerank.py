"""llama_index.postprocessor.bge_rerank: BGERerank (cross-encoder) and BGEM3Rerank (M3 rescoring)."""

from __future__ import annotations

import asyncio
import copy
import pickle

import numpy as np
import pytest
from _llamaindex_support import QUESTIONS, ConcurrencyProbe, collected_events, scored_nodes
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, QueryBundle
from llama_index.embeddings.bge import BGEEmbedding
from llama_index.postprocessor.bge_rerank import BGEM3Rerank, BGERerank

from bge_core import ConfigError, Embedder, InvalidInputError, Reranker, sigmoid

QUERY = QUESTIONS[0]


@pytest.fixture(scope="module")
def nodes(paragraphs):
    return scored_nodes(paragraphs[:8])


@pytest.fixture(scope="module")
def rerank(models) -> BGERerank:
    return BGERerank(model=str(models.reranker), top_n=None, precision="fp32", max_length=128)


@pytest.fixture(scope="module")
def reference_scores(models, nodes) -> list[float]:
    reference = Reranker(models.reranker, precision="fp32", max_length=128)
    return reference.score([(QUERY, n.node.get_content(metadata_mode=MetadataMode.EMBED)) for n in nodes])


def test_subclasses_the_llamaindex_base():
    assert issubclass(BGERerank, BaseNodePostprocessor) and issubclass(BGEM3Rerank, BaseNodePostprocessor)


def test_scores_equal_the_engine_best_first_as_floats(rerank, nodes, reference_scores):
    before = copy.deepcopy(nodes)
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    order = sorted(range(len(nodes)), key=lambda i: -reference_scores[i])
    assert [n.node.node_id for n in out] == [nodes[i].node.node_id for i in order]
    assert [n.score for n in out] == [reference_scores[i] for i in order]
    assert all(type(n.score) is float for n in out)
    # The text scored is the embedding view: metadata included, excluded keys left out.
    assert "reference 0" in nodes[0].node.get_content(metadata_mode=MetadataMode.EMBED)
    assert [(n.score, n.node.metadata) for n in nodes] == [(n.score, n.node.metadata) for n in before]


def test_top_n_threshold_normalize_and_retrieval_score(models, nodes, reference_scores):
    probabilities = [sigmoid(s) for s in reference_scores]
    threshold = sorted(probabilities)[len(probabilities) // 2]
    kept = sorted((p for p in probabilities if p >= threshold), reverse=True)
    rerank = BGERerank(
        model=str(models.reranker),
        precision="fp32",
        max_length=128,
        normalize=True,
        score_threshold=threshold,
        keep_retrieval_score=True,
        top_n=3,
    )
    out = rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    np.testing.assert_allclose([n.score for n in out], kept[:3], rtol=1e-6)
    by_id = {n.node.node_id: n.score for n in nodes}
    assert all(n.node.metadata["retrieval_score"] == by_id[n.node.node_id] for n in out)
    assert all("retrieval_score" not in n.node.metadata for n in nodes)  # inputs untouched


def test_emits_rerank_events_and_callbacks(rerank, nodes):
    debug = LlamaDebugHandler()
    rerank.callback_manager = CallbackManager([debug])
    try:
        with collected_events() as events:
            out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    finally:
        rerank.callback_manager = CallbackManager([])
    start = [e for e in events if isinstance(e, ReRankStartEvent)]
    end = [e for e in events if isinstance(e, ReRankEndEvent)]
    assert len(start) == len(end) == 1
    assert start[0].model_name == rerank.model and start[0].top_n == len(nodes) and start[0].nodes == nodes
    assert start[0].query.query_str == QUERY and end[0].nodes == out
    assert len(debug.get_event_pairs(CBEventType.RERANKING)) == 1


def test_async_matches_sync_and_runs_one_call_at_a_time(rerank, nodes, monkeypatch):
    expected = rerank.postprocess_nodes(nodes, query_str=QUERY)
    probe = ConcurrencyProbe(BGERerank._scores)
    monkeypatch.setattr(BGERerank, "_scores", lambda self, *args: probe(self, *args))

    async def run():
        return await asyncio.gather(*(rerank.apostprocess_nodes(nodes, query_str=QUERY) for _ in range(3)))

    results = asyncio.run(run())
    assert probe.calls == 3 and probe.most == 1
    assert all([(n.node.node_id, n.score) for n in r] == [(n.node.node_id, n.score) for n in expected] for r in results)


def test_empty_nodes_and_missing_query(rerank, nodes):
    with collected_events() as events:
        assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert [type(e) for e in events if isinstance(e, (ReRankStartEvent, ReRankEndEvent))] == [
        ReRankStartEvent,
        ReRankEndEvent,
    ]
    with pytest.raises(InvalidInputError, match="query"):
        rerank.postprocess_nodes(nodes)


def test_to_dict_and_pickle_round_trip(rerank, nodes):
    data = rerank.to_dict()
    assert data["class_name"] == "BGERerank" and data["top_n"] is None
    again = BGERerank.from_dict(data)
    assert again.to_dict() == data and again.engine is rerank.engine
    clone = pickle.loads(pickle.dumps(rerank))
    assert clone._slot.loaded is False
    assert [n.score for n in clone.postprocess_nodes(nodes, query_str=QUERY)] == [
        n.score for n in rerank.postprocess_nodes(nodes, query_str=QUERY)
    ]


@pytest.mark.parametrize("weights", [(0.4, 0.2, 0.4), (0.0, 0.0, 1.0)])
def test_m3_rerank_equals_compute_score(models, nodes, weights):
    options = {"precision": "fp32", "max_length": 128}
    m3 = BGEM3Rerank(model=str(models.m3), weights=weights, top_n=None, **options)
    assert m3.engine is BGEEmbedding(str(models.m3), **options).engine  # shares the embedder's model
    out = m3.postprocess_nodes(nodes, query_str=QUERY)
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    pure_colbert = weights == (0.0, 0.0, 1.0)  # compute_score rejects these weights (see the adapter)
    scores = Embedder(models.m3, **options).compute_score(
        [(QUERY, t) for t in texts], weights=None if pure_colbert else weights
    )
    expected = scores["colbert" if pure_colbert else "colbert+sparse+dense"]
    order = sorted(range(len(nodes)), key=lambda i: -expected[i])
    assert [n.node.node_id for n in out] == [nodes[i].node.node_id for i in order]
    np.testing.assert_allclose([n.score for n in out], [expected[i] for i in order], rtol=1e-5, atol=1e-6)
    assert all(type(n.score) is float for n in out)
    assert BGEM3Rerank.from_dict(m3.to_dict()).weights == weights


def test_m3_rerank_rejects_bad_weights(models):
    with pytest.raises(ConfigError, match="weights"):
        BGEM3Rerank(model=str(models.m3), weights=(0.0, 0.0, 0.0), precision="fp32")


def test_defaults_run_bf16_here_within_a_bound_of_fp32(models, nodes, reference_scores):
    # precision="auto" (bf16 on this CPU) and max_length=128 as the reference; scores in logits.
    default = BGERerank(str(models.reranker), top_n=None, max_length=128)
    assert default.precision == "auto"
    out = {n.node.node_id: n.score for n in default.postprocess_nodes(nodes, query_str=QUERY)}
    got = [out[n.node.node_id] for n in nodes]
    # Measured on this fixture: logits within 0.018 of fp32 (benchmarks/bf16_deviation.py).
    np.testing.assert_allclose(got, reference_scores, rtol=0, atol=0.05)

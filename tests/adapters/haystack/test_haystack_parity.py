"""The BGE components output what bge_core computes, as Haystack types, without touching their inputs."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
from _haystack_support import FAST, registry_named, sample_documents
from haystack import Document
from haystack.dataclasses import SparseEmbedding
from haystack_integrations.components.embedders.bge import (
    BGEDocumentEmbedder,
    BGESparseDocumentEmbedder,
    BGESparseTextEmbedder,
    BGETextEmbedder,
)
from haystack_integrations.components.rankers.bge import BGEM3Ranker, BGERanker

from bge_core import Embedder, Reranker, lookup

QUERY = "How do I handle an exception with try and except?"


@pytest.fixture(scope="module")
def documents(paragraphs) -> list[Document]:
    return sample_documents(paragraphs)


def _texts_with_title(docs: list[Document], separator: str = "\n") -> list[str]:
    """What Haystack's embedders embed for meta_fields_to_embed=["title", ...]: title, then content."""
    return [separator.join([d.meta["title"], d.content]) if d.meta.get("title") else d.content for d in docs]


def _is_float_list(values: object) -> bool:
    return isinstance(values, list) and all(type(v) is float for v in values)


@pytest.fixture(scope="module")
def bge_small(models, tmp_path_factory) -> str:
    """The dense fixture under the name bge-small-en-v1.5, so the registry's settings apply."""
    return str(registry_named(models.dense, "bge-small-en-v1.5", tmp_path_factory.mktemp("registry")))


def test_text_embedder_applies_the_registry_query_instruction(bge_small, models):
    embedding = BGETextEmbedder(model=bge_small, **FAST).run(QUERY)["embedding"]
    assert _is_float_list(embedding) and len(embedding) == 384
    instruction = lookup("BAAI/bge-small-en-v1.5").query_instruction
    assert instruction
    reference = Embedder(models.dense, query_instruction=instruction, **FAST)
    np.testing.assert_allclose(embedding, reference.encode_queries(QUERY), rtol=0, atol=1e-6)
    assert not np.allclose(embedding, reference.encode_documents(QUERY), atol=1e-3)


def test_text_embedder_custom_instruction_and_truncate_dim(models):
    embedding = BGETextEmbedder(model=str(models.dense), query_instruction="query: ", truncate_dim=64, **FAST).run(
        QUERY
    )["embedding"]
    reference = Embedder(models.dense, query_instruction="query: ", truncate_dim=64, **FAST).encode_queries(QUERY)
    assert _is_float_list(embedding) and len(embedding) == 64
    np.testing.assert_allclose(embedding, reference, rtol=0, atol=1e-6)


def test_document_embedder_matches_embedder_with_meta_fields(models, documents):
    before = copy.deepcopy(documents)
    embedder = BGEDocumentEmbedder(
        model=str(models.dense), meta_fields_to_embed=["title", "absent"], batch_size=5, progress_bar=False, **FAST
    )
    out = embedder.run(documents)["documents"]
    expected = Embedder(models.dense, **FAST).encode_documents(_texts_with_title(documents))
    assert len(out) == len(documents)
    for new, old, vector in zip(out, documents, expected):
        assert new is not old and new.id == old.id and new.content == old.content and new.meta == old.meta
        assert _is_float_list(new.embedding)
        np.testing.assert_allclose(new.embedding, vector, rtol=0, atol=1e-6)
    assert documents == before and all(d.embedding is None for d in documents)  # inputs untouched


def test_document_embedder_without_meta_fields_embeds_content_only(models, documents):
    out = BGEDocumentEmbedder(model=str(models.dense), progress_bar=False, **FAST).run(documents[:4])["documents"]
    expected = Embedder(models.dense, **FAST).encode_documents([d.content for d in documents[:4]])
    np.testing.assert_allclose([d.embedding for d in out], expected, rtol=0, atol=1e-6)


def test_sparse_embedders_match_embedder(models, documents):
    reference = Embedder(models.m3, **FAST)
    query = BGESparseTextEmbedder(model=str(models.m3), **FAST).run(QUERY)["sparse_embedding"]
    expected_query = reference.encode(QUERY, kind="query", dense=False, sparse=True).sparse
    assert isinstance(query, SparseEmbedding)
    assert all(type(i) is int for i in query.indices) and _is_float_list(query.values)
    assert query.indices == expected_query.indices.tolist()
    np.testing.assert_allclose(query.values, expected_query.values, rtol=0, atol=1e-6)

    # After a dense embedder, as in a hybrid indexing pipeline: both embeddings end up on the Document.
    dense = BGEDocumentEmbedder(model=str(models.m3), progress_bar=False, **FAST).run(documents)["documents"]
    out = BGESparseDocumentEmbedder(
        model=str(models.m3), meta_fields_to_embed=["title"], progress_bar=False, **FAST
    ).run(dense)["documents"]
    expected = reference.encode(_texts_with_title(documents), dense=False, sparse=True).sparse
    for new, old, vector in zip(out, dense, expected):
        assert new is not old and new.id == old.id and new.embedding == old.embedding
        assert old.sparse_embedding is None
        assert new.sparse_embedding.indices == vector.indices.tolist()
        np.testing.assert_allclose(new.sparse_embedding.values, vector.values, rtol=0, atol=1e-6)
        assert all(type(i) is int for i in new.sparse_embedding.indices) and _is_float_list(new.sparse_embedding.values)


@pytest.fixture(scope="module")
def logits(models, documents) -> dict[str, float]:
    """Raw cross-encoder logits of (QUERY, document) per document id, from bge_core directly."""
    scores = Reranker(models.reranker, **FAST).score([(QUERY, d.content) for d in documents])
    return {d.id: s for d, s in zip(documents, scores)}


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_ranker_scores_are_sigmoid_of_logits_best_first(models, documents, logits):
    before = copy.deepcopy(documents)
    out = BGERanker(model=str(models.reranker), top_k=len(documents), **FAST).run(QUERY, documents)["documents"]
    assert sorted(d.id for d in out) == sorted(logits)
    assert [d.id for d in out] == sorted(logits, key=lambda i: -logits[i])
    for doc in out:
        assert type(doc.score) is float
        assert doc.score == pytest.approx(_sigmoid(logits[doc.id]), abs=1e-6)
    assert documents == before


def test_ranker_raw_scores_calibration_and_run_overrides(models, documents, logits):
    ranker = BGERanker(model=str(models.reranker), top_k=len(documents), **FAST)
    raw = ranker.run(QUERY, documents, scale_score=False)["documents"]  # overrides scale_score=True
    assert {d.id: d.score for d in raw} == pytest.approx(logits, abs=1e-6)
    calibrated = BGERanker(model=str(models.reranker), calibration_factor=0.25, **FAST).run(QUERY, documents)
    for doc in calibrated["documents"]:
        assert doc.score == pytest.approx(_sigmoid(0.25 * logits[doc.id]), abs=1e-6)
    raw_ranker = BGERanker(model=str(models.reranker), scale_score=False, **FAST)
    scaled = raw_ranker.run(QUERY, documents, scale_score=True)["documents"]
    assert scaled[0].score == pytest.approx(_sigmoid(logits[scaled[0].id]), abs=1e-6)


def test_ranker_top_k_and_score_threshold(models, documents, logits):
    ranker = BGERanker(model=str(models.reranker), top_k=3, scale_score=False, **FAST)
    best = sorted(logits, key=lambda i: -logits[i])
    assert [d.id for d in ranker.run(QUERY, documents)["documents"]] == best[:3]
    assert [d.id for d in ranker.run(QUERY, documents, top_k=5)["documents"]] == best[:5]
    threshold = float(np.median(list(logits.values())))
    kept = ranker.run(QUERY, documents, top_k=len(documents), score_threshold=threshold)["documents"]
    assert [d.id for d in kept] == [i for i in best if logits[i] >= threshold]


def test_ranker_deduplicates_by_id_keeping_the_best_retrieval_score(models, documents, logits):
    scored = [replace(d, score=0.1) for d in documents]
    duplicate = replace(scored[2], score=0.9, meta={**scored[2].meta, "copy": True})
    out = BGERanker(model=str(models.reranker), top_k=20, **FAST).run(QUERY, [*scored, duplicate])["documents"]
    assert len(out) == len(documents) and len({d.id for d in out}) == len(documents)
    assert next(d for d in out if d.id == duplicate.id).meta.get("copy") is True
    assert [d.score for d in scored] == [0.1] * len(scored) and duplicate.score == 0.9  # inputs untouched


def test_ranker_meta_fields_are_part_of_the_passage(models, documents):
    out = BGERanker(model=str(models.reranker), meta_fields_to_embed=["title"], scale_score=False, **FAST).run(
        QUERY, documents
    )["documents"]
    expected = Reranker(models.reranker, **FAST).score([(QUERY, t) for t in _texts_with_title(documents)])
    by_id = {d.id: s for d, s in zip(documents, expected)}
    assert {d.id: d.score for d in out} == pytest.approx({d.id: by_id[d.id] for d in out}, abs=1e-6)


@pytest.fixture(scope="module")
def m3_scores(models, documents) -> dict[str, dict[str, float]]:
    """BGE-M3 scores of (QUERY, document) per mode and document id, from bge_core directly."""
    scores = Embedder(models.m3, **FAST).compute_score([(QUERY, d.content) for d in documents], weights=[0.4, 0.2, 0.4])
    return {mode: {d.id: s for d, s in zip(documents, values)} for mode, values in scores.items()}


@pytest.mark.parametrize(("mode", "weights"), [("colbert+sparse+dense", None), ("sparse+dense", [1.0, 0.3, 0.0])])
def test_m3_ranker_matches_compute_score(models, documents, m3_scores, mode, weights):
    ranked = BGEM3Ranker(model=str(models.m3), mode=mode, weights=weights, top_k=20, **FAST).run(QUERY, documents)
    if weights is None:  # the default weights, those of the BGE-M3 paper
        expected = m3_scores[mode]
    else:
        dense, sparse = m3_scores["dense"], m3_scores["sparse"]
        expected = {i: (weights[0] * dense[i] + weights[1] * sparse[i]) / (weights[0] + weights[1]) for i in dense}
    assert [d.id for d in ranked["documents"]] == sorted(expected, key=lambda i: -expected[i])
    for doc in ranked["documents"]:
        assert type(doc.score) is float and doc.score == pytest.approx(expected[doc.id], abs=1e-5)

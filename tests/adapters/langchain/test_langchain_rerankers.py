"""BGEReranker (document compressor, cross-encoder) and BGERerankRetriever, end to end in LCEL."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _langchain_support import MAX_LENGTH, pending_while_model_busy
from langchain_core.cross_encoders import BaseCrossEncoder
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import ValidationError

from bge_core import Embedder, InputTypeError, Reranker
from langchain_bge import BGEEmbeddings, BGEReranker, BGERerankRetriever

QUERY = "How do I catch an exception and handle it?"


@pytest.fixture(scope="module")
def reranker(models):
    return BGEReranker(model_name=str(models.reranker), precision="fp32", max_length=MAX_LENGTH, top_n=None)


@pytest.fixture(scope="module")
def reference(models):
    """Sigmoid scores from an engine of its own."""
    return Reranker(models.reranker, precision="fp32", max_length=MAX_LENGTH, normalize=True)


@pytest.fixture(scope="module")
def documents(paragraphs):
    return [
        Document(page_content=p, metadata={"source": "python-docs", "n": i}, id=f"p{i}")
        for i, p in enumerate(paragraphs[40:48])
    ]


def test_is_a_compressor_and_a_cross_encoder(reranker):
    assert isinstance(reranker, BaseDocumentCompressor) and isinstance(reranker, BaseCrossEncoder)


@pytest.mark.parametrize("normalize", [True, False])
def test_score_equals_the_engine(models, paragraphs, normalize):
    pairs = [(QUERY, p) for p in paragraphs[:8]]
    ours = BGEReranker(model_name=str(models.reranker), precision="fp32", max_length=MAX_LENGTH, normalize=normalize)
    expected = Reranker(models.reranker, precision="fp32", max_length=MAX_LENGTH, normalize=normalize).score(pairs)
    got = ours.score(pairs)
    assert got == expected and all(type(s) is float for s in got)
    assert ours.score([]) == []


def test_compress_orders_by_score_and_keeps_metadata(reranker, reference, documents):
    expected = reference.score([(QUERY, d.page_content) for d in documents])
    got = reranker.compress_documents(documents, QUERY)
    order = sorted(range(len(documents)), key=lambda i: -expected[i])
    assert [d.id for d in got] == [documents[i].id for i in order]
    for doc, i in zip(got, order):
        assert doc.page_content == documents[i].page_content
        assert doc.metadata == {**documents[i].metadata, "relevance_score": expected[i]}
        assert type(doc.metadata["relevance_score"]) is float
        assert doc is not documents[i]
    # The inputs are untouched.
    assert all("relevance_score" not in d.metadata for d in documents)


def test_top_n_and_score_threshold(models, reference, documents):
    scores = reference.score([(QUERY, d.page_content) for d in documents])
    threshold = float(np.median(scores))
    common = {"model_name": str(models.reranker), "precision": "fp32", "max_length": MAX_LENGTH}
    top3 = BGEReranker(top_n=3, **common).compress_documents(documents, QUERY)
    assert [d.metadata["relevance_score"] for d in top3] == sorted(scores, reverse=True)[:3]
    kept = BGEReranker(top_n=None, score_threshold=threshold, **common).compress_documents(documents, QUERY)
    assert [d.metadata["relevance_score"] for d in kept] == sorted((s for s in scores if s >= threshold), reverse=True)
    assert 0 < len(kept) < len(documents)
    with pytest.raises(ValidationError, match="top_n"):
        BGEReranker(top_n=0, **common)


def test_raw_logits_with_normalize_false(models, documents):
    raw = BGEReranker(
        model_name=str(models.reranker), precision="fp32", max_length=MAX_LENGTH, normalize=False, top_n=None
    )
    engine = Reranker(models.reranker, precision="fp32", max_length=MAX_LENGTH)
    expected = engine.score([(QUERY, d.page_content) for d in documents])
    got = raw.compress_documents(documents, QUERY)
    assert sorted(d.metadata["relevance_score"] for d in got) == sorted(expected)


def test_ties_keep_input_order(reranker):
    docs = [Document(page_content="the same passage", metadata={"i": i}) for i in range(4)]
    assert [d.metadata["i"] for d in reranker.compress_documents(docs, QUERY)] == [0, 1, 2, 3]


def test_empty_and_bad_input(reranker, documents):
    assert reranker.compress_documents([], QUERY) == []
    assert asyncio.run(reranker.acompress_documents([], QUERY)) == []
    with pytest.raises(InputTypeError, match="query must be a string, got None"):
        reranker.compress_documents(documents, None)
    with pytest.raises(InputTypeError, match="documents must be a list of Document objects, got None"):
        reranker.compress_documents(None, QUERY)
    with pytest.raises(InputTypeError, match=r"documents\[1\] is str"):
        reranker.compress_documents([documents[0], "not a document"], QUERY)
    with pytest.raises(InputTypeError, match="wrap a single pair"):
        reranker.score(("query", "passage"))
    with pytest.raises(InputTypeError, match=r"pairs\[0\]"):
        reranker.score([("query", None)])


async def test_async_equals_sync_and_leaves_the_loop_free(reranker, documents):
    queries = [QUERY, "What is a generator?", "global statement"]
    results, done_while_locked, ticks, threads_added = await pending_while_model_busy(
        reranker._engine._backbone.lock, lambda: [reranker.acompress_documents(documents, q) for q in queries]
    )
    assert done_while_locked == 0 and ticks == 20 and threads_added <= 1
    assert [list(r) for r in results] == [list(reranker.compress_documents(documents, q)) for q in queries]


@pytest.fixture(scope="module")
def pipeline(models, paragraphs):
    """InMemoryVectorStore over BGEEmbeddings, its top 10 reranked by BGEReranker (top 3)."""
    texts = paragraphs[:40]
    embeddings = BGEEmbeddings(model_name=str(models.dense), precision="fp32", max_length=MAX_LENGTH)
    store = InMemoryVectorStore.from_texts(texts, embeddings, metadatas=[{"n": i} for i in range(len(texts))])
    reranker = BGEReranker(model_name=str(models.reranker), precision="fp32", max_length=MAX_LENGTH, top_n=3)
    base = store.as_retriever(search_kwargs={"k": 10})

    # The expected result, computed with bge_core alone: dense top 10, reranked, best 3.
    emb = Embedder(models.dense, precision="fp32", max_length=MAX_LENGTH)
    dense = emb.encode_documents(texts) @ emb.encode_queries(QUERY)
    candidates = np.argsort(-dense, kind="stable")[:10].tolist()
    rr = Reranker(models.reranker, precision="fp32", max_length=MAX_LENGTH, normalize=True)
    ranked = rr.rerank(QUERY, [texts[i] for i in candidates], top_k=3)
    expected = [(candidates[r.index], r.score) for r in ranked]
    return base, reranker, expected


def _check(docs, expected):
    assert [d.metadata["n"] for d in docs] == [n for n, _ in expected]
    scores = [d.metadata["relevance_score"] for d in docs]
    assert scores == pytest.approx([s for _, s in expected], abs=1e-6)
    assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_end_to_end_lcel_chain(pipeline):
    base, reranker, expected = pipeline
    retriever = BGERerankRetriever(base_retriever=base, reranker=reranker)
    chain = RunnableParallel(question=RunnablePassthrough(), context=retriever) | RunnableLambda(
        lambda x: {"question": x["question"], "context": x["context"]}
    )
    out = chain.invoke(QUERY)
    assert out["question"] == QUERY
    _check(out["context"], expected)
    _check(asyncio.run(chain.ainvoke(QUERY))["context"], expected)
    # Pipe-style composition gives the same documents.
    _check((base | RunnableLambda(lambda docs: reranker.compress_documents(docs, QUERY))).invoke(QUERY), expected)


def test_contextual_compression_retriever(pipeline):
    """langchain-classic's ContextualCompressionRetriever takes BGEReranker as its compressor."""
    classic = pytest.importorskip("langchain_classic.retrievers")
    base, reranker, expected = pipeline
    retriever = classic.ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base)
    _check(retriever.invoke(QUERY), expected)
    _check(asyncio.run(retriever.ainvoke(QUERY)), expected)


def test_cross_encoder_reranker_takes_it_as_model(pipeline):
    """langchain-classic's CrossEncoderReranker accepts BGEReranker as a BaseCrossEncoder."""
    compressors = pytest.importorskip("langchain_classic.retrievers.document_compressors")
    base, reranker, expected = pipeline
    docs = compressors.CrossEncoderReranker(model=reranker, top_n=3).compress_documents(base.invoke(QUERY), QUERY)
    assert [d.metadata["n"] for d in docs] == [n for n, _ in expected]


def test_defaults_run_the_engines_default_precision_within_a_bound(models, reranker, documents):
    """precision="auto" (bf16 on CPUs with native bf16): sigmoid scores within 0.01 of fp32."""
    from bge_core.devices import resolve_device, resolve_precision

    default = BGEReranker(model_name=str(models.reranker), max_length=MAX_LENGTH, top_n=None)
    assert default._engine.dtype == resolve_precision("auto", resolve_device(None))
    pairs = [(QUERY, d.page_content) for d in documents]
    np.testing.assert_allclose(default.score(pairs), reranker.score(pairs), atol=0.01)


@pytest.mark.parity
def test_llm_rerankers_by_model_name_with_their_options(tmp_path_factory, paragraphs):
    """An LLM reranker folder (FlagLLMReranker's kind) runs through BGEReranker like a cross-encoder."""
    from _llm_support import build_causal_reranker

    folder = str(build_causal_reranker(tmp_path_factory.mktemp("llm") / "gemma", "gemma"))
    pairs = [(QUERY, p) for p in paragraphs[:6]]
    prompt = "Does the passage answer the query? Answer Yes or No."
    for options in ({}, {"prompt": prompt, "query_max_length": 16}):
        adapter = BGEReranker(model_name=folder, precision="fp32", normalize=False, top_n=2, **options)
        engine = Reranker(folder, precision="fp32", **options)
        assert adapter.score(pairs) == engine.score(pairs)
        best = adapter.compress_documents([Document(page_content=p) for _, p in pairs], QUERY)
        assert [d.metadata["relevance_score"] for d in best] == sorted(engine.score(pairs), reverse=True)[:2]
    assert BGEReranker(model_name=folder, precision="fp32", prompt=prompt).score(pairs) != BGEReranker(
        model_name=folder, precision="fp32"
    ).score(pairs)

"""Token-aware chunking: offsets into the original text, overlap, parity with encode."""

from __future__ import annotations

import numpy as np
import pytest

from bge_core import ConfigError, Embedder


@pytest.fixture(scope="module")
def m3(models):
    return Embedder(models.m3, precision="fp32", max_length=64)


@pytest.fixture(scope="module")
def long_docs(paragraphs):
    return [" ".join(paragraphs[30:45]), paragraphs[2], "", " ".join(paragraphs[50:54])]


@pytest.mark.slow
def test_chunks_cover_the_text_with_exact_offsets(m3, long_docs):
    out = m3.encode_chunked(long_docs, max_tokens=48, overlap=8)
    assert out.n_documents == 4 and out.offsets[-1] == len(out.chunks)
    assert out.encoded.dense.shape == (len(out.chunks), m3.dimension)
    for i, doc in enumerate(long_docs):
        chunks, _ = out.document(i)
        assert chunks and all(c.document == i for c in chunks)
        assert all(c.text == doc[c.start : c.end] and c.n_tokens <= 48 for c in chunks)
        if doc:
            assert chunks[0].start == 0 and chunks[-1].end == len(doc.rstrip())
            assert all(b.start < a.end for a, b in zip(chunks, chunks[1:]))  # windows overlap
    assert len(out.document(0)[0]) > 5


def test_short_document_is_one_chunk_equal_to_encode(m3, paragraphs):
    text = paragraphs[2]
    out = m3.encode_chunked([text], dense=True, sparse=True, colbert=True)
    assert len(out.chunks) == 1
    ref = m3.encode([text], dense=True, sparse=True, colbert=True)
    np.testing.assert_allclose(out.encoded.dense, ref.dense, atol=1e-6)
    assert out.encoded.sparse[0] == ref.sparse[0]
    np.testing.assert_allclose(out.encoded.colbert[0], ref.colbert[0], atol=1e-6)


@pytest.mark.slow
def test_each_chunk_matches_encoding_its_text(m3, long_docs):
    out = m3.encode_chunked(long_docs[:1], max_tokens=40, overlap=0)
    texts = [c.text for c in out.chunks]
    direct = m3.encode_documents(texts)
    # windows end and start between words, so a chunk's text tokenizes to the same window
    np.testing.assert_allclose(out.encoded.dense, direct, atol=1e-5, rtol=0)
    doc = long_docs[0]
    for c in out.chunks:  # no window starts or ends inside a word
        assert c.start == 0 or not (doc[c.start - 1].isalnum() and doc[c.start].isalnum())
        assert c.end == len(doc) or not (doc[c.end - 1].isalnum() and doc[c.end].isalnum())


def test_aggregation(m3, long_docs):
    out = m3.encode_chunked(long_docs, max_tokens=48, overlap=8, dense=True, sparse=True, colbert=True)
    mean = out.aggregate("mean")
    assert mean.dense.shape == (4, m3.dimension)
    np.testing.assert_allclose(np.linalg.norm(mean.dense, axis=1), 1.0, atol=1e-5)
    chunks0 = out.encoded.dense[out.offsets[0] : out.offsets[1]]
    expected = chunks0.mean(axis=0)
    np.testing.assert_allclose(mean.dense[0], expected / np.linalg.norm(expected), atol=1e-6)
    mx = out.aggregate("max")
    np.testing.assert_allclose(mx.dense[0], chunks0.max(axis=0) / np.linalg.norm(chunks0.max(axis=0)), atol=1e-6)
    merged = mean.sparse[0].to_dict()
    for vec in out.encoded.sparse[out.offsets[0] : out.offsets[1]]:
        for token, weight in vec.to_dict().items():
            assert merged[token] >= weight
    assert mean.colbert[0].shape[0] == sum(c.shape[0] for c in out.encoded.colbert[out.offsets[0] : out.offsets[1]])
    with pytest.raises(ConfigError, match="mean, max"):
        out.aggregate("sum")  # type: ignore[arg-type]


def test_chunking_errors(m3):
    with pytest.raises(ConfigError, match="exceeds max_length"):
        m3.encode_chunked(["x"], max_tokens=65)
    with pytest.raises(ConfigError, match="overlap"):
        m3.encode_chunked(["x"], max_tokens=20, overlap=18)
    with pytest.raises(ConfigError, match="special tokens"):
        m3.encode_chunked(["x"], max_tokens=2)
    empty = m3.encode_chunked([])
    assert empty.n_documents == 0 and empty.encoded.dense.shape == (0, m3.dimension)


def test_xlmr_chunking_offsets(models, paragraphs):
    emb = Embedder(models.xlmr_m3, precision="fp32", max_length=32)
    doc = " ".join(paragraphs[5:9]) + " 北京欢迎你。"
    out = emb.encode_chunked([doc], overlap=4)
    assert len(out.chunks) > 3
    assert all(c.text == doc[c.start : c.end] for c in out.chunks)
    assert out.chunks[-1].text.endswith("北京欢迎你。")

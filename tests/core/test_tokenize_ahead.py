"""Large calls on an accelerator tokenize their next chunk on a helper thread while the model runs
(forced on the CPU here with BGE_RAG_TOKENIZE_AHEAD=1, read when an engine is built): same outputs,
same token counts, one warning."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from bge_core import Embedder, batching, env


@pytest.fixture
def ahead(monkeypatch):
    monkeypatch.setattr(batching, "TOKENIZE_AHEAD_TEXTS", 7)
    monkeypatch.setenv(env.TOKENIZE_AHEAD_ENV, "1")


def _m3(models):
    """An M3 engine built now: it reads BGE_RAG_TOKENIZE_AHEAD as currently set."""
    return Embedder(models.m3, precision="fp32", max_length=48, query_instruction="Represent: ")


def test_tokenizing_ahead_gives_the_outputs_of_one_call(models, mixed_texts, monkeypatch):
    texts = mixed_texts[:30]
    monkeypatch.setenv(env.TOKENIZE_AHEAD_ENV, "0")
    whole = _m3(models).encode(texts, kind="query", sparse=True, colbert=True)
    monkeypatch.setattr(batching, "TOKENIZE_AHEAD_TEXTS", 7)
    monkeypatch.setenv(env.TOKENIZE_AHEAD_ENV, "1")
    m3 = _m3(models)
    threads = []
    tokenizer = m3.tokenizer
    original = type(tokenizer).__call__

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", spy)
    chunked = m3.encode(texts, kind="query", sparse=True, colbert=True)
    assert any(name.startswith("bge-rag-tokenize") for name in threads)  # 5 chunks on the helper thread
    assert chunked.token_counts == whole.token_counts
    np.testing.assert_allclose(chunked.dense, whole.dense, atol=1e-5)
    assert chunked.dense.dtype == np.float32 and chunked.dense.shape == whole.dense.shape
    for a, b in zip(chunked.sparse, whole.sparse):
        assert a.indices.tolist() == b.indices.tolist()
        np.testing.assert_allclose(a.values, b.values, atol=1e-5)
    for a, b in zip(chunked.colbert, whole.colbert):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_tokenizing_ahead_is_off_on_cpu_by_default_and_for_small_calls(models, monkeypatch):
    monkeypatch.delenv(env.TOKENIZE_AHEAD_ENV, raising=False)
    assert not _m3(models)._tokenizes_ahead(["x"] * 10_000, "document")  # CPU: the model and tokenizer share cores
    monkeypatch.setenv(env.TOKENIZE_AHEAD_ENV, "1")
    m3 = _m3(models)
    assert m3._tokenizes_ahead(["x"] * (batching.TOKENIZE_AHEAD_TEXTS + 1), "document")
    assert not m3._tokenizes_ahead(["x"] * batching.TOKENIZE_AHEAD_TEXTS, "document")  # one chunk: as before


def test_tokenizing_ahead_reports_truncation_once_for_the_whole_call(models, paragraphs, ahead, caplog):
    embedder = Embedder(models.dense, precision="fp32", max_length=16)
    texts = [p for p in paragraphs if len(p.split()) > 30][:20]
    with caplog.at_level(logging.WARNING, logger="bge_core"):
        out = embedder.encode_documents(texts)
    assert out.shape == (20, embedder.dimension)
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "20 of 20 texts" in warnings[0]

"""One Embedder / Reranker used from many threads gives the serial results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bge_core import Embedder, Reranker


@pytest.mark.slow
def test_eight_threads_on_one_embedder(models, paragraphs):
    emb = Embedder(models.dense, precision="fp32", max_length=128)
    chunks = [paragraphs[i * 12 : (i + 1) * 12] for i in range(16)]
    serial = [emb.encode_documents(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(emb.encode_documents, chunks))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_threads_on_two_embedders_sharing_one_model(models, paragraphs):
    """Identical configurations share one loaded model and its lock."""
    a = Embedder(models.dense, precision="fp32", pooling="cls", max_length=64)
    b = Embedder(models.dense, precision="fp32", pooling="mean", max_length=64)
    assert a._backbone is b._backbone
    chunks = [paragraphs[i * 10 : (i + 1) * 10] for i in range(12)]
    expected = [(a.encode_queries(c), b.encode_documents(c)) for c in chunks]

    def work(i):
        return a.encode_queries(chunks[i]), b.encode_documents(chunks[i])

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(work, range(len(chunks))))
    for (ea, eb), (ga, gb) in zip(expected, got):
        np.testing.assert_array_equal(ea, ga)
        np.testing.assert_array_equal(eb, gb)


@pytest.mark.slow
def test_eight_threads_on_one_reranker(models, paragraphs):
    rr = Reranker(models.reranker, precision="fp32", max_length=128)
    jobs = [[(paragraphs[i], paragraphs[i + j]) for j in range(1, 6)] for i in range(16)]
    serial = [rr.score(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(rr.score, jobs))
    assert parallel == serial


def test_shared_engines_are_one_object_per_configuration(models):
    from bge_core import shared_embedder, shared_reranker

    a = shared_embedder(models.dense, precision="fp32", max_length=64)
    b = shared_embedder(str(models.dense), max_length=64, precision="fp32")
    c = shared_embedder(models.dense, precision="fp32", max_length=65)
    assert a is b and a is not c and a._backbone is c._backbone
    r1, r2 = shared_reranker(models.reranker, precision="fp32"), shared_reranker(models.reranker, precision="fp32")
    assert r1 is r2


def test_shared_engines_follow_the_name_not_the_files(tmp_path, models):
    """Two names for the same files can mean two registry entries: they must not share an engine."""
    from bge_core import shared_embedder
    from bge_core.registry import ZH_INSTRUCTION

    alias = tmp_path / "bge-small-zh-v1.5"
    alias.symlink_to(models.dense, target_is_directory=True)
    plain = shared_embedder(models.dense, precision="fp32")
    chinese = shared_embedder(alias, precision="fp32")
    assert plain is not chinese
    assert plain.query_instruction is None and chinese.query_instruction == ZH_INSTRUCTION
    assert plain._backbone is chinese._backbone  # the weights are still loaded once


def test_shared_engines_complete_options_with_defaults(models):
    from bge_core import shared_embedder

    assert shared_embedder(models.dense, precision="fp32") is shared_embedder(
        models.dense, precision="fp32", normalize=True, pooling=None
    )

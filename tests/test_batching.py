"""Token-budget batching: every input once, budgets respected, order restored, OOM back-off."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bge_core import BGEOutOfMemoryError, Embedder
from bge_core.batching import is_out_of_memory, plan_batches, run_batches


@pytest.mark.parametrize(("max_size", "max_tokens"), [(4, 10_000), (256, 64), (3, 7), (1000, 1)])
def test_plan_covers_every_input_once_within_budget(max_size, max_tokens):
    rng = random.Random(0)
    lengths = [rng.randint(1, 40) for _ in range(237)]
    batches = plan_batches(lengths, max_size, max_tokens)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert len(batch) <= max_size
        assert len(batch) == 1 or len(batch) * max(widths) <= max_tokens
        assert widths == sorted(widths, reverse=True)
    # longest first overall
    assert lengths[batches[0][0]] == max(lengths)


def test_plan_empty():
    assert plan_batches([], 8, 100) == []


def _toy_inputs(n=50, seed=1):
    rng = random.Random(seed)
    return [[rng.randint(5, 99) for _ in range(rng.randint(1, 30))] for _ in range(n)]


def _sum_forward(batch):
    return (batch.input_ids * batch.attention_mask).sum(dim=1).numpy()


def test_run_batches_restores_positions():
    inputs = _toy_inputs()
    got = np.zeros(len(inputs), dtype=np.int64)
    for positions, out in run_batches(
        inputs, _sum_forward, pad_id=0, device=torch.device("cpu"), max_batch_size=7, max_batch_tokens=60
    ):
        got[positions] = out
    assert got.tolist() == [sum(row) for row in inputs]


def test_out_of_memory_splits_batches_and_finishes():
    inputs = _toy_inputs()
    seen_sizes = []

    def flaky(batch):
        seen_sizes.append(batch.input_ids.shape[0])
        if batch.input_ids.shape[0] > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return _sum_forward(batch)

    got = np.zeros(len(inputs), dtype=np.int64)
    for positions, out in run_batches(
        inputs, flaky, pad_id=0, device=torch.device("cpu"), max_batch_size=16, max_batch_tokens=10_000
    ):
        got[positions] = out
    assert got.tolist() == [sum(row) for row in inputs]
    assert max(seen_sizes) == 16 and min(seen_sizes) <= 3


def test_other_runtime_errors_are_not_swallowed():
    def broken(batch):
        raise RuntimeError("shape mismatch in matmul")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(run_batches([[1, 2]], broken, pad_id=0, device=torch.device("cpu"), max_batch_size=4,
                         max_batch_tokens=100))


def test_single_text_out_of_memory_raises_clear_error():
    def always_oom(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(BGEOutOfMemoryError, match="single text of 2 tokens"):
        list(run_batches([[1, 2], [3]], always_oom, pad_id=0, device=torch.device("cpu"), max_batch_size=4,
                         max_batch_tokens=100))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("CUDA out of memory. Tried to allocate"), True),
        (RuntimeError("MPS backend out of memory"), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True),
        (RuntimeError("Expected all tensors to be on the same device"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_is_out_of_memory(error, expected):
    assert is_out_of_memory(error) is expected


def test_shuffled_mixed_lengths_keep_input_order(models, mixed_texts, paragraphs):
    """Many small token-budget batches give the same vectors, in order, as one text at a time."""
    texts = [*mixed_texts, *paragraphs[500:560]]
    random.Random(7).shuffle(texts)
    emb = Embedder(models.dense, precision="fp32", max_batch_tokens=700, batch_size=5)
    together = emb.encode_documents(texts)
    one_by_one = np.stack([emb.encode_documents(t) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5, rtol=0)
    # and a reordering of the input reorders the output the same way
    perm = np.random.default_rng(3).permutation(len(texts))
    np.testing.assert_allclose(emb.encode_documents([texts[i] for i in perm]), together[perm], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("ffn", "expected"), [(1536, 1024), (3072, 512), (4096, 512), (128, 8192), (None, 512)])
def test_cpu_token_budget_follows_model_shape(ffn, expected):
    from types import SimpleNamespace

    from bge_core.batching import resolve_max_batch_tokens

    config = SimpleNamespace(hidden_size=768, intermediate_size=ffn)
    assert resolve_max_batch_tokens(None, torch.device("cpu"), config) == expected
    assert resolve_max_batch_tokens(300, torch.device("cpu"), config) == 300
    assert resolve_max_batch_tokens(None, torch.device("cuda", 0), config) == 65536

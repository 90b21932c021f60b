"""Token-budget batching: every input once, budgets respected, order restored, OOM back-off."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import torch

from bge_core import BGEOutOfMemoryError, Embedder, batching
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
    planned = plan_batches([len(r) for r in inputs], 16, 10_000, batch_overhead=batching.CPU_BATCH_OVERHEAD)
    assert max(seen_sizes) == max(b.size for b in planned) > 3 and min(seen_sizes) <= 3


def _plan_cost(lengths, batches, overhead):
    return sum(overhead + len(b) * max(lengths[i] for i in b.tolist()) for b in batches)


def test_cpu_plan_is_the_cheapest_partition():
    """With a per-batch overhead (and no row minimum), the plan minimizes overhead + padded tokens
    over every way of cutting the sorted texts into batches within the limits (checked by brute force)."""
    import itertools

    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.integers(1, 11))
        lengths = rng.integers(1, 60, n).tolist()
        max_size, max_tokens, overhead = int(rng.integers(1, 8)), int(rng.integers(60, 300)), int(rng.integers(0, 200))
        plan = plan_batches(lengths, max_size, max_tokens, batch_overhead=overhead, min_rows=1)
        assert sorted(x for b in plan for x in b.tolist()) == list(range(n))
        ordered = sorted(lengths, reverse=True)
        assert [lengths[i] for b in plan for i in b.tolist()] == ordered  # longest first, contiguous
        for b in plan:  # the limits (a text over the budget alone in its batch)
            rows = [lengths[i] for i in b.tolist()]
            assert len(rows) <= max_size and (len(rows) * max(rows) <= max_tokens or len(rows) == 1)
        best = None
        for cuts in itertools.product([False, True], repeat=n - 1):
            sizes, run = [], 1
            for cut in cuts:
                if cut:
                    sizes.append(run)
                    run = 1
                else:
                    run += 1
            sizes.append(run)
            bounds = np.cumsum([0] + sizes)
            parts = [ordered[bounds[j] : bounds[j + 1]] for j in range(len(sizes))]
            if all(len(p) <= max_size and (len(p) * p[0] <= max_tokens or len(p) == 1) for p in parts):
                cost = sum(overhead + len(p) * p[0] for p in parts)
                best = cost if best is None else min(best, cost)
        assert _plan_cost(lengths, plan, overhead) == best, (trial, lengths)


def test_cpu_batches_split_mixed_short_texts_only_where_it_pays():
    lengths = [34, 25, 25, 24, 23, 22, 19, 18, 18, 16, 15, 14, 13, 11, 10, 9, 8, 8, 7, 7] * 2
    plain = plan_batches(lengths, 64, 10_000)
    assert len(plain) == 1  # one batch, every row padded to 34 tokens
    split = plan_batches(lengths, 64, 10_000, batch_overhead=batching.CPU_BATCH_OVERHEAD)
    assert 1 < len(split) <= 4  # padding 40 rows to 34 costs more than more batches
    assert _plan_cost(lengths, split, batching.CPU_BATCH_OVERHEAD) < _plan_cost(
        lengths, plain, batching.CPU_BATCH_OVERHEAD
    )
    # A few short queries of similar lengths stay in one batch: another batch would cost more.
    assert len(plan_batches([12, 11, 10, 9, 9, 8, 7, 6], 64, 10_000, batch_overhead=batching.CPU_BATCH_OVERHEAD)) == 1
    # No overhead: every batch as long as its own texts (equal lengths together).
    assert [b.size for b in plan_batches([5, 5, 3, 3, 3], 64, 10_000, batch_overhead=0, min_rows=1)] == [2, 3]
    # the token budget and the row limit still come first
    assert [b.size for b in plan_batches([10] * 12, 5, 10_000, batch_overhead=128)] == [5, 5, 2]


def test_cpu_batches_keep_a_few_texts_together():
    """A batch has at least 4 rows where the limits allow, and leaves no smaller batch behind: one
    long text and two short ones stay one batch (a lone row is a different GEMM kernel, so the long
    text's vector would depend on what else was sent)."""
    overhead = batching.CPU_BATCH_OVERHEAD
    assert [b.size for b in plan_batches([64, 3, 3], 256, 1024, batch_overhead=overhead)] == [3]
    assert [b.size for b in plan_batches([64, 3, 3], 256, 1024, batch_overhead=overhead, min_rows=1)] == [1, 2]
    rng = np.random.default_rng(5)
    for _ in range(50):
        lengths = rng.integers(1, 128, int(rng.integers(4, 60))).tolist()  # >= 8 rows fit the budget
        plan = plan_batches(lengths, 256, 1024, batch_overhead=overhead)
        assert sorted(x for b in plan for x in b.tolist()) == list(range(len(lengths)))
        assert min(b.size for b in plan) >= 4, (lengths, [p.tolist() for p in plan])


def test_other_runtime_errors_are_not_swallowed():
    def broken(batch):
        raise RuntimeError("shape mismatch in matmul")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(
            run_batches([[1, 2]], broken, pad_id=0, device=torch.device("cpu"), max_batch_size=4, max_batch_tokens=100)
        )


def test_single_text_out_of_memory_raises_clear_error():
    def always_oom(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(BGEOutOfMemoryError, match="single text of 2 tokens"):
        list(
            run_batches(
                [[1, 2], [3]], always_oom, pad_id=0, device=torch.device("cpu"), max_batch_size=4, max_batch_tokens=100
            )
        )


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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- CPU streams and prefetching
from bge_core import ConfigError, env  # noqa: E402
from bge_core.batching import cpu_execution, cpu_plan, executors  # noqa: E402


@pytest.mark.parametrize(
    ("batches", "threads", "streams", "expected"),
    [
        (10, 4, None, (4, 1)),  # one single-threaded stream per CPU
        (1, 4, None, (1, 4)),  # one batch: all threads on it
        (3, 4, None, (3, 1)),  # never more streams than batches
        (10, 4, 2, (2, 2)),  # threads shared out among the streams
        (10, 1, None, (1, 1)),
    ],
)
def test_cpu_plan(batches, threads, streams, expected):
    plan = cpu_plan(batches, threads=threads, streams=streams)
    assert (plan.streams, plan.threads) == expected


def test_cpu_plan_default_threads_follow_the_available_cpus(monkeypatch):
    monkeypatch.delenv(env.STREAMS_ENV, raising=False)
    monkeypatch.delenv(env.THREADS_ENV, raising=False)
    cpu = batching.executor_for(torch.device("cpu"))  # as an engine builds it: no variables set
    monkeypatch.setattr(executors, "available_cpus", lambda: 1)  # e.g. a container quota of one CPU
    assert cpu.plan(10) == cpu_plan(10) == batching.CpuPlan(streams=1, threads=1)
    monkeypatch.setattr(executors, "available_cpus", lambda: 64)  # never above the caller's torch threads
    assert cpu.plan(1).threads == cpu_plan(1).threads == torch.get_num_threads()


def test_cpu_plan_environment_and_scoped_override(monkeypatch):
    monkeypatch.setenv(env.STREAMS_ENV, "1")
    monkeypatch.setenv(env.THREADS_ENV, "4")
    cpu = batching.executor_for(torch.device("cpu"))  # the environment is read here, once
    assert cpu.plan(10) == batching.CpuPlan(streams=1, threads=4)
    with cpu_execution(streams=2):
        assert cpu.plan(10) == batching.CpuPlan(streams=2, threads=2)
    assert cpu.plan(10).streams == 1  # the override ends with its block
    monkeypatch.setenv(env.STREAMS_ENV, "many")
    assert cpu.plan(10).streams == 1  # a built executor never reads the environment again
    with pytest.raises(ConfigError, match="BGE_RAG_CPU_STREAMS"):
        batching.executor_for(torch.device("cpu"))
    with pytest.raises(ConfigError, match="streams"), cpu_execution(streams=0):
        pass


def _record_forward(seen):
    def forward(batch):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return _sum_forward(batch)

    return forward


def _collect(**options):
    inputs = _toy_inputs(n=120, seed=5)
    seen = []
    pairs = list(
        run_batches(
            inputs,
            _record_forward(seen),
            pad_id=0,
            device=torch.device("cpu"),
            max_batch_size=6,
            max_batch_tokens=80,
            **options,
        )
    )
    return inputs, pairs, seen


def test_streams_give_the_sequential_results_in_plan_order():
    assert batching.thread_control() is not None, "per-thread thread control must work on this torch build"
    inputs, sequential, seen_seq = _collect(streams=1, threads=torch.get_num_threads())
    _, streamed, seen = _collect(streams=2, threads=2)
    assert [p.tolist() for p, _ in streamed] == [p.tolist() for p, _ in sequential]
    for (_, a), (_, b) in zip(streamed, sequential):
        assert a.tolist() == b.tolist()
    # the streamed batches ran on bge-rag's workers with one intra-op thread each ...
    assert {name.startswith("bge-rag-cpu") for name, _ in seen} == {True}
    assert {n for _, n in seen} == {1}
    assert {name for name, _ in seen_seq} == {threading.current_thread().name}
    # ... and the caller's thread and threads started later keep torch's setting
    before = torch.get_num_threads()
    later = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert torch.get_num_threads() == before and later == [before]


def test_split_for_streams():
    one = [np.arange(9)]
    halves = batching.split_for_streams(one, 2)
    assert [b.tolist() for b in halves] == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    quarters = batching.split_for_streams([np.arange(16)], 4)
    assert [b.size for b in quarters] == [4, 4, 4, 4]
    assert sorted(x for b in quarters for x in b.tolist()) == list(range(16))
    assert [b.size for b in batching.split_for_streams([np.arange(9)], 4)] == [5, 4]  # halves keep 4 rows
    assert [b.size for b in batching.split_for_streams([np.arange(7)], 2)] == [7]  # too few to split
    assert batching.split_for_streams([], 2) == []
    many = [np.arange(i, i + 2) for i in range(0, 10, 2)]
    assert batching.split_for_streams(many, 2) == many  # enough batches already: unchanged


def test_a_one_batch_job_is_split_across_the_streams():
    """A server's coalesced queries fit one batch; with two streams each runs half on its own worker."""
    inputs = [[i + 5] * 10 for i in range(8)]  # equal lengths: one batch by every rule

    def run(**options):
        seen = []
        got = {}
        for positions, out in run_batches(
            inputs,
            _record_forward(seen),
            pad_id=0,
            device=torch.device("cpu"),
            max_batch_size=8,
            max_batch_tokens=10_000,
            **options,
        ):
            got.update(zip(positions.tolist(), out.tolist()))
        return got, seen

    whole, seen_one = run(streams=1, threads=torch.get_num_threads())
    split, seen_two = run(streams=2, threads=2)
    assert len(seen_one) == 1 and len(seen_two) == 2  # one batch, or its two halves
    assert {name.startswith("bge-rag-cpu") for name, _ in seen_two} == {True}
    assert split == whole and sorted(whole) == list(range(8))


def test_prefetch_gives_the_sequential_results_in_plan_order():
    _, sequential, _ = _collect(streams=1, threads=torch.get_num_threads())
    _, prefetched, _ = _collect(prefetch=True)
    assert [(p.tolist(), o.tolist()) for p, o in prefetched] == [(p.tolist(), o.tolist()) for p, o in sequential]


@pytest.mark.parametrize("options", [{"streams": 2, "threads": 2}, {"prefetch": True}])
def test_out_of_memory_back_off_with_streams_and_prefetch(options):
    inputs = _toy_inputs()

    def flaky(batch):
        if batch.input_ids.shape[0] > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return _sum_forward(batch)

    got = np.zeros(len(inputs), dtype=np.int64)
    for positions, out in run_batches(
        inputs, flaky, pad_id=0, device=torch.device("cpu"), max_batch_size=16, max_batch_tokens=10_000, **options
    ):
        got[positions] = out
    assert got.tolist() == [sum(row) for row in inputs]


@pytest.mark.parametrize("options", [{"streams": 2, "threads": 2}, {"prefetch": True}])
def test_errors_propagate_and_stop_the_rest(options):
    calls = []

    def broken(batch):
        calls.append(1)
        raise RuntimeError("shape mismatch in matmul")

    inputs = _toy_inputs(n=200)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(
            run_batches(
                inputs, broken, pad_id=0, device=torch.device("cpu"), max_batch_size=2, max_batch_tokens=100, **options
            )
        )
    assert len(calls) < 10  # queued batches were cancelled, not all 100 run


def test_an_abandoned_stream_run_leaves_the_workers_usable():
    inputs = _toy_inputs(n=100)
    run = run_batches(
        inputs,
        _sum_forward,
        pad_id=0,
        device=torch.device("cpu"),
        max_batch_size=2,
        max_batch_tokens=100,
        streams=2,
        threads=2,
    )
    next(run)
    run.close()
    _, pairs, _ = _collect(streams=2, threads=2)
    assert sum(p.size for p, _ in pairs) == 120


@pytest.mark.slow
def test_embedder_streams_match_one_stream(models, paragraphs):
    """CPU streams give exactly the single-stream vectors, in input order, fp32 and the default."""
    texts = paragraphs[:90]
    for precision in ("fp32", "auto"):
        emb = Embedder(models.dense, precision=precision, max_batch_tokens=600)
        with cpu_execution(streams=1, threads=1):
            one = emb.encode_documents(texts)
        with cpu_execution(streams=2, threads=2):  # two single-threaded streams on any machine
            two = emb.encode_documents(texts)
        np.testing.assert_array_equal(one, two)


def test_thread_control_finds_torchs_openmp_when_other_runtimes_are_loaded():
    """sentencepiece (loaded by XLM-R tokenizers) maps its own libgomp; torch's must be the one set."""
    import sentencepiece  # noqa: F401

    control = batching.thread_control.__wrapped__()
    assert control is not None
    seen = []

    def probe():
        control(1)
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert seen == [1]

"""bge_core.aio: async calls run on one worker thread per engine, off the event loop."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from bge_core import Embedder
from bge_core.aio import run_serialized


@pytest.mark.slow
def test_run_serialized_uses_one_thread_per_engine_and_frees_the_loop(models, paragraphs):
    emb = Embedder(models.dense, precision="fp32", max_length=64)
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def encode(texts):
        seen.append(threading.get_ident())
        return emb.encode_documents(texts)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        tick = asyncio.create_task(ticker())
        results = await asyncio.gather(*(run_serialized(emb, encode, paragraphs[2 * i : 2 * i + 2]) for i in range(12)))
        tick.cancel()
        return results, ticks

    results, ticks = asyncio.run(main())
    assert len(set(seen)) == 1 and seen[0] != loop_thread
    assert ticks > 0  # the event loop kept running while the model worked
    for i, got in enumerate(results):
        np.testing.assert_array_equal(got, emb.encode_documents(paragraphs[2 * i : 2 * i + 2]))

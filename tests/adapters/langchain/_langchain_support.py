"""Helpers shared by the LangChain adapter tests (the folder's fixtures are in its conftest.py)."""

from __future__ import annotations

import asyncio
import threading

#: Short truncation keeps these tests quick; parity holds at any length.
MAX_LENGTH = 96


async def pending_while_model_busy(lock: threading.RLock, start_calls, ticks: int = 20):
    """Start async calls while the test holds the model's lock; report what happened meanwhile.

    Returns ``(results, done_while_locked, ticks_counted, threads_added)``: with the lock held by
    this (the event loop's) thread, a correct implementation leaves every call pending, keeps the
    loop turning, and starts at most one worker thread for the model.
    """
    before = threading.active_count()
    counted = 0
    lock.acquire()
    try:
        tasks = [asyncio.ensure_future(call) for call in start_calls()]
        for _ in range(ticks):
            await asyncio.sleep(0)
            counted += 1
        done_while_locked = sum(task.done() for task in tasks)
        threads_added = threading.active_count() - before
    finally:
        lock.release()
    results = await asyncio.gather(*tasks)
    return results, done_while_locked, counted, threads_added

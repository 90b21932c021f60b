"""Shared fixtures of the LangChain adapter tests (imported by the tests/test_langchain_*.py modules)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

#: Short truncation keeps these tests quick; parity holds at any length.
MAX_LENGTH = 96


@pytest.fixture(scope="session")
def registry_folders(models, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Fixture folders under registry names, so bge_core applies the registry's settings.

    ``bge-small-en-v1.5`` and ``bge-small-zh-v1.5`` hold the dense fixture's files, ``bge-m3``
    the M3 fixture's (as symlinks, so nothing is copied). Each is a real folder: bge_core's
    ``shared_embedder`` keys on the resolved path, so two symlinked folder names would share
    one engine and one registry entry.
    """
    root = tmp_path_factory.mktemp("registry-named")
    links = {"en": ("bge-small-en-v1.5", models.dense), "zh": ("bge-small-zh-v1.5", models.dense),
             "m3": ("bge-m3", models.m3)}
    out = {}
    for key, (name, target) in links.items():
        folder = root / name
        folder.mkdir()
        for file in Path(target).iterdir():
            (folder / file.name).symlink_to(file)
        out[key] = str(folder)
    return SimpleNamespace(**out)


async def pending_while_model_busy(lock: "threading.RLock", start_calls, ticks: int = 20):
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

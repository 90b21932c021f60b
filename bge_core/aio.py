"""Async calls into an engine that neither block the event loop nor pile up threads.

Each engine (an :class:`~bge_core.Embedder` or :class:`~bge_core.Reranker`, shared by identical
configurations) gets one worker thread, created on its first async call. Concurrent coroutines
queue on that thread in arrival order, so a hundred concurrent ``aembed_query`` calls hold one
thread rather than a hundred threads waiting on the model's lock, and the event loop stays free.
The worker thread ends when its engine is freed. Every framework adapter uses this one mechanism.

Example:
    >>> import asyncio
    >>> from bge_core import Embedder
    >>> embedder = Embedder("BAAI/bge-small-en-v1.5")
    >>> vectors = asyncio.run(run_serialized(embedder, embedder.encode_documents, ["a text", "another"]))
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_EXECUTORS: weakref.WeakKeyDictionary[Any, ThreadPoolExecutor] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _executor_for(engine: Any) -> ThreadPoolExecutor:
    with _LOCK:
        executor = _EXECUTORS.get(engine)
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bge-core")
            _EXECUTORS[engine] = executor
            weakref.finalize(engine, executor.shutdown, wait=False)
        return executor


async def run_serialized(engine: Any, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` on ``engine``'s worker thread and await its result.

    Context variables (framework callbacks, tracing) are carried into the worker thread.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(_executor_for(engine), call)


__all__ = ["run_serialized"]

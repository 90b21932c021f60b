"""The loaded engine behind a LlamaIndex component, kept out of serialization.

LlamaIndex components are pydantic models that get serialized (``to_dict``), copied and
pickled (``IngestionPipeline(num_workers>1)`` sends them to spawned worker processes). The
engine is none of those things: an :class:`EngineSlot` holds it in a private attribute,
pickles and deep-copies as an empty slot, and loads the engine again on first use, through
``bge_core.shared_embedder`` / ``shared_reranker`` so that identical configurations in one
process share one model.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, TypeVar

from bge_core.aio import run_serialized

T = TypeVar("T")


class EngineSlot:
    """A lazily (re)loaded engine."""

    __slots__ = ("_current", "__weakref__")

    def __init__(self) -> None:
        self._current: Optional[tuple[tuple, Any]] = None  # (configuration key, engine)

    def __reduce__(self) -> tuple:
        # A copy in another process (or a deep copy) starts empty and loads on first use.
        return (EngineSlot, ())

    def get(self, load: Callable[..., T], model: str, options: dict[str, Any]) -> T:
        """The engine for ``model`` and ``options``, loaded with ``load`` when they changed."""
        key = (model, tuple(sorted((k, repr(v)) for k, v in options.items())))
        current = self._current  # one read: a concurrent reload cannot hand back another engine
        if current is None or current[0] != key:
            current = self._current = (key, load(model, **options))
        return current[1]  # type: ignore[no-any-return]

    @property
    def loaded(self) -> bool:
        """Whether an engine is loaded (``False`` in a fresh copy from a pickle)."""
        return self._current is not None

    async def run(self, owner: Any, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the worker thread of ``owner._engine`` (see
        :func:`bge_core.aio.run_serialized`).

        ``asyncio.gather`` over many batches (as LlamaIndex's async batch methods do) then
        queues on one thread per model instead of starting a thread per batch. A first load
        of the engine runs off the event loop too.
        """
        engine = owner._engine if self.loaded else await asyncio.to_thread(lambda: owner._engine)
        return await run_serialized(engine, fn, *args)


def engine_options(**options: Any) -> dict[str, Any]:
    """Only the options that were set, so identical configurations give identical keys."""
    return {k: v for k, v in options.items() if v is not None}


__all__ = ["EngineSlot", "engine_options"]

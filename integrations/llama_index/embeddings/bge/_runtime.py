"""The loaded engine behind a LlamaIndex component, kept out of serialization.

LlamaIndex components are pydantic models that get serialized (``to_dict``), copied and
pickled (``IngestionPipeline(num_workers>1)`` sends them to spawned worker processes). The
engine is none of those things: an :class:`EngineSlot` holds it in a private attribute,
pickles and deep-copies as an empty slot, and loads the engine again on first use, through
``bge_core.shared_embedder`` / ``shared_reranker`` so that identical configurations in one
process share one model.

Copies: pydantic's shallow copy (``copy.copy``, ``model_copy(update=...)``) would share the
private slot object between the original and the copy, so a copy with other settings would
swap the engine in and out of the one slot on every alternate call. :class:`EngineOwner` gives
each shallow copy a slot of its own, seeded with the original's engine: a copy with the same
settings uses that engine at once, a copy with other settings loads (or shares) its own, and
the original keeps its engine.

Nothing here imports torch: engines are loaded by the callables passed to :meth:`EngineSlot.get`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


class EngineSlot:
    """A lazily (re)loaded engine, always the one for the owner's current settings."""

    __slots__ = ("_current", "__weakref__")

    def __init__(self, current: Optional[tuple[tuple, Any]] = None) -> None:
        self._current = current  # (configuration key, engine)

    def __reduce__(self) -> tuple:
        # A copy in another process (or a deep copy) starts empty and loads on first use.
        return (EngineSlot, ())

    def fork(self) -> EngineSlot:
        """A new slot holding this slot's engine (for a shallow copy of the owner)."""
        return EngineSlot(self._current)

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
        """Run ``fn(*args)`` on the worker thread of ``owner.engine`` (see
        :func:`bge_core.aio.run_serialized`).

        ``asyncio.gather`` over many batches (as LlamaIndex's async batch methods do) then
        queues on one thread per model instead of starting a thread per batch. A first load
        of the engine runs off the event loop too.
        """
        from bge_core.aio import run_serialized

        engine = owner.engine if self.loaded else await asyncio.to_thread(lambda: owner.engine)
        return await run_serialized(engine, fn, *args)


class EngineOwner:
    """Mixin for the pydantic components that hold an :class:`EngineSlot` as ``_slot``.

    - ``copy.copy`` / ``model_copy``: the copy gets its own slot (see the module docstring);
    - ``pickle``: fields re-validated as LlamaIndex's ``BaseComponent`` does, engine loaded on
      first use in the new process.
    """

    _slot: EngineSlot

    def __copy__(self) -> Any:
        clone = super().__copy__()  # type: ignore[misc]
        clone._slot = self._slot.fork()
        return clone

    def __setstate__(self, state: dict[str, Any]) -> None:
        # As BaseComponent (re-validate the fields), but leave loading to the first call.
        from llama_index.core.bridge.pydantic import BaseModel

        BaseModel.__init__(self, **state["__dict__"])  # type: ignore[arg-type]


def engine_options(**options: Any) -> dict[str, Any]:
    """Only the options that were set, so identical configurations give identical keys."""
    return {k: v for k, v in options.items() if v is not None}


def shared_embedder(model: str, **options: Any) -> Any:
    """:func:`bge_core.shared_embedder`, imported (with torch) on first use."""
    from bge_core.shared import shared_embedder as load

    return load(model, **options)


def shared_reranker(model: str, **options: Any) -> Any:
    """:func:`bge_core.shared_reranker`, imported (with torch) on first use."""
    from bge_core.shared import shared_reranker as load

    return load(model, **options)


__all__ = ["EngineOwner", "EngineSlot", "engine_options", "shared_embedder", "shared_reranker"]

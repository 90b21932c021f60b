"""The loaded engine behind a LlamaIndex component, kept out of serialization.

LlamaIndex components are pydantic models that get serialized (``to_dict``), copied and
pickled (``IngestionPipeline(num_workers>1)`` sends them to spawned worker processes). The
engine is none of those things: a :class:`bge_core.slot.EngineSlot` holds it in a private
attribute, pickles as an empty slot, and loads the engine again on first use, through
``bge_core.shared_embedder`` / ``shared_reranker`` so that identical configurations in one
process share one model.

Copies: pydantic's shallow copy (``copy.copy``, ``model_copy(update=...)``) would share the
private slot object between the original and the copy, so a copy with other settings would
swap the engine in and out of the one slot on every alternate call. :class:`EngineOwner` gives
each shallow copy a slot of its own, seeded with the original's engine: a copy with the same
settings uses that engine at once, a copy with other settings loads (or shares) its own, and
the original keeps its engine.

Nothing here imports torch: engines are loaded by the functions below on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from bge_core.slot import EngineSlot

T = TypeVar("T")


class EngineOwner:
    """Mixin for the pydantic components that hold a :class:`bge_core.slot.EngineSlot` as ``_slot``.

    - ``copy.copy`` / ``model_copy``: the copy gets its own slot (see the module docstring);
    - ``pickle``: fields re-validated as LlamaIndex's ``BaseComponent`` does, engine loaded on
      first use in the new process.

    Subclasses define ``_engine()``, which returns the engine for the current fields.
    """

    _slot: EngineSlot

    def _engine(self) -> Any:
        """The shared bge_core engine for this component's fields."""
        raise NotImplementedError

    def __copy__(self) -> Any:
        clone = super().__copy__()  # type: ignore[misc]
        clone._slot = self._slot.fork()
        return clone

    def __setstate__(self, state: dict[str, Any]) -> None:
        # As BaseComponent (re-validate the fields), but leave loading to the first call.
        from llama_index.core.bridge.pydantic import BaseModel

        BaseModel.__init__(self, **state["__dict__"])  # type: ignore[arg-type]

    async def _serialized(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the worker thread of this component's engine.

        See :func:`bge_core.aio.run_serialized`. ``asyncio.gather`` over many batches (as
        LlamaIndex's async batch methods do) then queues on one thread per model instead of
        starting a thread per batch. A first load of the engine runs off the event loop too.
        """
        from bge_core.aio import run_serialized

        engine = self._engine() if self._slot.loaded else await asyncio.to_thread(self._engine)
        return await run_serialized(engine, fn, *args)


def engine_options(**options: Any) -> dict[str, Any]:
    """Only the options that were set, so identical configurations give identical keys."""
    return {k: v for k, v in options.items() if v is not None}


def shared_embedder(model: str, **options: Any) -> Any:
    """:func:`bge_core.shared_embedder`, imported (with torch) on first use."""
    from bge_core import shared_embedder as load

    return load(model, **options)


def shared_reranker(model: str, **options: Any) -> Any:
    """:func:`bge_core.shared_reranker`, imported (with torch) on first use."""
    from bge_core import shared_reranker as load

    return load(model, **options)


__all__ = ["EngineOwner", "engine_options", "shared_embedder", "shared_reranker"]

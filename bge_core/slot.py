"""The engine behind an adapter object: derived from the object's settings, never copied or pickled.

Framework adapters (LangChain, LlamaIndex, ...) are objects with settings that users copy,
deep-copy, pickle and ``model_copy``; the engine those settings select (a shared
:class:`~bge_core.Embedder` or :class:`~bge_core.Reranker`, or data computed with it such as a
retriever's encoded documents) is none of those things: it holds torch modules and locks. An
:class:`EngineSlot` keeps each such value together with the key (the settings) it was built
from, and builds it again when the key differs, so whatever a copy's settings are, it computes
with them.

Copy semantics, the same for every adapter:

- ``copy.copy``, ``copy.deepcopy`` and :meth:`EngineSlot.fork`: a slot of its own that starts with
  the original's entries (the values are shared, not copied: engines are shared by identical
  settings anyway). An original and a copy with other settings then never evict each other's
  engine.
- ``pickle``: an empty slot; the unpickled object builds its engine on first use.
- ``==``: every slot equals every other one (a cache, not state), so two adapter objects with
  equal settings compare equal whatever they have loaded.

Nothing here imports torch or a framework: values are built by the callables passed to
:meth:`EngineSlot.get`.

Example:
    >>> from bge_core import slot
    >>> engines = slot.EngineSlot()
    >>> options = {"precision": "fp32"}
    >>> key = slot.settings_key("BAAI/bge-small-en-v1.5", options)
    >>> engine = engines.get(key, lambda: "an engine built from the options")
    >>> engines.get(key, lambda: "not built again") is engine
    True
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

#: The entry an adapter object's engine is kept under.
ENGINE = "engine"


def settings_key(model: str, options: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A hashable, comparable key of a model and its engine options (order of the options ignored).

    Args:
        model: The model's Hub id or folder, as passed to the engine.
        options: The engine's keyword arguments; compared by ``repr``, so unhashable values
            (lists, dicts) are fine.

    Returns:
        ``(model, ((name, repr(value)), ...))`` with the names sorted.
    """
    return model, tuple(sorted((name, repr(value)) for name, value in options.items()))


class EngineSlot:
    """Values built from settings, each rebuilt when its settings change; empty when unpickled.

    An adapter object keeps one slot (a private attribute) and reads its engine with
    ``slot.load(factory, model, options)``; a value derived from the engine (for example encoded
    documents) goes under another ``name`` with :meth:`get`.
    """

    __slots__ = ("_entries", "__weakref__")

    def __init__(self, entries: Mapping[str, tuple[Hashable, Any]] | None = None) -> None:
        """An empty slot, or one starting with ``entries`` (``{name: (key, value)}``)."""
        self._entries: dict[str, tuple[Hashable, Any]] = dict(entries or {})

    def get(self, key: Hashable, build: Callable[[], T], *, name: str = ENGINE) -> T:
        """The value ``name`` built for ``key``; ``build()`` makes (and keeps) it when missing or stale.

        Args:
            key: What the value is built from (see :func:`settings_key`); compared with ``==``.
            build: Makes the value; called only when the slot has none for ``key``.
            name: Which value of the slot (one slot can hold several).

        Returns:
            The kept value, or the new one.
        """
        entry = self._entries.get(name)  # one read: a concurrent rebuild cannot hand back another value
        if entry is not None and entry[0] == key:
            return entry[1]
        value = build()
        self._entries[name] = (key, value)
        return value

    def load(self, factory: Callable[..., T], model: str, options: Mapping[str, Any], *, name: str = ENGINE) -> T:
        """The engine ``factory(model, **options)``, built again only when ``model`` or ``options`` change.

        Args:
            factory: Builds the engine, e.g. :func:`bge_core.shared_embedder` (looked up by the
                caller, so that merely importing an adapter does not import torch).
            model: The model's Hub id or folder.
            options: The engine's keyword arguments (see :func:`settings_key`).
            name: Which value of the slot.

        Returns:
            The kept engine, or the new one.
        """
        return self.get(settings_key(model, options), lambda: factory(model, **options), name=name)

    @property
    def loaded(self) -> bool:
        """Whether the slot holds any value (``False`` in a fresh slot and after unpickling)."""
        return bool(self._entries)

    def fork(self) -> EngineSlot:
        """A slot of its own with the same entries (the values themselves are shared)."""
        return EngineSlot(self._entries)

    def __copy__(self) -> EngineSlot:
        return self.fork()

    def __deepcopy__(self, memo: dict[int, Any]) -> EngineSlot:
        return self.fork()

    def __reduce__(self) -> tuple[type[EngineSlot], tuple[()]]:
        # Engines hold torch modules and locks: an unpickled object builds its engine on first use.
        return (EngineSlot, ())

    def __eq__(self, other: object) -> bool:
        # A cache, not state: objects with equal settings are equal whatever they have loaded.
        return isinstance(other, EngineSlot)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"EngineSlot({sorted(self._entries)})"


__all__ = ["ENGINE", "EngineSlot", "settings_key"]

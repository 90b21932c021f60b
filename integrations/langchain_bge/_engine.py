"""The engine behind each LangChain object: derived from its fields, never copied or pickled.

Every class of this package keeps its engine (a shared :class:`bge_core.Embedder` or
:class:`bge_core.Reranker`, plus the encoded documents of a :class:`BGEM3Retriever`) in an
:class:`EngineSlot`. The slot remembers the settings each entry was built from and builds it
again when they differ, so ``model_copy(update=...)``, ``copy.copy``, ``copy.deepcopy`` and
pickling all give objects whose engine follows their fields. A slot pickles as an empty slot:
the unpickled object loads its model on first use. Copies get a slot of their own that starts
with the original's entries (engines are shared by identical settings anyway), so an original and
a copy with other settings never evict each other's engine.

torch is imported only when an engine is built, not when this package is imported.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from pydantic import SecretStr

if TYPE_CHECKING:
    from bge_core import Embedder, Reranker

T = TypeVar("T")


class EngineSlot:
    """Entries built from settings, each rebuilt when its settings change."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Optional[dict[str, tuple[Any, Any]]] = None) -> None:
        self._entries: dict[str, tuple[Any, Any]] = dict(entries or {})

    def get(self, name: str, key: Any, build: Callable[[], T]) -> T:
        """The entry ``name`` built for ``key``; ``build()`` makes (and keeps) it when missing or stale."""
        entry = self._entries.get(name)
        if entry is not None and entry[0] == key:
            return entry[1]
        value = build()
        self._entries[name] = (key, value)
        return value

    def clone(self) -> EngineSlot:
        """A slot of its own with the same entries (the engines themselves are shared)."""
        return EngineSlot(self._entries)

    def __copy__(self) -> EngineSlot:
        return self.clone()

    def __deepcopy__(self, memo: dict[int, Any]) -> EngineSlot:
        return self.clone()

    def __reduce__(self) -> tuple[type, tuple]:
        # Engines hold torch modules and locks: a pickled object reloads its model on first use.
        return (EngineSlot, ())

    def __eq__(self, other: object) -> bool:
        # A cache, not state: two objects with equal fields are equal whatever they have loaded.
        return isinstance(other, EngineSlot)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"EngineSlot({sorted(self._entries)})"


#: Options left to the engine's default when the field is ``None``.
_ENGINE_DEFAULT_IF_NONE = ("batch_size", "compress_ratio")


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def engine_options(fields: dict[str, Any]) -> dict[str, Any]:
    """Engine keyword arguments from adapter fields.

    Secrets are revealed, ``None`` is left out where the engine takes no ``None`` and has a
    default of its own (``batch_size``, ``compress_ratio``), and ``cache_folder`` becomes the engine's ``cache_dir``.
    """
    options = {name: _plain(value) for name, value in fields.items()}
    for name in _ENGINE_DEFAULT_IF_NONE:
        if name in options and options[name] is None:
            del options[name]
    if "cache_folder" in options:
        options["cache_dir"] = options.pop("cache_folder")
    return options


def settings_key(options: dict[str, Any]) -> tuple:
    """A hashable, comparable key of engine options."""
    return tuple(sorted((name, repr(value)) for name, value in options.items()))


def load_embedder(model: str, options: dict[str, Any]) -> Embedder:
    from bge_core import shared_embedder

    return shared_embedder(model, **options)


def load_reranker(model: str, options: dict[str, Any]) -> Reranker:
    from bge_core import shared_reranker

    return shared_reranker(model, **options)


class EngineOwner:
    """Mixin for the pydantic models of this package: copies and ``model_copy`` that follow the fields.

    Subclasses declare ``_slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)`` and, where
    a field's value shown to users differs from the one they passed (a resolved default),
    override :meth:`_constructor_data`.
    """

    _slot: EngineSlot

    def __copy__(self) -> Any:
        new = super().__copy__()  # type: ignore[misc]
        new._slot = self._slot.clone()
        return new

    def _constructor_data(self) -> dict[str, Any]:
        """The keyword arguments that build an object equal to this one."""
        return {name: getattr(self, name) for name in type(self).model_fields}  # type: ignore[attr-defined]

    def model_copy(self, *, update: Optional[dict[str, Any]] = None, deep: bool = False) -> Any:
        """A copy; with ``update``, a new object built (and validated) from the merged settings.

        Unlike pydantic's default, an update is validated and the engine (model, instruction,
        score scale, encoded documents) is the one the new settings select.
        """
        if not update:
            return super().model_copy(deep=deep)  # type: ignore[misc]
        data = self._constructor_data()
        if deep:
            data = copy.deepcopy(data)
        fields = type(self).model_fields  # type: ignore[attr-defined]
        aliases = {info.alias: name for name, info in fields.items() if info.alias}
        for key, value in update.items():
            data[aliases.get(key, key)] = value
        return type(self)(**data)


__all__ = ["EngineOwner", "EngineSlot", "engine_options", "load_embedder", "load_reranker", "settings_key"]

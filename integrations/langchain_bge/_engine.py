"""The engine behind each LangChain object: derived from its fields, never copied or pickled.

Every class of this package keeps its engine (a shared :class:`bge_core.Embedder` or
:class:`bge_core.Reranker`, plus the encoded documents of a :class:`BGEM3Retriever`) in a
:class:`bge_core.slot.EngineSlot`, which rebuilds an entry when the settings it was built from
differ, so ``model_copy(update=...)``, ``copy.copy``, ``copy.deepcopy`` and pickling all give
objects whose engine follows their fields (the slot's module says how slots copy and pickle).
:class:`EngineOwner` adds what pydantic needs on top: a slot of its own for each shallow copy,
and a validated rebuild for ``model_copy(update=...)``.

torch is imported only when an engine is built, not when this package is imported.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

if TYPE_CHECKING:
    from bge_core import Embedder, Reranker
    from bge_core.slot import EngineSlot


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


def load_embedder(model: str, **options: Any) -> Embedder:
    """:func:`bge_core.shared_embedder`, imported (with torch) on first use."""
    from bge_core import shared_embedder

    return shared_embedder(model, **options)


def load_reranker(model: str, **options: Any) -> Reranker:
    """:func:`bge_core.shared_reranker`, imported (with torch) on first use."""
    from bge_core import shared_reranker

    return shared_reranker(model, **options)


class EngineOwner:
    """Mixin for the pydantic models of this package: copies and ``model_copy`` that follow the fields.

    Subclasses declare ``_slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)`` (the
    :class:`bge_core.slot.EngineSlot`) and, where
    a field's value shown to users differs from the one they passed (a resolved default),
    override :meth:`_constructor_data`.
    """

    _slot: EngineSlot

    def __copy__(self) -> Any:
        new = super().__copy__()  # type: ignore[misc]
        new._slot = self._slot.fork()
        return new

    def _constructor_data(self) -> dict[str, Any]:
        """The keyword arguments that build an object equal to this one."""
        return {name: getattr(self, name) for name in type(self).model_fields}  # type: ignore[attr-defined]

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
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


__all__ = ["EngineOwner", "engine_options", "load_embedder", "load_reranker"]

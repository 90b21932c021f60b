"""Engines whose settings cannot change after construction.

Engines are shared across a process (:func:`bge_core.shared_embedder`, the framework adapters,
the server), so a setting changed by one caller would change the results of every other. An
engine class derives from :class:`FrozenAfterInit` and calls :meth:`FrozenAfterInit._freeze` at
the end of its ``__init__``; from then on assigning or deleting any attribute raises
:class:`~bge_core.errors.ReadOnlySettingError` (an ``AttributeError``). What a caller
legitimately varies per call is a per-call argument (``encode(..., normalize=False)``).
"""

from __future__ import annotations

from typing import Any

from .errors import ReadOnlySettingError


class FrozenAfterInit:
    """Mixin: every attribute is read-only once :meth:`_freeze` has run."""

    __slots__ = ()
    _frozen: bool = False

    def _freeze(self) -> None:
        """Make the object read-only (call last in ``__init__``)."""
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise ReadOnlySettingError(self._read_only_message(name))
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._frozen:
            raise ReadOnlySettingError(self._read_only_message(name))
        object.__delattr__(self, name)

    def _read_only_message(self, name: str) -> str:
        kind = type(self).__name__
        article = "an" if kind[:1] in "AEIOU" else "a"
        return (
            f"{kind}.{name} is read-only: {article} {kind} may be shared by several callers, so its settings are "
            f"fixed at construction. Pass the option per call where the method takes it (e.g. "
            f"encode(..., normalize=False)), or construct another {kind} with the setting you want "
            f"(the loaded model weights are shared)."
        )


__all__ = ["FrozenAfterInit"]

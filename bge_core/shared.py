"""Process-wide sharing of engines with identical configurations.

Framework adapters create an engine per component object (a LangChain ``Embeddings``, a
Haystack embedder, ...); apps often create several with the same settings. ``shared_embedder``
and ``shared_reranker`` hand back one object per configuration while any user holds it, so the
model is resolved and loaded once. (Loaded weights are shared anyway, see
:func:`bge_core.loading.load_backbone`; this also skips resolving the model again, which for a
hub id can mean a network round trip.)
"""

from __future__ import annotations

import inspect
import threading
import weakref
from pathlib import Path
from typing import Any

from .embedder import Embedder
from .rerank import Reranker

_CACHE: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def _key(cls: type, model: str | Path, options: dict[str, Any]) -> tuple:
    # Options are completed with the constructor's defaults, so that leaving one out and
    # passing its default value give one engine. The model is keyed by its name as given, not
    # a resolved path: the registry entry (instruction, pooling) follows the name, so two names
    # for the same files (a symlinked ``bge-small-zh-v1.5``) must not share an engine. They
    # still share the loaded weights (see load_backbone).
    bound = inspect.signature(cls).bind(str(model), **options)
    bound.apply_defaults()
    settings = {k: v for k, v in bound.arguments.items() if k != "model"}
    return (cls.__name__, str(model), tuple(sorted((k, repr(v)) for k, v in settings.items())))


def _shared(cls: type, model: str | Path, options: dict[str, Any]) -> Any:
    key = _key(cls, model, options)
    with _LOCK:
        engine = _CACHE.get(key)
        if engine is None:
            engine = cls(model, **options)
            _CACHE[key] = engine
        return engine


def shared_embedder(model: str | Path, **options: Any) -> Embedder:
    """An :class:`~bge_core.Embedder` for ``model`` and ``options``, shared while in use.

    Sharing is safe: an Embedder's settings are read-only after construction (assigning one
    raises :class:`~bge_core.errors.ReadOnlySettingError`), and what a caller varies per call is
    an argument of ``encode`` (``normalize=``, ``truncation=``, ``batch_size=``, ...). For other
    settings, ask for an engine with those options.
    """
    return _shared(Embedder, model, options)


def shared_reranker(model: str | Path, **options: Any) -> Reranker:
    """A :class:`~bge_core.Reranker` for ``model`` and ``options``, shared while in use."""
    return _shared(Reranker, model, options)


__all__ = ["shared_embedder", "shared_reranker"]

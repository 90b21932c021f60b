"""The exceptions bge_core raises.

Every error derives from :class:`BGEError` and also from the built-in exception a caller would
expect (``TypeError`` for a wrong type, ``ValueError`` for a bad value, ``OSError`` for a model
that cannot be found or read, ``ImportError`` for a missing extra), so existing ``except``
clauses keep working. Messages say what to do: which argument, which file, which extra.
"""

from __future__ import annotations

from collections.abc import Sequence


class BGEError(Exception):
    """Base class of every error raised by bge_core."""


class InvalidInputError(BGEError, ValueError):
    """An input value cannot be processed (for example a text longer than the model allows)."""


class InputTypeError(InvalidInputError, TypeError):
    """An input has the wrong type (``None``, a number, a pair that is not two strings, ...)."""


class TextTooLongError(InvalidInputError):
    """A text is longer than ``max_length`` tokens while truncation is turned off."""


class EmptySparseVectorError(InvalidInputError):
    """Documents whose sparse vector has no nonzero weight, refused before a store that cannot hold them.

    An empty, whitespace-only or punctuation-only text can get no lexical weight from BGE-M3, and a
    Milvus collection refuses a sparse row without a nonzero weight, failing the whole insert. The
    adapters that write to Milvus raise this error first, naming every such document.

    Attributes:
        indices: The positions of those documents in the batch, ascending.
    """

    def __init__(self, message: str, indices: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.indices: tuple[int, ...] = tuple(indices)

    def __reduce__(self) -> tuple[type[EmptySparseVectorError], tuple[str, tuple[int, ...]]]:
        return type(self), (str(self), self.indices)


class ConfigError(BGEError, ValueError):
    """A constructor or method argument is invalid (precision, pooling, max_length, ...)."""


class ModelNotFoundError(BGEError, OSError):
    """A model is neither a local folder nor obtainable from the Hugging Face Hub."""


class ModelLoadError(BGEError, OSError):
    """A model folder exists but cannot be used (no weights, unreadable config, wrong kind)."""


class MissingHeadError(ModelLoadError):
    """An output (sparse or ColBERT) was requested from a model that lacks its head file."""


class UnsupportedModelError(BGEError, ValueError):
    """A known model that this version of bge_core cannot run (for example LLM rerankers)."""


class MissingExtraError(BGEError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class BGEOutOfMemoryError(BGEError, RuntimeError):
    """A single text does not fit in device memory even in a batch of its own."""


class ReadOnlySettingError(BGEError, AttributeError):
    """An engine's setting was assigned after construction (engines are shared: settings are fixed)."""


__all__ = [
    "BGEError",
    "BGEOutOfMemoryError",
    "ConfigError",
    "EmptySparseVectorError",
    "InputTypeError",
    "InvalidInputError",
    "MissingExtraError",
    "MissingHeadError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ReadOnlySettingError",
    "TextTooLongError",
    "UnsupportedModelError",
]

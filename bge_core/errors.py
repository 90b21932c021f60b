"""The exceptions bge_core raises.

Every error derives from :class:`BGEError` and also from the built-in exception a caller would
expect (``TypeError`` for a wrong type, ``ValueError`` for a bad value, ``OSError`` for a model
that cannot be found or read, ``ImportError`` for a missing extra), so existing ``except``
clauses keep working. Messages say what to do: which argument, which file, which extra.
"""

from __future__ import annotations


class BGEError(Exception):
    """Base class of every error raised by bge_core."""


class InvalidInputError(BGEError, ValueError):
    """An input value cannot be processed (for example a text longer than the model allows)."""


class InputTypeError(InvalidInputError, TypeError):
    """An input has the wrong type (``None``, a number, a pair that is not two strings, ...)."""


class TextTooLongError(InvalidInputError):
    """A text is longer than ``max_length`` tokens while truncation is turned off."""


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

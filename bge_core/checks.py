"""Small validation and environment helpers shared by the engine, its adapters and its apps."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConfigError


def check_positive(name: str, value: Any) -> int:
    """``value`` as an ``int`` above zero, or a :class:`~bge_core.ConfigError` naming ``name``.

    Args:
        name: The argument's name, used in the error message.
        value: An ``int`` (or numpy integer); ``bool`` is refused.

    Returns:
        ``int(value)``.

    Raises:
        ConfigError: ``value`` is not a positive integer.

    Example:
        >>> check_positive("batch_size", 8)
        8
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def transformers_version() -> tuple[int, int]:
    """The installed transformers release as ``(major, minor)``, e.g. ``(5, 2)``."""
    import transformers

    major, minor = transformers.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


__all__ = ["check_positive", "transformers_version"]

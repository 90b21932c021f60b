"""Reading JSON Lines input, one checked object per line, with ``file:line`` in every error.

The apps read users' JSONL files (evaluation datasets, fine-tuning data, candidate pools) through
:func:`read_objects`: blank lines are skipped, a byte-order mark (files saved on Windows) is not
data, and a line that is not a JSON object raises :class:`~bge_core.errors.InvalidInputError`
naming the file and line.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bge_core.errors import ConfigError, InputTypeError, InvalidInputError


def read_objects(
    path: str | os.PathLike, what: str = "file", *, objects_only: bool = True
) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` for each non-blank line of ``path``; ``where`` is ``"file:line"``.

    Args:
        path: The JSONL file (``.gz``: gzip-compressed).
        what: What the file is, for the message when it cannot be read (``"input_file"``, ...).
        objects_only: A line that is not a JSON object is an error (``False``: the caller checks).

    Raises:
        ConfigError: the file does not exist or cannot be read.
        InvalidInputError: a line is not valid JSON; :class:`~bge_core.errors.InputTypeError` (a
            subclass): a line is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist or is not a file")
    try:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        handle = opener(path, "rt", encoding="utf-8-sig")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ConfigError(f"Cannot read {what} {str(path)!r}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if objects_only and not isinstance(record, dict):
                raise InputTypeError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield where, record


__all__ = ["read_objects"]

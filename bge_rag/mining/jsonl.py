"""Reading and writing FlagEmbedding's fine-tuning JSONL: ``{"query", "pos", "neg", ...}`` per line.

Every line is checked as it is read, and a bad one raises
:class:`~bge_core.errors.InvalidInputError` naming the file and line. Blank lines are skipped.
Output is written to a temporary file beside the target and renamed over it, so an interrupted
run never leaves half a file under the output name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bge_core.errors import ConfigError, InvalidInputError
from bge_rag.jsonl import read_objects


def _check_texts(where: str, record: Mapping[str, Any], key: str, required: bool) -> None:
    if key not in record:
        if required:
            raise InvalidInputError(f"{where}: the line has no {key!r} field")
        return
    value = record[key]
    if not isinstance(value, list) or not all(isinstance(text, str) for text in value):
        raise InvalidInputError(f"{where}: {key!r} must be a list of strings")


def read_training_lines(path: str | Path, *, require_neg: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """``("file:line", object)`` for each line of a FlagEmbedding training file, checked.

    Args:
        path: A JSONL file; each line an object with ``query`` (a string), ``pos`` (a list of
            strings) and optionally ``neg`` (a list of strings) and any other fields.
        require_neg: Refuse a line without ``neg``.

    Returns:
        Where each object was read and the object, in file order (blank lines skipped).

    Raises:
        ConfigError: the file does not exist.
        InvalidInputError: a line is not a JSON object or lacks / mistypes a field (``file:line`` in
            the message).
    """
    lines = []
    for where, record in read_objects(path, "input_file"):
        if not isinstance(record.get("query"), str):
            problem = "has no 'query' field" if "query" not in record else "has a 'query' that is not a string"
            raise InvalidInputError(f"{where}: the line {problem}")
        _check_texts(where, record, "pos", required=True)
        _check_texts(where, record, "neg", required=require_neg)
        lines.append((where, record))
    return lines


def read_training_file(path: str | Path, *, require_neg: bool = False) -> list[dict[str, Any]]:
    """The objects of a FlagEmbedding training file, checked (see :func:`read_training_lines`)."""
    return [record for _, record in read_training_lines(path, require_neg=require_neg)]


def read_candidate_pool(path: str | Path) -> list[str]:
    """The ``text`` of every line of a candidate pool file (JSONL of ``{"text": ...}``), in file order.

    Raises:
        ConfigError: the file does not exist.
        InvalidInputError: a line is not an object with a string ``text`` (``file:line`` in the message).
    """
    texts = []
    for where, record in read_objects(path, "candidate_pool"):
        if not isinstance(record.get("text"), str):
            raise InvalidInputError(f"{where}: expected an object with a string 'text' field")
        texts.append(record["text"])
    return texts


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write one JSON object per line (UTF-8, non-ASCII kept as is), replacing ``path`` at the end.

    Raises:
        ConfigError: the output cannot be written (its folder is missing or not writable).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with temporary.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write output_file {str(path)!r}: {exc}") from exc

"""Served model names: the defaults, the query alias, and the rule that requests can tell them apart.

Plain data, no web framework (``bge-rag serve`` checks its names before it loads a model).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bge_core.errors import ConfigError

#: The suffix of the served model name that asks for queries (``bge-m3-query``), for OpenAI-shaped
#: clients that cannot send ``input_type``; ``/query/v1`` as base URL does the same.
QUERY_SUFFIX = "-query"


def served_name(engine: Any, name: str | None) -> str:
    """The name clients see: ``name``, else the hub id, else the model folder's name."""
    if name:
        return name
    return default_name(str(engine.model_name))


def default_name(source: str) -> str:
    """The served name of a model loaded from ``source`` (a hub id, or a folder: its name)."""
    return Path(source).name if Path(source).is_dir() else source


def check_names(embedders: Sequence[str], rerankers: Sequence[str]) -> None:
    """Refuse served names that a request could not tell apart.

    Every name (embedding models and rerankers alike) must be unique, and no name may be another
    embedding model's query alias (``<name>-query``).

    Raises:
        ConfigError: an empty, duplicate or ambiguous name, saying which and how to rename it.
    """
    seen: dict[str, str] = {}
    for kind, names in (("embedding model", embedders), ("reranker", rerankers)):
        for name in names:
            if not name:
                raise ConfigError(f"A served {kind} name must not be empty.")
            if name in seen:
                raise ConfigError(
                    f"Two models are served as {name!r} (a {seen[name]} and a {kind}): give each its own "
                    "name (--model SOURCE=NAME, --reranker SOURCE=NAME)."
                )
            seen[name] = kind
    for name in embedders:
        alias = name + QUERY_SUFFIX
        if alias in seen:
            raise ConfigError(
                f"The served name {alias!r} is also the query alias of the embedding model {name!r}: "
                "rename one of them (--model SOURCE=NAME, --reranker SOURCE=NAME)."
            )


__all__ = ["QUERY_SUFFIX", "check_names", "default_name", "served_name"]

"""Truncation at ``max_length`` is never silent: one warning per engine, with the count.

FlagEmbedding truncates every text at ``max_length`` (512 by default, also for BGE-M3) without a
word; bge_core truncates the same way, so that vectors stay identical, but says so once per
engine instance (:class:`~bge_core.Embedder`, :class:`~bge_core.Reranker`), through the
``bge_core.truncation`` logger, naming how many texts were cut and how to change it.

Example:
    >>> warner = TruncationWarner("Embedder")
    >>> warner.report(truncated=3, total=10, max_length=512, limit=8192)  # logs one warning
    >>> warner.report(truncated=5, total=10, max_length=512, limit=8192)  # silent: warned once
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)


class TruncationWarner:
    """Logs one WARNING per owner the first time inputs are truncated at ``max_length``.

    Args:
        owner: What to call the engine in the message (``"Embedder"``, ``"Reranker"``, ...).
        unit: What was truncated (``"texts"``, ``"pairs"``, ``"queries"``).
    """

    def __init__(self, owner: str, unit: str = "texts") -> None:
        self.owner = owner
        self.unit = unit
        self._warned = False
        self._lock = threading.Lock()

    @property
    def warned(self) -> bool:
        """Whether the warning was already given."""
        return self._warned

    def report(
        self, *, truncated: int, total: int, max_length: int, limit: int | None = None, unit: str | None = None
    ) -> None:
        """Warn (once) when ``truncated`` of ``total`` inputs were cut to ``max_length`` tokens.

        Args:
            truncated: How many inputs of this call were longer than ``max_length``.
            total: How many inputs the call had.
            max_length: The length they were cut to.
            limit: The longest ``max_length`` the model accepts, shown as a hint when larger.
            unit: Overrides the instance's ``unit`` for this message.
        """
        if truncated <= 0:
            return
        with self._lock:
            if self._warned:
                return
            self._warned = True
        raise_hint = f" (the model accepts up to {limit})" if limit and limit > max_length else ""
        logger.warning(
            "%s: %d of %d %s were longer than max_length=%d tokens and were truncated, as FlagEmbedding does. "
            "Pass max_length=...%s to keep more tokens, or truncation=False to raise TextTooLongError instead. "
            "This warning is shown once per %s.",
            self.owner,
            truncated,
            total,
            unit or self.unit,
            max_length,
            raise_hint,
            self.owner,
        )


def count_truncated(tokenizer: Any, texts: Sequence[str], input_ids: Sequence[Sequence[int]], max_length: int) -> int:
    """How many of ``texts`` were cut, given their ids tokenized with ``truncation=True``.

    Only rows exactly ``max_length`` long can have been cut; those are tokenized again without
    truncation (and without transformers' "sequence length is longer" warning) to tell.
    """
    candidates = [t for t, ids in zip(texts, input_ids) if len(ids) >= max_length]
    if not candidates:
        return 0
    full = tokenizer(
        candidates, truncation=False, verbose=False, return_attention_mask=False, return_token_type_ids=False
    )["input_ids"]
    return sum(1 for ids in full if len(ids) > max_length)


__all__ = ["TruncationWarner", "count_truncated"]

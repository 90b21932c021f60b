"""Helpers shared by the LlamaIndex adapter tests (tests/adapters/llamaindex/)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.schema import NodeWithScore, TextNode

QUESTIONS = (
    "How do I handle an exception with try and except?",
    "What does the global statement do?",
)


class _Collector(BaseEventHandler):
    events: list = []

    @classmethod
    def class_name(cls) -> str:
        return "TestCollector"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)


@contextlib.contextmanager
def collected_events() -> Iterator[list]:
    """Instrumentation events emitted inside the block (root dispatcher handler)."""
    root = get_dispatcher()
    collector = _Collector(events=[])
    root.add_event_handler(collector)
    try:
        yield collector.events
    finally:
        root.event_handlers.remove(collector)


def scored_nodes(texts: list[str]) -> list[NodeWithScore]:
    """Retrieved-looking nodes: metadata for the embedding text, one excluded key, a score."""
    return [
        NodeWithScore(
            node=TextNode(
                text=text,
                id_=f"node-{i}",
                metadata={"section": f"reference {i}", "internal": "not for models"},
                excluded_embed_metadata_keys=["internal"],
            ),
            score=1.0 - i / 100,
        )
        for i, text in enumerate(texts)
    ]


class ConcurrencyProbe:
    """Wraps a function and records how many calls ran at once at most."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls = 0
        self.active = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            return self.fn(*args, **kwargs)
        finally:
            with self._lock:
                self.active -= 1

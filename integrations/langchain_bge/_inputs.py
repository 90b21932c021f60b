"""Input checks for LangChain's conventions (one text vs a list); the engine checks the rest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document

from bge_core import InputTypeError


def type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def check_text(text: Any, name: str = "text") -> str:
    """One text (a query); anything else is a clear ``InputTypeError``."""
    if not isinstance(text, str):
        raise InputTypeError(f"{name} must be a string, got {type_name(text)}")
    return text


def check_texts(texts: Any) -> Sequence[str]:
    """A list of texts; a single string or ``None`` is a clear ``InputTypeError``.

    The elements are checked by the engine, which names the index of a bad one.
    """
    if isinstance(texts, (str, bytes, Mapping)) or not isinstance(texts, Iterable):
        raise InputTypeError(
            f"texts must be a list of strings, got {type_name(texts)}; wrap one text in a list, "
            f"or use embed_query for a query"
        )
    return texts


def check_documents(documents: Any) -> list[Document]:
    """A list of LangChain ``Document`` objects, naming the index of a bad element."""
    if isinstance(documents, (str, bytes, Mapping, Document)) or not isinstance(documents, Iterable):
        raise InputTypeError(f"documents must be a list of Document objects, got {type_name(documents)}")
    items = list(documents)
    for i, doc in enumerate(items):
        if not isinstance(doc, Document):
            raise InputTypeError(f"documents[{i}] is {type_name(doc)}, expected a langchain_core Document")
    return items

"""What every BGE component shares: device and token translation, engine options, input checks.

The components only translate Haystack's types and conventions; the model work happens in
``bge_core``. Engines come from :func:`bge_core.shared_embedder` / :func:`bge_core.shared_reranker`,
keyed by the options built here, so components with identical settings (a pipeline's text and
document embedders, or its dense and sparse BGE-M3 embedders) hold one engine.
"""

from __future__ import annotations

import inspect
from math import inf
from typing import TYPE_CHECKING, Any

from haystack import Document
from haystack.dataclasses import SparseEmbedding
from haystack.utils import ComponentDevice, Secret

from bge_core.errors import ConfigError, InputTypeError

if TYPE_CHECKING:
    from bge_core import Embedder  # noqa: F401

#: Haystack's default for Hugging Face tokens: read from the environment, optional.
DEFAULT_TOKEN = Secret.from_env_var(["HF_API_TOKEN", "HF_TOKEN"], strict=False)


def shared_embedder(model: str, **options: Any) -> Any:
    """:func:`bge_core.shared_embedder`, imported (with torch) at warm-up, not at import."""
    from bge_core.shared import shared_embedder as load

    return load(model, **options)


def shared_reranker(model: str, **options: Any) -> Any:
    """:func:`bge_core.shared_reranker`, imported (with torch) at warm-up, not at import."""
    from bge_core.shared import shared_reranker as load

    return load(model, **options)


def init_parameters(component: Any) -> dict[str, Any]:
    """Every ``__init__`` parameter of ``component``, in order, from the attribute of the same name.

    Each BGE component keeps its parameters so. This is what ``to_dict`` writes and ``from_dict``
    reads back, so a parameter added to ``__init__`` cannot be left out of the serialized pipeline.
    A subclass that adds ``__init__`` parameters must keep them as attributes of the same name too.

    Args:
        component: A BGE Haystack component.

    Returns:
        ``{parameter name: value}`` in the order of ``__init__``'s signature.
    """
    names = [name for name in inspect.signature(type(component).__init__).parameters if name != "self"]
    return {name: getattr(component, name) for name in names}


def resolve_device(device: ComponentDevice | None) -> ComponentDevice:
    """Haystack's default device when ``None``; a device map is refused (one engine, one device)."""
    resolved = ComponentDevice.resolve_device(device)
    if resolved.has_multiple_devices:
        raise ConfigError(
            "BGE components run on a single device; pass e.g. ComponentDevice.from_str('cuda:1'), not a device map."
        )
    return resolved


#: The settings every BGE component keeps as attributes and passes to its engine.
COMMON_SETTINGS = ("device", "token", "precision", "max_length", "trust_remote_code", "revision")


def common_settings(component: Any) -> dict[str, Any]:
    """The component's :data:`COMMON_SETTINGS` (its attributes), as keyword arguments of :func:`engine_options`."""
    return {name: getattr(component, name) for name in COMMON_SETTINGS}


def engine_options(
    *,
    device: ComponentDevice,
    token: Secret | None,
    precision: str,
    max_length: int | None,
    trust_remote_code: bool | None,
    revision: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``bge_core``'s ``Embedder`` / ``Reranker`` (and their sharing key).

    Every component builds its options here, always with the same keys, so identical
    settings give identical keys and therefore one shared engine.
    """
    return {
        "device": device.to_torch_str(),
        "token": token.resolve_value() if token is not None else None,
        "precision": precision,
        "max_length": max_length,
        "trust_remote_code": trust_remote_code,
        "revision": revision,
        **extra,
    }


def embedder_options(
    *,
    query_instruction: str | None = None,
    document_instruction: str | None = None,
    examples: list[dict[str, str]] | None = None,
    examples_instruction_format: str | None = None,
    pooling: str | None = None,
    normalize_embeddings: bool = True,
    truncate_dim: int | None = None,
    **common: Any,
) -> dict[str, Any]:
    """:func:`engine_options` plus the ``Embedder``-only settings (defaults as the engine's)."""
    return engine_options(
        query_instruction=query_instruction,
        document_instruction=document_instruction,
        examples=examples,
        examples_instruction_format=examples_instruction_format,
        pooling=pooling,
        normalize=normalize_embeddings,
        truncate_dim=truncate_dim,
        **common,
    )


def check_text(text: Any, component: str, documents_component: str) -> str:
    """``text`` if it is a string, else an :class:`~bge_core.InputTypeError` naming the fix."""
    if not isinstance(text, str):
        raise InputTypeError(
            f"{component} expects a string as input, got {type(text).__name__}. "
            f"To embed a list of Documents, use {documents_component}."
        )
    return text


def check_documents(documents: Any, component: str, text_component: str | None = None) -> list[Document]:
    """``documents`` if it is a list of Documents, else an :class:`~bge_core.InputTypeError`."""
    hint = f" To embed a string, use {text_component}." if text_component else ""
    if not isinstance(documents, list):
        raise InputTypeError(f"{component} expects a list of Documents, got {type(documents).__name__}.{hint}")
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InputTypeError(
                f"{component} expects a list of Documents; documents[{i}] is {type(doc).__name__}.{hint}"
            )
    return documents


def document_texts(documents: list[Document], meta_fields_to_embed: list[str], separator: str) -> list[str]:
    """The text of each document as Haystack's embedders build it: chosen meta values, then content."""
    texts = []
    for doc in documents:
        meta = [str(doc.meta[key]) for key in meta_fields_to_embed if doc.meta.get(key) is not None]
        texts.append(separator.join([*meta, doc.content or ""]))
    return texts


def with_affixes(texts: list[str], prefix: str, suffix: str) -> list[str]:
    """``prefix + text + suffix`` for each text, as Haystack's sentence-transformers embedders do.

    The model's own instruction (``query_instruction`` / ``document_instruction``) is put
    before the result by the engine, in the model's instruction format.
    """
    return [prefix + text + suffix for text in texts] if prefix or suffix else texts


def check_affixes(prefix: str, suffix: str, instruction: str | None, setting: str) -> None:
    """Refuse a ``prefix`` that repeats the instruction the engine already adds.

    Code moving from ``SentenceTransformersTextEmbedder(prefix="Represent this sentence ...")``
    would otherwise embed the instruction twice, silently.
    """
    for name, value in (("prefix", prefix), ("suffix", suffix)):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {type(value).__name__}")
    if instruction and prefix and prefix.strip() and instruction.strip().startswith(prefix.strip()[:40]):
        raise ConfigError(
            f"prefix {prefix!r} repeats the instruction bge_core already puts before each text ({instruction!r}). "
            f"Drop the prefix, or pass {setting}='' to use the prefix alone."
        )


def deduplicate_documents(documents: list[Document]) -> list[Document]:
    """One Document per id, in order of first appearance: the highest-scoring duplicate.

    The semantics of Haystack's rankers (its private ``haystack.utils.misc._deduplicate_documents``):
    a ``None`` score counts as lower than any score, and among equal scores the first one seen is
    kept. The Documents themselves are returned, not copies.
    """
    best: dict[str, Document] = {}
    for doc in documents:
        kept = best.get(doc.id)
        if kept is None or (doc.score if doc.score is not None else -inf) > (
            kept.score if kept.score is not None else -inf
        ):
            best[doc.id] = doc
    return list(best.values())


def to_sparse_embedding(vector: Any) -> SparseEmbedding:
    """Haystack's ``SparseEmbedding`` (Python ints and floats) from a bge_core ``SparseVector``."""
    return SparseEmbedding(indices=vector.indices.tolist(), values=vector.values.tolist())


def require_m3_heads(embedder: Any, *, colbert: bool = False) -> None:
    """Fail at warm-up, not at the first document, when the model lacks a BGE-M3 head file.

    Args:
        embedder: The component's ``bge_core.Embedder``.
        colbert: Require ``colbert_linear.pt`` as well as ``sparse_linear.pt``.

    Raises:
        bge_core.MissingHeadError: the model lacks ``sparse_linear.pt`` (or, with ``colbert``,
            ``colbert_linear.pt``).
    """
    embedder.require_heads(sparse=True, colbert=colbert)

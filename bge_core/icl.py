r"""Queries in FlagEmbedding's in-context-learning format (``FlagICLModel``, bge-en-icl).

bge-en-icl reads a query as ``<examples><instruct>{task}\n<query>{query}\n<response>``: the
few-shot examples first (each ``<instruct>{}\n<query>{}\n<response>{}``, joined and followed
by a blank line), then the instructed query, then the ``"\n<response>"`` suffix whose last
token is pooled. The steps below copy ``FlagICLModel.encode_queries`` exactly, including how it
truncates: the instructed query alone is cut to ``max_length`` minus the room for ``<s>`` and
the suffix, decoded back to text, wrapped in prefix and suffix and tokenized again (with a
limit that never cuts the examples). Documents are encoded as by any LLM embedder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError

#: What FlagICLModel appends to every query (its ``suffix``).
ICL_SUFFIX = "\n<response>"
#: FlagICLModel's default ``examples_instruction_format``.
DEFAULT_EXAMPLES_FORMAT = "<instruct>{}\n<query>{}\n<response>{}"
_EXAMPLE_KEYS = ("instruct", "query", "response")


def check_examples(examples: Any, default_instruction: str | None) -> tuple[dict[str, str], ...]:
    """Validate in-context examples.

    Valid examples are a sequence of mappings with ``"query"``, ``"response"`` and optionally
    ``"instruct"`` (default: the query instruction), all strings.

    Raises:
        ConfigError: anything else, naming the example and the key.
    """
    if isinstance(examples, (str, bytes, Mapping)) or not isinstance(examples, Sequence):
        raise ConfigError(
            f"examples must be a list of dicts with 'instruct', 'query' and 'response', got {type(examples).__name__}"
        )
    checked = []
    for i, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise ConfigError(
                f"examples[{i}] must be a dict with 'instruct', 'query' and 'response', got {type(example).__name__}"
            )
        unknown = sorted(str(k) for k in example if k not in _EXAMPLE_KEYS)
        if unknown:
            raise ConfigError(f"examples[{i}] has unknown keys {unknown}; the keys are {', '.join(_EXAMPLE_KEYS)}.")
        item = dict(example)
        if "instruct" not in item:
            if default_instruction is None:
                raise ConfigError(f"examples[{i}] has no 'instruct' and the model has no query instruction to use.")
            item["instruct"] = default_instruction
        for key in _EXAMPLE_KEYS:
            if not isinstance(item.get(key), str):
                raise ConfigError(f"examples[{i}][{key!r}] must be a string, got {type(item.get(key)).__name__}")
        checked.append({key: item[key] for key in _EXAMPLE_KEYS})
    return tuple(checked)


def examples_prefix(examples: Sequence[Mapping[str, str]] | None, fmt: str) -> str:
    """The text FlagICLModel puts before every query (``""`` without examples)."""
    if not examples:
        # FlagICLModel: examples=None gives no prefix; an empty list gives "\n\n" (kept, for parity).
        return "" if examples is None else "\n\n"
    fmt = fmt.replace("\\n", "\n")
    try:
        parts = [fmt.format(e["instruct"], e["query"], e["response"]) for e in examples]
    except (IndexError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"examples_instruction_format {fmt!r} must take three fields (instruct, query, response): {exc}"
        ) from exc
    return "\n\n".join(parts) + "\n\n"


def tokenize_queries(
    tokenizer: Any, texts: list[str], prefix: str, max_length: int
) -> tuple[list[list[int]], list[int]]:
    """Token ids of instructed queries in the ICL format, and the queries' untruncated lengths.

    Returns:
        The ids of ``prefix + query + suffix`` per text, and for each text the number of query
        tokens before truncation when it was cut (``0`` when it was not).
    """
    limit = query_token_limit(tokenizer, max_length)
    suffix_ids = _ids(tokenizer, ICL_SUFFIX)
    prefix_ids = _ids(tokenizer, prefix)
    outer = (len(prefix_ids) + len(suffix_ids) + max_length + 8) // 8 * 8 + 8
    first = tokenizer(texts, truncation=True, max_length=limit, add_special_tokens=False)["input_ids"]
    cut = [0] * len(texts)
    candidates = [i for i, ids in enumerate(first) if len(ids) >= limit]
    if candidates:
        full = tokenizer([texts[i] for i in candidates], add_special_tokens=False, verbose=False)["input_ids"]
        for i, ids in zip(candidates, full):
            if len(ids) > limit:
                cut[i] = len(ids)
    decoded = tokenizer.batch_decode(first)
    wrapped = [prefix + text + ICL_SUFFIX for text in decoded]
    ids = tokenizer(
        wrapped, truncation=True, max_length=outer, return_attention_mask=False, return_token_type_ids=False
    )["input_ids"]
    return ids, cut


def query_token_limit(tokenizer: Any, max_length: int) -> int:
    """Query tokens kept by FlagICLModel: ``max_length`` minus the room for ``<s>`` and suffix."""
    limit = max_length - len(_ids(tokenizer, "<s>")) - len(_ids(tokenizer, f"{ICL_SUFFIX}</s>"))
    if limit < 1:
        raise ConfigError(f"max_length={max_length} leaves no room for a query in the ICL format.")
    return limit


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


__all__ = [
    "DEFAULT_EXAMPLES_FORMAT",
    "ICL_SUFFIX",
    "check_examples",
    "examples_prefix",
    "query_token_limit",
    "tokenize_queries",
]

"""The model work behind the endpoints: what runs on an engine's worker thread, and output shapes.

Everything here calls the engine's public API (``Embedder.encode``, ``Reranker.score``,
``Embedder.decode_sparse``) on coalesced inputs and splits the results back per request. No web
framework is imported.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from bge_core import Reranker, join_parts, sigmoid
from bge_core.embedder import Embedder, Kind
from bge_core.types import SparseVector


@dataclass(frozen=True)
class EncodeKey:
    """Requests with equal keys can share one ``encode`` call."""

    kind: Kind
    dense: bool = True
    sparse: bool = False
    colbert: bool = False
    top_tokens: int | None = None  # sparse tokens as strings, heaviest first, for display
    normalize: bool | None = None  # None: the embedder's setting; False: vectors before L2 normalization
    strict: bool = False  # True: a text longer than max_length fails instead of being cut (TEI's truncate=false)


@dataclass(frozen=True)
class CountKey:
    """Token counts only (no model work): what admission checks before a request's real work.

    ``kind`` applies the embedder's instruction for that kind (``None``: the texts as given);
    ``max_length`` counts at most that many tokens per text (``None``: the whole text);
    ``special_tokens`` counts the tokenizer's special tokens too.
    """

    kind: Kind | None = None
    max_length: int | None = None
    special_tokens: bool = True


@dataclass(frozen=True)
class TokenizeKey:
    """TEI's ``/tokenize`` on the engine's worker."""

    add_special_tokens: bool = True


@dataclass(frozen=True)
class DecodeKey:
    """TEI's ``/decode`` on the engine's worker."""

    skip_special_tokens: bool = True


@dataclass(frozen=True)
class EncodedPart:
    """One request's share of a coalesced ``encode`` call, in its input order."""

    dense: np.ndarray | None
    sparse: list[SparseVector] | None
    colbert: list[np.ndarray] | None
    tokens: list[list[tuple[str, float]]] | None
    token_counts: list[int]


def _offsets(item_lists: Sequence[Sequence[Any]]) -> list[tuple[int, int]]:
    spans, start = [], 0
    for items in item_lists:
        spans.append((start, start + len(items)))
        start += len(items)
    return spans


def encode_process(
    embedder: Embedder,
    cutter: ServerTokenizer | None = None,
    observe: Callable[[int, float], None] | None = None,
) -> Callable[[EncodeKey, list[Sequence[str]]], list[EncodedPart]]:
    """The batcher's ``process`` for an :class:`~bge_core.Embedder`: one ``encode`` per batch.

    A key's ``normalize`` and ``strict`` become ``encode``'s per-call ``normalize`` and
    ``truncation``, so one (shared, read-only) engine serves every variant. ``cutter`` shortens
    very long texts to a prefix that gives the same tokens (see :class:`ServerTokenizer`) before
    the engine tokenizes them. ``observe(tokens, seconds)`` is told each call's tokens and time
    (the server's throughput estimate).
    """

    def process(key: EncodeKey, item_lists: list[Sequence[str]]) -> list[EncodedPart]:
        texts = [text for items in item_lists for text in items]
        truncation = embedder.truncation and not key.strict
        if cutter is not None and truncation:  # else the engine must see it whole
            texts = cutter.cut(texts, embedder.max_length)
        started = time.perf_counter()
        out = embedder.encode(
            texts,
            kind=key.kind,
            dense=key.dense,
            sparse=key.sparse,
            colbert=key.colbert,
            show_progress=False,
            normalize=key.normalize,
            truncation=truncation,
        )
        # A list of texts gives list outputs: one SparseVector, ColBERT matrix and token count per text.
        sparse = cast("list[SparseVector] | None", out.sparse)
        colbert = cast("list[np.ndarray] | None", out.colbert)
        token_counts = cast("list[int]", out.token_counts)
        if observe is not None:
            observe(sum(token_counts), time.perf_counter() - started)
        tokens = None
        if key.top_tokens is not None and sparse is not None:
            tokens = [embedder.decode_sparse(v, key.top_tokens) for v in sparse]
        parts = []
        for a, b in _offsets(item_lists):
            parts.append(
                EncodedPart(
                    dense=None if out.dense is None else out.dense[a:b],
                    sparse=None if sparse is None else sparse[a:b],
                    colbert=None if colbert is None else colbert[a:b],
                    tokens=None if tokens is None else tokens[a:b],
                    token_counts=token_counts[a:b],
                )
            )
        return parts

    return process


def merge_scores(parts: list[list[Any]]) -> list[Any]:
    """The entries of a split request's parts, in order (scores, token lists, counts, texts)."""
    return [score for part in parts for score in part]


def merge_parts(parts: list[Any]) -> Any:
    """A split request's parts joined: ``EncodedPart`` s into one, lists into one list."""
    return join_parts(parts) if isinstance(parts[0], EncodedPart) else merge_scores(parts)


def with_tokenizer_work(
    process: Callable[[Any, list[Sequence[Any]]], list[Any]],
    tokenizer: ServerTokenizer | None,
    instruct: Callable[[list[str], Kind], list[str]] | None = None,
) -> Callable[[Any, list[Sequence[Any]]], list[Any]]:
    """``process`` that also runs tokenizer work (:class:`CountKey`, :class:`TokenizeKey`, :class:`DecodeKey`).

    So ``/tokenize``, ``/decode`` and admission's token counts go through the engine's batcher
    (queue limit, time limits, dropped when the client leaves) on its worker thread, taking
    turns with the model work instead of running beside it.

    Args:
        process: The engine's own ``process`` (``encode_process`` / ``rerank_process``).
        tokenizer: The server's copy of the engine's fast tokenizer (``None``: a slow one; the
            routes refuse tokenizer work before it is queued).
        instruct: Puts a kind's instruction before texts (``Embedder.with_instruction``) for counts.
    """

    def run(key: Any, item_lists: list[Sequence[Any]]) -> list[Any]:
        if not isinstance(key, (CountKey, TokenizeKey, DecodeKey)):
            return process(key, item_lists)
        assert tokenizer is not None
        if isinstance(key, TokenizeKey):
            return [tokenizer.tokenize(list(items), key.add_special_tokens) for items in item_lists]
        if isinstance(key, DecodeKey):
            return [tokenizer.decode(list(items), key.skip_special_tokens) for items in item_lists]
        texts = [text for items in item_lists for text in items]
        if key.kind is not None and instruct is not None:
            texts = instruct(texts, key.kind)
        counts = tokenizer.count(texts, key.max_length, key.special_tokens)
        return [counts[a:b] for a, b in _offsets(item_lists)]

    return run


def split_by_weight(items: Sequence[Any], max_items: int, max_weight: int, weight: Callable[[Any], int]) -> list[Any]:
    """``items`` in consecutive pieces of at most ``max_items`` items and ``max_weight`` in all.

    An item heavier than ``max_weight`` is a piece alone. Used for tokenizer work, whose cost
    follows characters (or token ids), not items.
    """
    pieces: list[Any] = []
    start, total = 0, 0
    for i, item in enumerate(items):
        w = weight(item)
        if i > start and (i - start >= max_items or total + w > max_weight):
            pieces.append(items[start:i])
            start, total = i, 0
        total += w
    pieces.append(items[start:])
    return pieces


def rerank_process(
    reranker: Reranker, cutter: ServerTokenizer | None = None
) -> Callable[[Any, list[Sequence[tuple[str, str]]]], list[list[float]]]:
    """The batcher's ``process`` for a :class:`~bge_core.Reranker`: raw logits, one call per batch."""

    def process(key: Any, item_lists: list[Sequence[tuple[str, str]]]) -> list[list[float]]:
        pairs = [pair for items in item_lists for pair in items]
        if cutter is not None:
            queries = cutter.cut([q for q, _ in pairs], reranker.max_length)
            passages = cutter.cut([p for _, p in pairs], reranker.max_length)
            pairs = list(zip(queries, passages))
        scores = reranker.score(pairs, normalize=False, show_progress=False)
        return [scores[a:b] for a, b in _offsets(item_lists)]

    return process


class ServerTokenizer:
    """A private copy of an engine's fast tokenizer, used only on that engine's worker thread.

    It cuts very long texts before the engine tokenizes them (:meth:`cut`) and answers TEI's
    ``/tokenize`` and ``/decode``, without touching the engine's own (shared) tokenizer.

    Cutting: a text of 100,000 characters costs the tokenizer far more than the 512 tokens the
    model keeps. Texts longer than ``chars_per_token * max_length`` characters are cut at the
    last space or newline before that point (tokenizers split words at whitespace, so every
    whole word of the prefix keeps its tokens); the prefix is used only when it still has at
    least ``max_length`` tokens of its own, so the tokens the model keeps are exactly those of
    the whole text. Otherwise (long runs of whitespace, text without spaces) the whole text is
    used.
    """

    def __init__(self, tokenizer: Any, chars_per_token: int = 16) -> None:
        from tokenizers import Tokenizer

        self._rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._rust.no_truncation()
        self._rust.no_padding()
        self.vocab_size = self._rust.get_vocab_size(with_added_tokens=True)
        self.chars_per_token = chars_per_token
        self.cut_count = 0  # texts given to the engine as a prefix (for tests)

    @classmethod
    def for_engine(cls, tokenizer: Any) -> ServerTokenizer | None:
        """A copy of ``tokenizer``, or ``None`` for a slow (Python) tokenizer."""
        return cls(tokenizer) if getattr(tokenizer, "is_fast", False) else None

    def tokenize(self, texts: list[str], add_special_tokens: bool) -> list[list[dict[str, Any]]]:
        """TEI's ``/tokenize`` answer: per text, ``{id, text, special, start, stop}`` per token."""
        out = []
        for text, enc in zip(texts, self._rust.encode_batch(texts, add_special_tokens=add_special_tokens)):
            tokens = []
            for token_id, token, special, (start, stop) in zip(
                enc.ids, enc.tokens, enc.special_tokens_mask, enc.offsets
            ):
                if special:
                    tokens.append({"id": token_id, "text": token, "special": True, "start": None, "stop": None})
                else:
                    tokens.append(
                        {"id": token_id, "text": text[start:stop], "special": False, "start": start, "stop": stop}
                    )
            out.append(tokens)
        return out

    def decode(self, ids: list[list[int]], skip_special_tokens: bool) -> list[str]:
        """TEI's ``/decode`` answer: the text of each list of token ids."""
        return self._rust.decode_batch(ids, skip_special_tokens=skip_special_tokens)

    def count(self, texts: list[str], max_length: int | None = None, special_tokens: bool = True) -> list[int]:
        """Tokens per text (with special tokens unless told not), at most ``max_length``: the engine's counts.

        A very long text is counted on the prefix :meth:`cut` keeps (which has the same first
        ``max_length`` tokens), so counting costs about what the model's tokenizer pass costs.
        """
        if max_length is not None:
            texts = self.cut(texts, max_length, tally=False)
        counts = [len(enc.ids) for enc in self._rust.encode_batch(texts, add_special_tokens=special_tokens)]
        return counts if max_length is None else [min(n, max_length) for n in counts]

    def cut(self, texts: list[str], max_length: int, *, tally: bool = True) -> list[str]:
        """``texts`` with the very long ones replaced by a prefix that gives the same first tokens.

        Args:
            texts: The texts the engine will tokenize.
            max_length: The engine's token limit; only its first ``max_length`` tokens must be kept.
            tally: Count the texts cut in :attr:`cut_count` (the engine's inputs, not admission's counts).

        Returns:
            The texts (a new list when one is longer than the character limit; see the class docstring).
        """
        limit = self.chars_per_token * max_length
        long = [i for i, t in enumerate(texts) if len(t) > limit]
        if not long:
            return texts
        out = list(texts)
        prefixes = {}
        for i in long:
            cut = max(texts[i].rfind(" ", 0, limit), texts[i].rfind("\n", 0, limit))
            if cut > 0:
                prefixes[i] = texts[i][:cut]
        if prefixes:
            encoded = self._rust.encode_batch(list(prefixes.values()), add_special_tokens=False)
            for (i, prefix), enc in zip(prefixes.items(), encoded):
                if len(enc.ids) >= max_length:
                    out[i] = prefix
                    self.cut_count += tally
        return out


def rank(scores: list[float], top_n: int | None, activation: str) -> list[tuple[int, float]]:
    """``(index, score)`` best first (ties keep input order), as ``Reranker.rerank`` orders them."""
    if activation == "sigmoid":
        scores = [sigmoid(s) for s in scores]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(i, scores[i]) for i in order[:top_n]]


def truncate_dims(vectors: np.ndarray, dimensions: int, normalize: bool) -> np.ndarray:
    """The first ``dimensions`` of each vector, renormalized when the model normalizes.

    Renormalizing a truncated unit vector gives the engine's ``truncate_dim`` output (which
    normalizes after truncating), so one loaded model serves every requested size.
    """
    out = vectors[:, :dimensions].astype(np.float64)
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def b64_float32(array: np.ndarray) -> str:
    """Little-endian float32 bytes in base64, as OpenAI's ``encoding_format="base64"``."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


__all__ = [
    "CountKey",
    "DecodeKey",
    "EncodeKey",
    "TokenizeKey",
    "merge_parts",
    "split_by_weight",
    "with_tokenizer_work",
    "EncodedPart",
    "b64_float32",
    "ServerTokenizer",
    "encode_process",
    "merge_scores",
    "rank",
    "rerank_process",
    "truncate_dims",
]

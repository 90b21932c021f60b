"""Token-aware chunking of long documents, with character offsets kept.

A document longer than the model's window is cut into windows of at most ``max_tokens`` tokens
(special tokens included), consecutive windows sharing about ``overlap`` tokens; windows start
and end between words where possible, never inside one unless a single word is longer than a
window. Each window is encoded from its token ids directly (the text is tokenized once), and its :class:`Chunk`
records the exact character span of the original text it covers. The windows of one document
can be kept apart (one vector per chunk, for chunk-level retrieval) or aggregated into one
output per document with :meth:`ChunkedEncoded.aggregate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import ConfigError
from .types import Encoded, SparseVector

Aggregate = Literal["mean", "max"]


@dataclass(frozen=True)
class Chunk:
    """One window of a document.

    Attributes:
        document: Position of the document in the input list.
        start, end: Character span of the window in the original text (``text[start:end]``).
        text: The window's text, ``original[start:end]``.
        n_tokens: Tokens in the window, special tokens included.
    """

    document: int
    start: int
    end: int
    text: str
    n_tokens: int


def special_tokens_template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single text."""
    probe = "a"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for pos in range(len(full) - len(bare) + 1):
        if full[pos : pos + len(bare)] == bare:
            return full[:pos], full[pos + len(bare) :]
    raise ConfigError("Cannot find where this tokenizer puts its special tokens; chunking is unavailable.")


def _windows(word_ids: list[int | None], size: int, overlap: int) -> list[tuple[int, int]]:
    """Token windows ``[start, end)`` of at most ``size`` tokens.

    Windows end and start on word boundaries where possible; consecutive windows share about
    ``overlap`` tokens.
    """
    n = len(word_ids)

    def boundary(pos: int) -> bool:  # a word starts at pos
        return pos <= 0 or pos >= n or word_ids[pos] is None or word_ids[pos] != word_ids[pos - 1]

    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + size, n)
        if end < n:
            cut = end
            while cut > start and not boundary(cut):
                cut -= 1
            end = cut if cut > start else end  # a single word longer than the window is cut
        windows.append((start, end))
        if end >= n:
            return windows
        nxt = max(end - overlap, start + 1)
        back = nxt
        while back > start + 1 and not boundary(back):
            back -= 1
        start = back if boundary(back) else nxt


def window_tokenize(
    tokenizer: Any, texts: list[str], max_tokens: int, overlap: int
) -> tuple[list[list[int]], list[Chunk]]:
    """Cut texts into overlapping token windows; return their input ids and chunks, in order."""
    prefix, suffix = special_tokens_template(tokenizer)
    size = max_tokens - len(prefix) - len(suffix)
    if size < 1:
        raise ConfigError(f"max_tokens must exceed the {len(prefix) + len(suffix)} special tokens, got {max_tokens}")
    if not 0 <= overlap < size:
        raise ConfigError(f"overlap must be in [0, {size}), got {overlap}")
    encoded = tokenizer(  # verbose=False: long texts are the point here, not worth a warning
        texts,
        add_special_tokens=False,
        verbose=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    all_ids: list[list[int]] = []
    chunks: list[Chunk] = []
    for doc, (ids, offsets) in enumerate(zip(encoded["input_ids"], encoded["offset_mapping"])):
        for lo, hi in _windows(encoded.word_ids(doc), size, overlap):
            start = offsets[lo][0] if hi > lo else 0
            end = offsets[hi - 1][1] if hi > lo else 0
            window = [*prefix, *ids[lo:hi], *suffix]
            all_ids.append(window)
            chunks.append(Chunk(doc, start, end, texts[doc][start:end], len(window)))
    return all_ids, chunks


@dataclass(frozen=True)
class ChunkedEncoded:
    """Outputs of every chunk of every document (what :meth:`Embedder.encode_chunked` returns).

    Attributes:
        chunks: All chunks, document by document, in input order.
        encoded: One output row per chunk (``dense`` is ``(n_chunks, D)``).
        offsets: Chunks of document ``i`` are ``chunks[offsets[i]:offsets[i + 1]]``.
        normalized: Whether dense vectors are L2-normalized (aggregates are renormalized).
    """

    chunks: list[Chunk]
    encoded: Encoded
    offsets: np.ndarray
    normalized: bool = True

    @property
    def n_documents(self) -> int:
        """How many documents were encoded."""
        return int(self.offsets.size - 1)

    def document(self, i: int) -> tuple[list[Chunk], Encoded]:
        """The chunks of document ``i`` and their outputs."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        enc = self.encoded
        return (
            self.chunks[lo:hi],
            Encoded(
                dense=None if enc.dense is None else enc.dense[lo:hi],
                sparse=None if enc.sparse is None else enc.sparse[lo:hi],  # type: ignore[index]
                colbert=None if enc.colbert is None else enc.colbert[lo:hi],
            ),
        )

    def aggregate(self, how: Aggregate = "mean") -> Encoded:
        """One output per document, from the outputs of its chunks.

        Dense vectors are averaged (``"mean"``) or take the element-wise maximum (``"max"``) over
        chunks, renormalized when the embedder normalizes; sparse weights are merged by maximum
        per token id; the ColBERT vectors of all chunks are concatenated.
        """
        if how not in ("mean", "max"):
            raise ConfigError(f"Invalid aggregate {how!r}. Valid values are: mean, max.")
        enc = self.encoded
        bounds = list(zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist()))
        dense = None
        if enc.dense is not None:
            reduce = np.mean if how == "mean" else np.max
            dense = np.stack([reduce(enc.dense[lo:hi], axis=0) for lo, hi in bounds]).astype(np.float32)
            if self.normalized:
                dense /= np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
        sparse = None
        if enc.sparse is not None:
            sparse = [merge_sparse(enc.sparse[lo:hi]) for lo, hi in bounds]  # type: ignore[index]
        colbert = None
        if enc.colbert is not None:
            colbert = [np.concatenate(enc.colbert[lo:hi], axis=0) for lo, hi in bounds]
        return Encoded(dense=dense, sparse=sparse, colbert=colbert)


def merge_sparse(vectors: list[SparseVector]) -> SparseVector:
    """Merge sparse vectors, keeping the largest weight of each token id."""
    ids = np.concatenate([v.indices for v in vectors]) if vectors else np.empty(0, np.int64)
    values = np.concatenate([v.values for v in vectors]) if vectors else np.empty(0, np.float32)
    if ids.size == 0:
        return SparseVector(ids, values)
    order = np.lexsort((-values, ids))
    ids, values = ids[order], values[order]
    first = np.r_[True, ids[1:] != ids[:-1]]
    return SparseVector(ids[first], values[first])


__all__ = ["Chunk", "ChunkedEncoded", "merge_sparse", "window_tokenize"]

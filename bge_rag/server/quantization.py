"""Quantized embeddings: Cohere's ``embedding_types`` and Infinity's ``--embedding-dtype``.

The codes are sentence-transformers' ``quantize_embeddings`` (:func:`bge_core.storage.quantize_embeddings`).
``binary`` / ``ubinary`` need nothing but the vector. ``int8`` / ``uint8`` need each dimension's
range, and those ranges are fixed per served model: the minimum and maximum of a calibration set,
never of the request's own vectors (a vector's codes must not depend on the texts sent with it,
and an index built over many requests needs one scale).

The calibration set is ``--quantization-calibration FILE`` (one text per line), else
:data:`~.settings.DEFAULT_CALIBRATION_TEXTS` paragraphs of the Python language reference
(:func:`bge_rag.sample_data.python_docs_paragraphs`). It is encoded as documents by the engine
alone (not merged with requests, so the ranges are the same on every start), once, when the first
int8 / uint8 answer needs it; requests that ask meanwhile wait for that one run. Queries and
documents share the ranges, so their codes can be compared. For ``output_dimension`` /
``dimensions``, the calibration vectors are truncated (and renormalized) the same way first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bge_core.aio import run_serialized
from bge_core.embedder import Embedder
from bge_core.errors import ConfigError, MissingExtraError
from bge_core.storage import Precision, calibration_ranges, quantize_embeddings

from .errors import APIError
from .settings import DEFAULT_CALIBRATION_TEXTS
from .work import truncate_dims

logger = logging.getLogger(__name__)


def read_calibration(path: str | Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, one calibration text each.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8, or has no text.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the quantization calibration file {str(path)!r}: {exc}") from exc
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ConfigError(f"The quantization calibration file {str(path)!r} has no text (one text per line).")
    return texts


def default_calibration() -> list[str]:
    """:data:`~.settings.DEFAULT_CALIBRATION_TEXTS` paragraphs of the Python language reference."""
    from bge_rag.sample_data import python_docs_paragraphs

    return python_docs_paragraphs(limit=DEFAULT_CALIBRATION_TEXTS)


class Quantizer:
    """Quantizes one embedder's vectors, with int8 / uint8 ranges calibrated once for it.

    Args:
        embedder: The served embedding model.
        texts: The calibration texts; ``None`` uses :func:`default_calibration`.

    Example:
        >>> from bge_core import Embedder
        >>> embedder = Embedder("BAAI/bge-small-en-v1.5")
        >>> quantizer = Quantizer(embedder, ["a text like the corpus", "another one"])
        >>> codes = await quantizer.quantize(embedder.encode_documents(["a"]), "int8")  # doctest: +SKIP
    """

    def __init__(self, embedder: Embedder, texts: Sequence[str] | None) -> None:
        self._embedder = embedder
        self._texts = None if texts is None else list(texts)
        self._calibration: asyncio.Future[np.ndarray] | None = None
        self._ranges: dict[int, np.ndarray] = {}

    async def ranges(self, dimensions: int) -> np.ndarray:
        """The ``(2, dimensions)`` int8 / uint8 ranges; the first call encodes the calibration set."""
        if dimensions not in self._ranges:
            vectors = await self._calibration_vectors()
            if dimensions < vectors.shape[1]:
                vectors = truncate_dims(vectors, dimensions, self._embedder.normalize)
            self._ranges[dimensions] = calibration_ranges(vectors)
        return self._ranges[dimensions]

    async def quantize(self, vectors: np.ndarray, precision: Precision) -> np.ndarray:
        """``vectors`` (a float32 ``(rows, dim)`` matrix) in ``precision``."""
        ranges = await self.ranges(vectors.shape[1]) if precision in ("int8", "uint8") else None
        return quantize_embeddings(vectors, precision, ranges)

    async def _calibration_vectors(self) -> np.ndarray:
        # One run, shared: a waiter whose client leaves does not cancel it (asyncio.shield); a run
        # that failed is retried by the next request.
        if self._calibration is None or _failed(self._calibration):
            self._calibration = asyncio.ensure_future(self._calibrate())
            self._calibration.add_done_callback(_failed)  # retrieved: no "exception never retrieved" log
        return await asyncio.shield(self._calibration)

    async def _calibrate(self) -> np.ndarray:
        if self._texts is None:
            try:
                self._texts = default_calibration()
            except MissingExtraError as exc:
                raise APIError(
                    500,
                    f"int8 / uint8 embeddings need a calibration set: {exc} Start the server with "
                    "--quantization-calibration FILE (one text per line).",
                    type="server_error",
                    code="no_calibration",
                ) from exc
        logger.info("Calibrating int8 / uint8 ranges of %r on %d texts.", self._embedder, len(self._texts))
        vectors = await run_serialized(self._embedder, self._embedder.encode_documents, self._texts)
        return np.asarray(vectors, dtype=np.float32)


def _failed(future: asyncio.Future[np.ndarray]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


__all__ = ["Quantizer", "default_calibration", "read_calibration"]

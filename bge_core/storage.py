"""Compact storage of dense and ColBERT outputs: float16 or int8, with a known accuracy cost.

Two families live here. :func:`compress` / :func:`decompress` shrink outputs that this library
reads back itself (float16, or int8 with one scale per vector). :func:`quantize_embeddings` writes
the vector-database precisions of sentence-transformers' ``quantize_embeddings`` (``int8``,
``uint8``, ``binary``, ``ubinary``), the values Cohere's ``embedding_types`` name; its int8 /
uint8 ranges come from a calibration set (:func:`calibration_ranges`), never from the vectors
being quantized, so a vector's codes do not depend on what it was quantized with.

ColBERT outputs are large (tokens x 1024 float32 per BGE-M3 text: about 2 MB for a 512-token
passage). Two lossy encodings shrink them:

- ``float16``: half the size; a relative round-off of about 5e-4 per value.
- ``int8`` with one float32 scale per vector (symmetric, ``scale = max|x| / 127``): a quarter
  of the size plus 4 bytes per vector; an error of at most half a step (``max|x| / 254``) per
  value.

``benchmarks/storage_accuracy.py`` measures what that does to scores on real paragraphs; its
results are on the documentation's Benchmarks page (from ``benchmarks/results/storage-accuracy.json``).

Both decode back to float32 for scoring (:func:`dequantize`, ``ndarray.astype``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import ConfigError, InputTypeError

Storage = Literal["float16", "int8"]
Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
#: Every :data:`Precision`, in the order errors list them.
PRECISIONS: tuple[Precision, ...] = ("float32", "int8", "uint8", "binary", "ubinary")


@dataclass(frozen=True)
class Int8Vectors:
    """Row-wise int8 codes and their float32 scales: ``value ~= codes * scales[:, None]``."""

    codes: np.ndarray
    scales: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes held by the codes and the scales."""
        return int(self.codes.nbytes + self.scales.nbytes)

    def dequantize(self) -> np.ndarray:
        """Back to float32 (same shape as the quantized input)."""
        return dequantize(self)


def _as_float_matrix(x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise InputTypeError(f"expected a float numpy array, got {type(x).__name__}")
    if x.ndim not in (1, 2):
        raise InputTypeError(f"expected a vector or a (rows, dim) matrix, got shape {x.shape}")
    return np.atleast_2d(x.astype(np.float32, copy=False))


def quantize_int8(x: np.ndarray) -> Int8Vectors:
    """Symmetric int8 quantization with one scale per row (a 1-D input is one row)."""
    matrix = _as_float_matrix(x)
    scales = np.abs(matrix).max(axis=1) / 127.0
    safe = np.where(scales > 0, scales, 1.0)
    codes = np.clip(np.rint(matrix / safe[:, None]), -127, 127).astype(np.int8)
    if x.ndim == 1:
        return Int8Vectors(codes[0], scales.astype(np.float32)[:1])
    return Int8Vectors(codes, scales.astype(np.float32))


def dequantize(q: Int8Vectors) -> np.ndarray:
    """float32 values of :class:`Int8Vectors`."""
    codes = q.codes.astype(np.float32)
    if codes.ndim == 1:
        return codes * q.scales[0]
    return codes * q.scales[:, None]


def compress(
    x: np.ndarray | Sequence[np.ndarray], storage: Storage
) -> np.ndarray | Int8Vectors | list[np.ndarray | Int8Vectors]:
    """Encode a dense matrix, or a list of ColBERT matrices, for storage.

    Args:
        x: A float array (dense output) or a list of float arrays (ColBERT output).
        storage: ``"float16"`` or ``"int8"``.
    """
    if storage not in ("float16", "int8"):
        raise ConfigError(f"Invalid storage {storage!r}. Valid values are: float16, int8.")
    if isinstance(x, np.ndarray):
        return quantize_int8(x) if storage == "int8" else _as_float_matrix(x).reshape(x.shape).astype(np.float16)
    return [compress(m, storage) for m in x]  # type: ignore[misc]


def decompress(
    x: np.ndarray | Int8Vectors | Sequence[np.ndarray | Int8Vectors],
) -> np.ndarray | list[np.ndarray]:
    """float32 arrays back from :func:`compress`'s output."""
    if isinstance(x, Int8Vectors):
        return dequantize(x)
    if isinstance(x, np.ndarray):
        return x.astype(np.float32)
    return [decompress(m) for m in x]  # type: ignore[misc]


def calibration_ranges(calibration: np.ndarray) -> np.ndarray:
    """Per-dimension ``(min, max)`` of calibration embeddings, for int8 / uint8 quantization.

    Args:
        calibration: A float ``(rows, dim)`` matrix of embeddings representative of what will be
            quantized (encoded as the quantized vectors are: same model, normalization, size).

    Returns:
        A float32 ``(2, dim)`` array: row 0 the minimum, row 1 the maximum of each dimension.

    Raises:
        InputTypeError: not a 2-D float array with at least one row.
    """
    matrix = _as_float_matrix(calibration)
    if calibration.ndim != 2 or matrix.shape[0] == 0:
        raise InputTypeError(f"expected a (rows, dim) calibration matrix with rows, got shape {calibration.shape}")
    return np.vstack((matrix.min(axis=0), matrix.max(axis=0))).astype(np.float32)


def quantize_embeddings(x: np.ndarray, precision: Precision, ranges: np.ndarray | None = None) -> np.ndarray:
    """Embeddings in a vector database's precision, as sentence-transformers' ``quantize_embeddings``.

    - ``int8`` / ``uint8``: each dimension's ``[min, max]`` range (``ranges``) cut into 256
      buckets: ``floor((x - min) / ((max - min) / 255))`` clipped to 0..255, minus 128 for int8.
      Values outside the calibration range land in the first or last bucket.
    - ``binary`` / ``ubinary``: one bit per dimension (``x > 0``), packed eight to a byte
      (``np.packbits``, the last byte padded with zero bits); ``binary`` is that byte minus 128
      as int8. ``ranges`` is not used.
    - ``float32``: the values as float32.

    Args:
        x: A float vector or ``(rows, dim)`` matrix.
        precision: One of ``float32``, ``int8``, ``uint8``, ``binary``, ``ubinary``.
        ranges: ``(2, dim)`` per-dimension minimum and maximum (:func:`calibration_ranges`);
            required for int8 and uint8.

    Returns:
        An array of the input's leading shape: int8 for ``int8`` and ``binary``, uint8 for
        ``uint8`` and ``ubinary`` (``ceil(dim / 8)`` bytes per vector for the binary ones).

    Raises:
        ConfigError: an unknown precision, or int8 / uint8 without ranges of the input's dimension.
        InputTypeError: ``x`` is not a float vector or matrix.

    Example:
        >>> ranges = calibration_ranges(embedder.encode_documents(calibration_texts))  # doctest: +SKIP
        >>> codes = quantize_embeddings(embedder.encode_documents(texts), "int8", ranges)  # doctest: +SKIP
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"Invalid precision {precision!r}. Valid values are: {', '.join(PRECISIONS)}.")
    matrix = _as_float_matrix(x)
    codes = _quantized(matrix, precision, ranges)
    return codes[0] if x.ndim == 1 else codes


def _quantized(matrix: np.ndarray, precision: Precision, ranges: np.ndarray | None) -> np.ndarray:
    if precision == "float32":
        return np.array(matrix, dtype=np.float32)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(matrix > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None:
        raise ConfigError(
            f"{precision} quantization needs ranges: pass calibration_ranges(...) of a calibration set "
            "(computing them from the vectors being quantized would make each vector depend on the others)."
        )
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, matrix.shape[1]):
        raise ConfigError(f"ranges must have shape (2, {matrix.shape[1]}), got {ranges.shape}")
    starts = ranges[0]
    steps = (ranges[1] - starts) / np.float32(255)
    steps = np.where(steps == 0, np.float32(1), steps)
    buckets = np.clip(np.floor((matrix - starts) / steps), 0, 255)
    if precision == "uint8":
        return buckets.astype(np.uint8)
    return (buckets - 128).astype(np.int8)


__all__ = [
    "PRECISIONS",
    "Int8Vectors",
    "Precision",
    "calibration_ranges",
    "compress",
    "decompress",
    "dequantize",
    "quantize_embeddings",
    "quantize_int8",
]

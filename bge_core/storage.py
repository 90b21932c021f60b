"""Compact storage of dense and ColBERT outputs: float16 or int8, with a known accuracy cost.

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


__all__ = ["Int8Vectors", "compress", "decompress", "dequantize", "quantize_int8"]

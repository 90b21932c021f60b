"""float16 / int8 storage of dense and ColBERT outputs, with the accuracy cost measured."""

from __future__ import annotations

import numpy as np
import pytest

from bge_core import ConfigError, Embedder, colbert_scores
from bge_core.storage import Int8Vectors, compress, decompress, quantize_int8


@pytest.fixture(scope="module")
def outputs(models, paragraphs):
    emb = Embedder(models.m3, precision="fp32")
    return emb.encode(paragraphs[:40], dense=True, colbert=True)


def test_int8_round_trip_error_bound(outputs):
    q = quantize_int8(outputs.dense)
    assert q.codes.dtype == np.int8 and q.scales.dtype == np.float32
    back = q.dequantize()
    max_abs = np.abs(outputs.dense).max(axis=1, keepdims=True)
    assert np.all(np.abs(back - outputs.dense) <= max_abs / 254 + 1e-7)  # half a quantization step
    cosine = np.sum(back * outputs.dense, axis=1) / np.linalg.norm(back, axis=1)
    assert cosine.min() > 0.999
    assert q.nbytes < outputs.dense.nbytes / 3.5


@pytest.mark.slow
def test_float16_and_int8_colbert_scores(outputs):
    exact = colbert_scores(outputs.colbert, outputs.colbert)
    half = colbert_scores(decompress(compress(outputs.colbert, "float16")), outputs.colbert)
    int8 = colbert_scores(decompress(compress(outputs.colbert, "int8")), outputs.colbert)
    assert np.abs(half - exact).max() < 1e-3
    assert np.abs(int8 - exact).max() < 1e-2
    assert all(isinstance(m, Int8Vectors) for m in compress(outputs.colbert, "int8"))


def test_vector_and_errors():
    v = np.array([0.5, -1.0, 0.25], dtype=np.float32)
    q = quantize_int8(v)
    assert q.codes.tolist() == [64, -127, 32] and q.dequantize().shape == (3,)
    assert quantize_int8(np.zeros((2, 4), np.float32)).dequantize().tolist() == [[0.0] * 4] * 2
    assert compress(v, "float16").dtype == np.float16
    with pytest.raises(ConfigError, match="float16, int8"):
        compress(v, "int4")  # type: ignore[arg-type]

"""float16 / int8 storage of dense and ColBERT outputs, with the accuracy cost measured."""

from __future__ import annotations

import numpy as np
import pytest

from bge_core import ConfigError, Embedder, colbert_scores
from bge_core.errors import InputTypeError
from bge_core.storage import (
    Int8Vectors,
    calibration_ranges,
    compress,
    decompress,
    quantize_embeddings,
    quantize_int8,
)


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


# ---------------------------------------------------------------------------- vector-database precisions
@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_quantize_embeddings_equals_sentence_transformers(outputs, precision):
    from sentence_transformers.util.quantization import quantize_embeddings as st_quantize

    calibration, vectors = outputs.dense[:30], outputs.dense[30:]
    ranges = calibration_ranges(calibration)
    ours = quantize_embeddings(vectors, precision, ranges)
    reference = st_quantize(vectors, precision=precision, ranges=ranges)
    assert ours.dtype == reference.dtype and ours.shape == reference.shape
    np.testing.assert_array_equal(ours, reference)
    # a vector's codes are its own: quantized alone, it gets the same ones
    np.testing.assert_array_equal(quantize_embeddings(vectors[3], precision, ranges), ours[3])


def test_quantize_embeddings_edge_values():
    ranges = np.array([[-1.0, 0.0, 0.5], [1.0, 0.0, 0.5]], np.float32)  # two constant dimensions
    x = np.array([[-2.0, 0.0, -0.5], [1.5, 3.0, -1.0], [0.0, -3.0, 0.7]], np.float32)
    from sentence_transformers.util.quantization import quantize_embeddings as st_quantize

    for precision in ("int8", "uint8"):
        np.testing.assert_array_equal(quantize_embeddings(x, precision, ranges), st_quantize(x, precision, ranges))
    assert quantize_embeddings(x, "uint8", ranges)[:, 0].tolist() == [0, 255, 127]  # clipped outside the range
    # 3 dimensions pack into one byte, padded with zero bits
    assert quantize_embeddings(x, "ubinary").tolist() == [[0b00000000], [0b11000000], [0b00100000]]
    assert quantize_embeddings(x, "binary").tolist() == [[-128], [64], [-96]]
    for precision in ("binary", "ubinary"):
        np.testing.assert_array_equal(quantize_embeddings(x, precision), st_quantize(x, precision))


def test_quantize_embeddings_refuses_what_it_cannot_do(outputs):
    with pytest.raises(ConfigError, match="needs ranges"):
        quantize_embeddings(outputs.dense, "int8")
    with pytest.raises(ConfigError, match=r"Valid values are: float32, int8, uint8, binary, ubinary"):
        quantize_embeddings(outputs.dense, "int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"shape \(2, "):
        quantize_embeddings(outputs.dense, "uint8", np.zeros((2, 3), np.float32))
    with pytest.raises(InputTypeError):
        calibration_ranges(outputs.dense[0])

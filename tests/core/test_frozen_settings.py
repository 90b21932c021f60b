"""An Embedder's settings are read-only after construction; what varies per call is an argument.

Engines are shared (``shared_embedder``, the adapters, the server), so one caller's choice must
never change another caller's results: ``normalize`` and ``truncation`` are ``encode`` arguments.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bge_core import Embedder, ReadOnlySettingError, TextTooLongError
from bge_rag.testing import FixtureModels

SETTINGS = (
    "batch_size",
    "device",
    "dtype",
    "model_name",
    "spec",
    "model_max_length",
    "max_batch_tokens",
    "max_length",
    "pooling",
    "query_instruction",
    "query_instruction_format",
    "document_instruction",
    "normalize",
    "truncate_dim",
    "truncation",
    "show_progress",
    "examples",
    "examples_instruction_format",
)


@pytest.fixture(scope="module")
def emb(models: FixtureModels) -> Embedder:
    return Embedder(models.dense, precision="fp32", max_length=64)


@pytest.fixture(scope="module")
def raw(models: FixtureModels) -> Embedder:
    return Embedder(models.dense, precision="fp32", max_length=64, normalize=False)


@pytest.fixture(scope="module")
def texts(paragraphs: list[str]) -> list[str]:
    return paragraphs[:12]


@pytest.mark.parametrize("name", SETTINGS)
def test_assigning_a_setting_raises(emb: Embedder, name: str) -> None:
    before = getattr(emb, name)
    with pytest.raises(ReadOnlySettingError, match=rf"Embedder\.{name} is read-only: an Embedder may"):
        setattr(emb, name, before)
    with pytest.raises(AttributeError):  # ReadOnlySettingError is an AttributeError
        delattr(emb, name)
    assert getattr(emb, name) == before


def test_new_and_private_attributes_are_refused_too(emb: Embedder) -> None:
    with pytest.raises(ReadOnlySettingError):
        emb.normalise = False  # type: ignore[attr-defined]  # a typo must not pass silently
    with pytest.raises(ReadOnlySettingError):
        emb._backbone = None  # type: ignore[assignment]
    assert emb.normalize is True and not hasattr(emb, "normalise")


def test_normalize_per_call_gives_the_unnormalized_vectors(emb: Embedder, raw: Embedder, texts: list[str]) -> None:
    default = emb.encode_documents(texts)
    expected = raw.encode_documents(texts)
    assert not np.allclose(np.linalg.norm(expected, axis=1), 1.0)  # the model's vectors are not unit length
    np.testing.assert_array_equal(emb.encode_documents(texts, normalize=False), expected)
    np.testing.assert_array_equal(emb.encode(texts, normalize=False).dense, expected)
    np.testing.assert_array_equal(emb.encode_queries(texts, normalize=False), raw.encode_queries(texts))
    # ... and the engine's own setting is untouched: default calls stay normalized.
    assert emb.normalize is True
    np.testing.assert_array_equal(emb.encode_documents(texts), default)
    np.testing.assert_allclose(np.linalg.norm(default, axis=1), 1.0, rtol=1e-5)
    # normalize=True on an engine built with normalize=False normalizes that call only.
    np.testing.assert_array_equal(raw.encode_documents(texts, normalize=True), default)
    np.testing.assert_array_equal(raw.encode_documents(texts), expected)


def test_normalize_per_call_for_a_single_text_and_chunks(emb: Embedder, raw: Embedder, texts: list[str]) -> None:
    np.testing.assert_array_equal(emb.encode_documents(texts[0], normalize=False), raw.encode_documents(texts[0]))
    chunked = emb.encode_chunked(texts[:3], normalize=False)
    expected = raw.encode_chunked(texts[:3])
    assert chunked.normalized is False and expected.normalized is False
    np.testing.assert_array_equal(chunked.encoded.dense, expected.encoded.dense)
    np.testing.assert_array_equal(chunked.aggregate().dense, expected.aggregate().dense)
    assert emb.encode_chunked(texts[:3]).normalized is True


@pytest.mark.slow
def test_normalize_per_call_from_several_threads(emb: Embedder, raw: Embedder, texts: list[str]) -> None:
    normalized = emb.encode_documents(texts)
    unnormalized = raw.encode_documents(texts)

    def call(i: int) -> tuple[bool, np.ndarray]:
        flag = i % 2 == 0
        return flag, emb.encode_documents(texts, normalize=flag)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(call, range(80)))  # 4 threads x 20 calls, alternating
    assert len(results) == 80
    for flag, got in results:
        np.testing.assert_array_equal(got, normalized if flag else unnormalized)
    np.testing.assert_array_equal(emb.encode_documents(texts), normalized)


def test_truncation_per_call(emb: Embedder, paragraphs: list[str]) -> None:
    long = " ".join(paragraphs[:20])  # far more than max_length=64 tokens
    cut = emb.encode_documents([long, "short"])
    with pytest.raises(TextTooLongError, match="texts\\[0\\]"):
        emb.encode_documents([long, "short"], truncation=False)
    with pytest.raises(TextTooLongError):
        emb.encode(long, truncation=False)
    assert emb.truncation is True
    np.testing.assert_array_equal(emb.encode_documents([long, "short"]), cut)  # default calls still truncate
    np.testing.assert_array_equal(emb.encode_documents(["short"], truncation=False), emb.encode_documents(["short"]))


def test_truncation_true_per_call_on_a_strict_engine(
    models: FixtureModels, emb: Embedder, paragraphs: list[str]
) -> None:
    strict = Embedder(models.dense, precision="fp32", max_length=64, truncation=False)
    long = " ".join(paragraphs[:20])
    with pytest.raises(TextTooLongError):
        strict.encode_documents([long])
    np.testing.assert_array_equal(strict.encode_documents([long], truncation=True), emb.encode_documents([long]))

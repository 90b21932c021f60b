"""Device and precision choice; bf16 stays close to fp32; outputs are always float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bge_core import ConfigError, Embedder, Reranker, devices
from bge_core.devices import resolve_device, resolve_precision


def test_default_device_is_one_device():
    dev = resolve_device(None)
    if torch.cuda.is_available():
        assert dev == torch.device("cuda", 0)
    elif not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        assert dev == torch.device("cpu")


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_precision_on_cpu_follows_detection(monkeypatch, bf16):
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: bf16)
    expected = torch.bfloat16 if bf16 else torch.float32
    assert resolve_precision("auto", torch.device("cpu")) == expected


def test_auto_precision_on_cuda_is_fp16():
    assert resolve_precision("auto", torch.device("cuda", 0)) == torch.float16


@pytest.mark.parametrize(("name", "dtype"), [("fp32", torch.float32), ("float16", torch.float16),
                                            ("BF16", torch.bfloat16), ("bfloat16", torch.bfloat16)])
def test_explicit_precisions(name, dtype):
    assert resolve_precision(name, torch.device("cpu")) == dtype


def test_bf16_detection_is_a_bool():
    assert isinstance(devices.cpu_supports_bf16(), bool)


def test_explicit_device_is_honoured(models):
    emb = Embedder(models.dense, device="cpu", precision="fp32")
    assert emb.device == torch.device("cpu")
    assert next(emb._backbone.model.parameters()).device == torch.device("cpu")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, or any GPU without CUDA
    with pytest.raises(ConfigError, match="CUDA"):
        Embedder(models.dense, device=missing)


def test_bf16_is_close_to_fp32_on_every_text(models, mixed_texts, paragraphs):
    texts = [*mixed_texts, *paragraphs[600:700]]
    fp32 = Embedder(models.dense, precision="fp32").encode_documents(texts)
    bf16_emb = Embedder(models.dense, precision="bf16")
    assert bf16_emb.dtype == torch.bfloat16
    bf16 = bf16_emb.encode_documents(texts)
    assert bf16.dtype == np.float32
    cosine = np.sum(fp32 * bf16, axis=1)  # both are unit vectors
    assert cosine.min() >= 0.999, cosine.min()


def test_reduced_precision_reranker_returns_python_floats(models, paragraphs):
    scores = Reranker(models.reranker, precision="bf16").score([(paragraphs[0], paragraphs[1])] * 3)
    assert all(type(s) is float for s in scores)
    reference = Reranker(models.reranker, precision="fp32").score([(paragraphs[0], paragraphs[1])])[0]
    assert scores[0] == pytest.approx(reference, abs=0.05)

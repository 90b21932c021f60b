"""bf16 Linear prepacking (bge_core.prepack): used where it is as accurate as F.linear, never otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bge_core import Embedder, Reranker, env, prepack
from bge_core.errors import ConfigError


def _packed_layers(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if type(m) is nn.Linear and m.weight is None)


def _expected_on_this_machine() -> bool:
    return prepack._ops() is not None and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _fresh(folder, monkeypatch, tmp_path, name, setting=None):
    """A copy of ``folder``: a backbone of its own, loaded with ``BGE_RAG_PREPACK=setting``."""
    import shutil

    copy = tmp_path / name
    shutil.copytree(folder, copy)
    if setting is None:
        monkeypatch.delenv(env.PREPACK_ENV, raising=False)
    else:
        monkeypatch.setenv(env.PREPACK_ENV, setting)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["minilm", "xlmr_m3"])
def test_packed_embedder_matches_plain_bf16_and_fp32(models, paragraphs, monkeypatch, tmp_path, fixture):
    folder = getattr(models, fixture)
    texts = paragraphs[:40] + ["hi", "a b c", paragraphs[0]]
    packed = Embedder(str(_fresh(folder, monkeypatch, tmp_path, "on")), precision="bf16")
    plain = Embedder(str(_fresh(folder, monkeypatch, tmp_path, "off", "0")), precision="bf16")
    exact = Embedder(str(folder), precision="fp32")
    assert _packed_layers(plain._backbone.model) == 0
    n = _packed_layers(packed._backbone.model)
    if _expected_on_this_machine():
        layers = packed._backbone.model.config.num_hidden_layers
        assert n == 6 * layers  # q, k, v, attention output, intermediate, output of every layer
    else:
        assert n == 0
    got, ref, fp32 = packed.encode_documents(texts), plain.encode_documents(texts), exact.encode_documents(texts)
    assert got.dtype == np.float32 and got.shape == ref.shape
    # As close to fp32 as the plain bf16 path is (that path's bound: cosine >= 0.9998 on these fixtures).
    cos_packed = np.sum(got * fp32, axis=1)
    cos_plain = np.sum(ref * fp32, axis=1)
    assert cos_packed.min() >= 0.9998 and cos_packed.min() >= cos_plain.min() - 5e-5
    assert np.sum(got * ref, axis=1).min() >= 0.9999
    np.testing.assert_array_equal(got[0], got[-1])  # equal texts in one call: equal vectors


def test_packed_reranker_scores_stay_close(models, monkeypatch, tmp_path, paragraphs):
    pairs = [("what is python?", p) for p in paragraphs[:24]]
    packed = Reranker(str(_fresh(models.xlmr_reranker, monkeypatch, tmp_path, "on")), precision="bf16")
    plain = Reranker(str(_fresh(models.xlmr_reranker, monkeypatch, tmp_path, "off", "0")), precision="bf16")
    assert (_packed_layers(packed._backbone.model) > 0) == _expected_on_this_machine()
    np.testing.assert_allclose(packed.score(pairs), plain.score(pairs), atol=0.05, rtol=0)


def _encoder(hidden: int = 32) -> nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=100, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=4 * hidden
    )
    model = BertModel(config).eval().to(torch.bfloat16)
    model.requires_grad_(False)
    return model


def test_outputs_of_a_packed_model_and_dtype_guard():
    model = _encoder()
    if not _expected_on_this_machine():  # oneDNN has no bf16 Linear on this CPU: nothing is packed
        assert prepack.prepack_encoder(model, torch.device("cpu"), torch.bfloat16) == 0
        return
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[1:, 6:] = 0
    with torch.inference_mode():
        before = model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert prepack.prepack_encoder(model, torch.device("cpu"), torch.bfloat16) == 12
        after = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(after.float(), before.float(), atol=0.05, rtol=0.02)
    layer = model.encoder.layer[0].intermediate.dense
    assert layer.weight is None and layer.bias is not None
    with pytest.raises(RuntimeError, match="input is torch.float32"):
        layer(torch.zeros(2, 32))


def test_never_packed_off_cpu_bf16_or_when_turned_off(monkeypatch):
    for device, dtype in (
        (torch.device("cpu"), torch.float32),
        (torch.device("cpu"), torch.float16),
        (torch.device("meta"), torch.bfloat16),
    ):
        model = _encoder()
        assert prepack.prepack_encoder(model, device, dtype) == 0 and _packed_layers(model) == 0
    monkeypatch.setenv(env.PREPACK_ENV, "0")
    model = _encoder()
    assert prepack.prepack_encoder(model, torch.device("cpu"), torch.bfloat16) == 0 and _packed_layers(model) == 0
    monkeypatch.setenv(env.PREPACK_ENV, "maybe")  # a typo is an error, not silently "on"
    with pytest.raises(ConfigError, match="BGE_RAG_PREPACK"):
        prepack.prepack_encoder(_encoder(), torch.device("cpu"), torch.bfloat16)


def test_an_inaccurate_op_is_refused(monkeypatch):
    """If the packed product were further from fp32 than F.linear's (a broken build, an unexpected
    CPU), nothing is packed: plausible-but-wrong vectors are the worst outcome."""

    def plain_reorder(w, *args):
        return w.clone()

    def plain_linear(x, w, b, *args):
        return F.linear(x, w, b)

    monkeypatch.setattr(prepack, "_ops", lambda: (plain_reorder, lambda x, w, b, *a: F.linear(x, w, b) * 1.01))
    model = _encoder()
    assert prepack.prepack_encoder(model, torch.device("cpu"), torch.bfloat16) == 0 and _packed_layers(model) == 0
    # the same check passes an op that is F.linear itself (so the refusal above is the error's doing)
    monkeypatch.setattr(prepack, "_ops", lambda: (plain_reorder, plain_linear))
    model = _encoder()
    assert prepack.prepack_encoder(model, torch.device("cpu"), torch.bfloat16) == 12


def test_shared_weights_are_left_alone(monkeypatch):
    model = _encoder()
    first, second = model.encoder.layer[0].attention.self.query, model.encoder.layer[1].attention.self.query
    second.weight = first.weight  # tied: packing one would change the other's owner
    monkeypatch.setattr(prepack, "_ops", lambda: (lambda w, *a: w.clone(), lambda x, w, b, *a: F.linear(x, w, b)))
    assert prepack.prepack_encoder(model, torch.device("cpu"), torch.bfloat16) == 10
    assert first.weight is not None and second.weight is first.weight

"""LLM rerankers (FlagLLMReranker's "Yes"-logit scoring) equal FlagEmbedding, through bge_core.Reranker.

Runs in .venv-test (transformers 5) and .venv-tf4 (transformers 4.x; dev.sh's TF4_TESTS).
The layer-wise and lightweight kinds, whose own modelling code needs transformers 4, are in
test_llm_rerank_tf4.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import transformers
from _llm_support import build_causal_reranker, build_tokenizer, edge_pairs

from bge_core import ConfigError, Reranker, UnsupportedModelError
from bge_core.checks import transformers_version

ATOL = 1e-4
#: bf16 (precision="auto" on this CPU) against FlagEmbedding's fp32, on these random tiny models.
BF16_ATOL = 1.0
TRANSFORMERS_MAJOR = transformers_version()[0]
ARCHS = ["gemma", "gemma2", "qwen2"]


@pytest.fixture(scope="module")
def causal(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm-rerankers")
    # gemma pads on the right, qwen2 on the left (both sides are exercised), gemma2 soft-caps logits.
    sides = {"gemma": "right", "gemma2": "right", "qwen2": "left"}
    return {arch: build_causal_reranker(root / arch, arch, padding_side=sides[arch]) for arch in ARCHS}


@pytest.fixture(scope="module")
def pairs(paragraphs):
    return edge_pairs(paragraphs)


def flag_llm(flag, folder, **kwargs):
    return flag.FlagLLMReranker(str(folder), use_fp16=False, devices="cpu", batch_size=8, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("normalize", [False, True])
def test_llm_scores_match_flagllmreranker(flag, causal, pairs, arch, normalize):
    expected = flag_llm(flag, causal[arch]).compute_score(pairs, normalize=normalize)
    got = Reranker(causal[arch], precision="fp32").score(pairs, normalize=normalize)
    assert all(type(s) is float for s in got)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    assert np.std(expected) > 0.1  # the scores really differ across pairs
    assert got[0] == pytest.approx(got[-4], abs=1e-5)  # the duplicate pair scores the same


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gemma", "qwen2"])
def test_llm_short_limits_and_prompt_match(flag, causal, pairs, arch):
    prompt = "Does B answer A? Say Yes or No."
    ref = flag_llm(flag, causal[arch], max_length=40, query_max_length=12, prompt=prompt)
    got = Reranker(causal[arch], precision="fp32", max_length=40, query_max_length=12, prompt=prompt).score(pairs)
    np.testing.assert_allclose(got, ref.compute_score(pairs), atol=ATOL, rtol=0)


@pytest.mark.parity
def test_llm_default_precision_is_close(flag, causal, pairs):
    """precision="auto" (bf16 here) stays within a bound of FlagEmbedding's fp32 scores, and keeps the order."""
    expected = np.array(flag_llm(flag, causal["gemma"]).compute_score(pairs))
    default = Reranker(causal["gemma"])
    got = np.array(default.score(pairs))
    assert np.abs(got - expected).max() < BF16_ATOL
    assert np.corrcoef(got, expected)[0, 1] > 0.98


def test_llm_batching_does_not_change_scores(causal, pairs):
    base = Reranker(causal["qwen2"], precision="fp32")
    one = base.score(pairs, batch_size=1)
    np.testing.assert_allclose(base.score(pairs), one, atol=ATOL, rtol=0)
    tight = Reranker(causal["qwen2"], precision="fp32", max_batch_tokens=64)
    np.testing.assert_allclose(tight.score(pairs), one, atol=ATOL, rtol=0)


def test_llm_rerank_api(causal, paragraphs):
    rr = Reranker(causal["gemma"], precision="fp32")
    assert rr.llm_kind == "llm"
    docs = paragraphs[:6]
    ranked = rr.rerank(paragraphs[10], docs, top_k=3)
    scores = rr.score([(paragraphs[10], d) for d in docs])
    assert [r.index for r in ranked] == sorted(range(6), key=lambda i: -scores[i])[:3]
    assert [r.text for r in ranked] == [docs[r.index] for r in ranked]
    single = rr.score((paragraphs[10], docs[0]))
    assert type(single) is float and single == pytest.approx(scores[0], abs=1e-5)
    assert rr.score([]) == [] and rr.rerank("q", []) == []
    assert rr.score(("q", "p"), normalize=True) == pytest.approx(1 / (1 + math.exp(-rr.score(("q", "p")))), abs=1e-6)


def test_llm_only_options_are_refused_where_they_do_not_apply(causal, models):
    with pytest.raises(ConfigError, match="layer-wise and lightweight"):
        Reranker(causal["gemma"], precision="fp32", cutoff_layers=[1])
    with pytest.raises(ConfigError, match="lightweight"):
        Reranker(causal["gemma"], precision="fp32", compress_ratio=2)
    with pytest.raises(ConfigError, match="LLM rerankers only"):
        Reranker(models.reranker, precision="fp32", prompt="Yes?")
    with pytest.raises(ConfigError, match="score_layers"):
        Reranker(causal["gemma"], precision="fp32").score_layers([("q", "p")])


def test_unknown_decoder_type_is_refused(tmp_path):
    """A decoder we cannot score exactly (OPT here) gets a clear error, never a plausible score."""
    folder = build_tokenizer(tmp_path / "opt")
    config = transformers.OPTConfig(
        vocab_size=800, hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2, word_embed_proj_dim=32
    )
    config.architectures = ["OPTForCausalLM"]
    transformers.OPTForCausalLM(config).save_pretrained(str(folder))
    with pytest.raises(UnsupportedModelError, match="'opt'"):
        Reranker(folder, precision="fp32")


@pytest.mark.parametrize(
    "kind,mark,install",
    [
        ("layerwise", "modeling_minicpm_reranker.LayerWiseMiniCPMForCausalLM", "'transformers>=4.45,<5'"),
        # its CostWiseGemma code runs on transformers 4.46 only (rerank/lightweight.py)
        ("lightweight", "gemma_model.CostWiseGemmaForCausalLM", "'transformers==4.46.*'"),
    ],
)
def test_remote_code_kinds_need_trust_and_transformers_4(tmp_path, kind, mark, install):
    folder = build_tokenizer(tmp_path / kind)
    (folder / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModelForCausalLM": mark}}))
    (folder / "model.safetensors").write_bytes(b"")  # never read: the refusal comes first
    with pytest.raises(ConfigError, match="trust_remote_code=True"):
        Reranker(folder, precision="fp32")
    if TRANSFORMERS_MAJOR >= 5:
        with pytest.raises(UnsupportedModelError, match="transformers 4") as info:
            Reranker(folder, precision="fp32", trust_remote_code=True)
        assert f"Install {install}" in str(info.value)


def test_llm_truncation_warns_once_and_can_refuse(causal, pairs, caplog):
    from bge_core import TextTooLongError

    rr = Reranker(causal["gemma"], precision="fp32", max_length=32)
    with caplog.at_level("WARNING", logger="bge_core.truncation"):
        rr.score(pairs)
        rr.score(pairs)
    warnings = [r for r in caplog.records if r.name == "bge_core.truncation"]
    assert len(warnings) == 1 and "max_length=32" in warnings[0].getMessage()
    strict = Reranker(causal["gemma"], precision="fp32", max_length=32, truncation=False)
    with pytest.raises(TextTooLongError):
        strict.score(pairs)
    assert strict.score(("q", "p")) == pytest.approx(rr.score(("q", "p")), abs=1e-6)

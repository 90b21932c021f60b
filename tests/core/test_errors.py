"""Bad input and bad configuration give typed errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest

from bge_core import (
    BGEError,
    ConfigError,
    Embedder,
    InputTypeError,
    ModelLoadError,
    ModelNotFoundError,
    Reranker,
    TextTooLongError,
    UnsupportedModelError,
)


@pytest.fixture(scope="module")
def emb(models):
    return Embedder(models.dense, precision="fp32")


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (None, "got None"),
        (42, "got int"),
        (b"bytes", "got bytes"),
        ({"a": 1}, "got dict"),
        (["ok", None], r"texts\[1\] is None"),
        (["ok", "fine", 3.5], r"texts\[2\] is float"),
        ([["nested"]], r"texts\[0\] is list"),
    ],
)
def test_bad_texts(emb, bad, fragment):
    for method in (emb.encode_documents, emb.encode_queries, emb.encode):
        with pytest.raises(InputTypeError, match=fragment):
            method(bad)
    assert issubclass(InputTypeError, TypeError) and issubclass(InputTypeError, BGEError)


def test_empty_list_gives_empty_results(emb):
    out = emb.encode_documents([])
    assert out.shape == (0, emb.dimension) and out.dtype == np.float32
    assert emb.encode_queries(()).shape == (0, emb.dimension)


def test_generators_and_tuples_are_accepted(emb):
    texts = ["one", "two", "three"]
    expected = emb.encode_documents(texts)
    np.testing.assert_array_equal(emb.encode_documents(tuple(texts)), expected)
    np.testing.assert_array_equal(emb.encode_documents(t for t in texts), expected)


def test_caller_list_is_not_mutated(emb):
    texts = ["b", "a longer text here", "c"]
    emb.encode_queries(texts)
    assert texts == ["b", "a longer text here", "c"]


def test_too_long_text_without_truncation(models, paragraphs):
    strict = Embedder(models.dense, precision="fp32", truncation=False, max_length=64)
    long_text = " ".join(paragraphs[:10])
    with pytest.raises(TextTooLongError, match=r"texts\[1\] has \d+ tokens, more than max_length=64"):
        strict.encode_documents(["short", long_text])
    assert strict.encode_documents(["short enough"]).shape == (1, strict.dimension)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"precision": "int3"}, "Valid precisions are: auto, fp32, fp16, bf16"),
        ({"precision": 16}, "precision must be a string"),
        ({"pooling": "max"}, "Valid pooling modes are: cls, mean, last_token"),
        ({"max_length": 100_000}, "exceeds what"),
        ({"max_length": 0}, "max_length must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_size": True}, "batch_size must be a positive integer"),
        ({"max_batch_tokens": -5}, "max_batch_tokens must be a positive integer"),
        ({"truncate_dim": 4096}, "truncate_dim=4096 exceeds"),
        ({"query_instruction": 5}, "query_instruction must be a string"),
        ({"device": "cuda:7"}, "CUDA"),
        ({"device": "nonsense-device"}, "Invalid device"),
    ],
)
def test_invalid_configuration(models, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Embedder(models.dense, **kwargs)


def test_invalid_encode_arguments(emb):
    with pytest.raises(ConfigError, match="Valid kinds are: query, document"):
        emb.encode(["x"], kind="passage")
    with pytest.raises(ConfigError, match="at least one"):
        emb.encode(["x"], dense=False)


def test_hub_id_offline_says_so(tmp_path):
    with pytest.raises(ModelNotFoundError, match="could not be reached.*local model folder"):
        Embedder("BAAI/bge-small-en-v1.5")
    with pytest.raises(ModelNotFoundError):
        Reranker("BAAI/bge-reranker-v2-m3")


def test_unknown_name_and_missing_folder():
    with pytest.raises(ModelNotFoundError, match="not a local folder"):
        Embedder("no-such-org/no-such-model-xyz")
    with pytest.raises(ModelNotFoundError, match="hub id or a folder path"):
        Embedder(None)  # type: ignore[arg-type]
    with pytest.raises(ModelNotFoundError):
        Embedder("")


def test_folder_without_weights(tmp_path, models):
    (tmp_path / "config.json").write_text((models.dense / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="has no model weights"):
        Embedder(tmp_path)


def test_file_instead_of_folder(models):
    with pytest.raises(ModelLoadError, match="is a file"):
        Embedder(models.dense / "config.json")


def test_folder_without_config(tmp_path, models):
    (tmp_path / "model.safetensors").write_bytes((models.dense / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match="Cannot load the model"):
        Embedder(tmp_path)


def test_wrong_task_is_named_before_any_download():
    with pytest.raises(ConfigError, match="is a reranker; load it with bge_core.Reranker"):
        Embedder("BAAI/bge-reranker-v2-m3")
    with pytest.raises(ConfigError, match="is an embedding model; load it with bge_core.Embedder"):
        Reranker("BAAI/bge-m3")
    # LLM rerankers are supported now: offline, the hub id fails only for want of the files.
    with pytest.raises(ModelNotFoundError, match="could not be reached"):
        Reranker("BAAI/bge-reranker-v2-gemma")


@pytest.mark.parametrize("path", ["/no/such/folder", "./missing-model", "~/missing-model", "a/b/c"])
def test_missing_local_path_says_folder(path):
    with pytest.raises(ModelNotFoundError, match="There is no folder at"):
        Embedder(path)


def test_pseudo_moe_checkpoint_is_refused(tmp_path):
    """FlagPseudoMoEModel checkpoints route by domain in their own code (``set_domain``);
    bge_core refuses them rather than run them without a domain."""
    import json

    from bge_rag.testing import build_decoder_model

    folder = build_decoder_model(tmp_path / "my-pseudo-moe-embedder", "qwen2")
    (folder / "modeling_moe.py").write_text(
        "from transformers import Qwen2Model\n\n\n"
        "class PseudoMoEModel(Qwen2Model):\n"
        "    def set_domain(self, domain):\n"
        "        self.domain = domain\n",
        encoding="utf-8",
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_moe.PseudoMoEModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="pseudo-MoE"):
        Embedder(folder, precision="fp32", trust_remote_code=True)

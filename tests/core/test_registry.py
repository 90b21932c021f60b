"""The model registry agrees with FlagEmbedding and reads local sentence-transformers folders."""

from __future__ import annotations

import json

import pytest

from bge_core import Embedder, lookup
from bge_core.errors import ConfigError
from bge_core.registry import EN_INSTRUCTION, ZH_INSTRUCTION, describe_folder, known_models, model_key
from bge_rag.testing import minilm_folder


@pytest.mark.parity
def test_pooling_and_formats_agree_with_flagembedding(flag):
    from FlagEmbedding.inference.embedder.model_mapping import AUTO_EMBEDDER_MAPPING

    checked = 0
    for name, config in AUTO_EMBEDDER_MAPPING.items():
        spec = lookup(name)
        assert spec is not None, f"{name} is in FlagEmbedding's mapping but not in ours"
        assert spec.pooling == config.pooling_method.value, name
        assert spec.query_instruction_format == config.query_instruction_format, name
        assert spec.trust_remote_code == config.trust_remote_code, name
        checked += 1
    assert checked >= 40


@pytest.mark.parity
def test_rerankers_agree_with_flagembedding(flag):
    from FlagEmbedding.inference.reranker.model_mapping import AUTO_RERANKER_MAPPING

    for name, config in AUTO_RERANKER_MAPPING.items():
        spec = lookup(name)
        assert spec is not None and spec.task == "reranking", name
        encoder = config.model_class.__name__ == "BaseReranker"
        assert (spec.architecture == "encoder") is encoder, name


@pytest.mark.parametrize(
    ("name", "instruction", "max_length"),
    [
        ("BAAI/bge-small-en-v1.5", EN_INSTRUCTION, 512),
        ("BAAI/bge-large-zh-v1.5", ZH_INSTRUCTION, 512),
        ("BAAI/bge-base-en", EN_INSTRUCTION, 512),
        ("BAAI/bge-m3", None, 8192),
    ],
)
def test_bge_entries(name, instruction, max_length):
    spec = lookup(name)
    assert spec is not None
    assert spec.pooling == "cls"
    assert spec.query_instruction == instruction
    assert spec.max_length == max_length
    assert spec.default_max_length == 512


def test_m3_declares_heads():
    assert lookup("BAAI/bge-m3").heads == {"sparse", "colbert"}
    assert not lookup("bge-base-en-v1.5").heads


def test_instruction_texts_are_exact():
    assert EN_INSTRUCTION == "Represent this sentence for searching relevant passages: "
    assert ZH_INSTRUCTION == "为这个句子生成表示以用于检索相关文章："


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("BAAI/bge-m3", "bge-m3"),
        ("/models/BGE-M3/", "bge-m3"),
        ("/root/.cache/huggingface/hub/models--BAAI--bge-small-en-v1.5/snapshots/0123abc", "bge-small-en-v1.5"),
        ("bge-base-zh-v1.5", "bge-base-zh-v1.5"),
    ],
)
def test_model_key(given, key):
    assert model_key(given) == key


def test_known_models_by_task():
    rerankers = known_models("reranking")
    assert "bge-reranker-v2-m3" in rerankers and "bge-m3" not in rerankers
    assert "bge-m3" in known_models("embedding")


def test_sentence_transformers_folder_is_described():
    spec = describe_folder(minilm_folder())
    assert spec.pooling == "mean" and spec.default_max_length == 256 and not spec.registered


def _st_folder(tmp_path, pooling_config, prompts=None):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    )
    if prompts:
        (tmp_path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    return tmp_path


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"pooling_mode": "cls"}, "cls"),
        ({"pooling_mode": ["lasttoken"]}, "last_token"),
        ({"pooling_mode_mean_tokens": True}, "mean"),
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
    ],
)
def test_st_pooling_modes(tmp_path, config, expected):
    assert describe_folder(_st_folder(tmp_path, config)).pooling == expected


def test_st_prompt_becomes_query_instruction(tmp_path):
    spec = describe_folder(_st_folder(tmp_path, {"pooling_mode": "cls"}, {"query": "query: ", "document": ""}))
    assert spec.query_instruction == "query: "


def test_unsupported_st_pooling_names_the_override(tmp_path):
    with pytest.raises(ConfigError, match="pass pooling="):
        describe_folder(_st_folder(tmp_path, {"pooling_mode": "max"}))


def test_folder_without_st_files_defaults_to_cls(models):
    emb = Embedder(models.dense, precision="fp32")
    assert emb.pooling == "cls" and emb.max_length == 512 and emb.query_instruction is None


def test_user_pooling_wins(models):
    assert Embedder(minilm_folder(), precision="fp32", pooling="cls").pooling == "cls"


def test_registered_folder_name_uses_registry(tmp_path, models):
    """A local copy named like a known model takes that model's pooling and instruction."""
    import shutil

    folder = tmp_path / "bge-small-en-v1.5"
    shutil.copytree(models.dense, folder)
    emb = Embedder(folder, precision="fp32")
    assert emb.query_instruction == EN_INSTRUCTION and emb.pooling == "cls"
    custom = Embedder(folder, precision="fp32", query_instruction="")
    assert custom.query_instruction is None


def test_tokenizer_limit_is_the_default_and_positions_the_hard_limit(tmp_path, models):
    """sentence-transformers 6 stores its max length as the tokenizer's model_max_length: it is
    the default, but the caller may raise max_length up to the position embeddings' limit."""
    import shutil

    folder = tmp_path / "short-default"
    shutil.copytree(models.dense, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["model_max_length"] = 128
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert Embedder(folder, precision="fp32").max_length == 128
    assert Embedder(folder, precision="fp32", max_length=512).max_length == 512
    with pytest.raises(ConfigError, match="exceeds"):
        Embedder(folder, precision="fp32", max_length=513)

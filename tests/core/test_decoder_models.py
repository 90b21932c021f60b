"""Decoder-only (LLM) embedders: unknown folders get last-token pooling, bge-en-icl gets
FlagICLModel's query format; both equal FlagEmbedding computed here on tiny random models."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from bge_core import Embedder
from bge_core.errors import ConfigError, TextTooLongError
from bge_core.registry import WEB_SEARCH_TASK, folder_architecture
from bge_rag.testing import build_decoder_model

ATOL = 1e-5
ARCHS = ["qwen2", "qwen3", "mistral", "gemma", "gemma2"]
TASK = "Given a web search query, retrieve relevant passages that answer the query."
EXAMPLES = [
    {
        "instruct": "Given a question, retrieve the passage that answers it.",
        "query": "what is a list?",
        "response": "A list is a mutable sequence.",
    },
    {"query": "how do I open a file?", "response": "Use the built-in open()."},
]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict[str, Path]:
    """One tiny random folder per architecture, named as a fine-tuned model would be (unknown)."""
    root = tmp_path_factory.mktemp("decoders")
    return {arch: build_decoder_model(root / f"my-finetuned-{arch}-embedder", arch) for arch in ARCHS}


@pytest.fixture(scope="module")
def icl_folder(tmp_path_factory) -> Path:
    """A tiny random Mistral named bge-en-icl, so that the registry gives it the ICL format."""
    return build_decoder_model(tmp_path_factory.mktemp("icl") / "bge-en-icl", "mistral")


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return [*paragraphs[:12], "", "bge", "Grüße aus Köln, 北京欢迎你 🙂", "the the the", " ".join(paragraphs[100:130])]


def _llm_ref(flag, folder, **kwargs):
    return flag.FlagLLMModel(str(folder), use_fp16=False, devices="cpu", batch_size=8, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_unknown_decoder_folder_gets_last_token_pooling(flag, decoders, texts, arch):
    folder = decoders[arch]
    ours = Embedder(
        folder, precision="fp32", query_instruction=TASK, query_instruction_format="Instruct: {}\nQuery: {}"
    )
    assert ours.spec.architecture == "decoder" and not ours.spec.registered
    assert ours.pooling == "last_token"
    ref = _llm_ref(flag, folder, query_instruction_for_retrieval=TASK)

    docs = ours.encode_documents(texts)
    np.testing.assert_allclose(docs, ref.encode_corpus(texts), atol=ATOL, rtol=0)
    np.testing.assert_allclose(ours.encode_queries(texts), ref.encode_queries(texts), atol=ATOL, rtol=0)
    # Distinct texts give distinct vectors (CLS on a decoder would give one vector for all: <s>'s state).
    sims = docs @ docs.T
    assert sims[~np.eye(len(texts), dtype=bool)].max() < 0.9999


def test_cls_on_a_decoder_only_when_asked(decoders, texts):
    forced = Embedder(decoders["qwen2"], precision="fp32", pooling="cls")
    assert forced.pooling == "cls"
    vectors = forced.encode_documents(texts[:5])
    np.testing.assert_allclose(vectors, np.broadcast_to(vectors[0], vectors.shape), atol=1e-6)  # the <s> state


def test_default_precision_stays_close_to_fp32(decoders, texts):
    fp32 = Embedder(decoders["qwen2"], precision="fp32").encode_documents(texts)
    default = Embedder(decoders["qwen2"]).encode_documents(texts)
    cos = np.sum(fp32 * default, axis=1)
    assert default.dtype == np.float32 and cos.min() > 0.995


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model_type": "bert", "architectures": ["BertModel"]}, "encoder"),
        ({"model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"]}, "encoder"),
        ({"model_type": "modernbert"}, "encoder"),
        ({"model_type": "qwen2", "architectures": ["Qwen2Model"]}, "decoder"),
        ({"model_type": "gemma2", "architectures": ["Gemma2Model"]}, "decoder"),
        ({"model_type": "my-custom", "architectures": ["MyCustomForCausalLM"]}, "decoder"),
        ({"model_type": "bert", "is_decoder": True}, "decoder"),
    ],
)
def test_folder_architecture_from_config(tmp_path, config, expected):
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert folder_architecture(tmp_path) == expected


def _icl_ref(flag, folder, **kwargs):
    return flag.FlagICLModel(str(folder), use_fp16=False, devices="cpu", batch_size=8, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("examples", [None, EXAMPLES], ids=["no-examples", "examples"])
def test_icl_queries_and_documents_match_flag_icl_model(flag, icl_folder, texts, examples):
    ours = Embedder(icl_folder, precision="fp32", examples=examples)
    assert ours.spec.icl and ours.query_instruction == WEB_SEARCH_TASK
    ref = _icl_ref(flag, icl_folder, query_instruction_for_retrieval=WEB_SEARCH_TASK, examples_for_task=examples)
    queries = ours.encode_queries(texts)
    np.testing.assert_allclose(queries, ref.encode_queries(texts), atol=ATOL, rtol=0)
    np.testing.assert_allclose(ours.encode_documents(texts), ref.encode_corpus(texts), atol=ATOL, rtol=0)
    np.testing.assert_allclose(ours.encode_queries(texts[0]), ref.encode_queries(texts[0]), atol=ATOL, rtol=0)
    # The ICL format really differs from the plain LLM-embedder format.
    plain = _llm_ref(
        flag,
        icl_folder,
        query_instruction_for_retrieval=WEB_SEARCH_TASK,
        query_instruction_format="<instruct>{}\n<query>{}",
    ).encode_queries(texts)
    assert np.abs(queries - plain).max() > 1e-2


@pytest.mark.slow
def test_icl_examples_change_queries_and_custom_format(flag, icl_folder, texts):
    fmt = "Task: {}\nQ: {}\nA: {}"
    ours = Embedder(
        icl_folder,
        precision="fp32",
        examples=EXAMPLES,
        examples_instruction_format=fmt,
        query_instruction="Find the answer.",
        max_length=32,
    )
    ref = _icl_ref(
        flag,
        icl_folder,
        query_instruction_for_retrieval="Find the answer.",
        examples_for_task=EXAMPLES,
        examples_instruction_format=fmt,
        query_max_length=32,
    )
    got = ours.encode_queries(texts)
    np.testing.assert_allclose(got, ref.encode_queries(texts), atol=ATOL, rtol=0)
    without = Embedder(icl_folder, precision="fp32", query_instruction="Find the answer.", max_length=32)
    assert np.abs(got - without.encode_queries(texts)).max() > 1e-2
    assert ours.examples[1]["instruct"] == "Find the answer."  # missing instruct: the query instruction


def test_icl_truncation_warns_once_or_raises(icl_folder, paragraphs, caplog):
    long_query = " ".join(paragraphs[:20])
    ours = Embedder(icl_folder, precision="fp32", max_length=128)
    with caplog.at_level(logging.WARNING, logger="bge_core.truncation"):
        ours.encode_queries(["short", long_query])
        ours.encode_queries([long_query])
    messages = [r.getMessage() for r in caplog.records if r.name == "bge_core.truncation"]
    assert len(messages) == 1 and "1 of 2 queries" in messages[0] and "max_length=128" in messages[0]
    strict = Embedder(icl_folder, precision="fp32", max_length=128, truncation=False)
    with pytest.raises(TextTooLongError, match=r"texts\[1\]"):
        strict.encode_queries(["short", long_query])


@pytest.mark.parametrize(
    ("examples", "fragment"),
    [
        ("not a list", "examples must be a list"),
        ([["query", "response"]], r"examples\[0\] must be a dict"),
        ([{"query": "q", "response": "r", "answer": "a"}], "unknown keys"),
        ([{"query": "q"}], r"examples\[0\]\['response'\] must be a string"),
        ([{"query": 3, "response": "r"}], r"examples\[0\]\['query'\] must be a string"),
    ],
)
def test_icl_examples_are_validated(icl_folder, examples, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Embedder(icl_folder, precision="fp32", examples=examples)


def test_examples_need_an_icl_model(decoders, models):
    for folder in (decoders["mistral"], models.dense):
        with pytest.raises(ConfigError, match="bge-en-icl"):
            Embedder(folder, precision="fp32", examples=EXAMPLES)


@pytest.mark.parity
@pytest.mark.slow
def test_left_padding_tokenizer_still_matches(flag, decoders, texts, tmp_path):
    """Qwen3-Embedding's tokenizer pads on the left; FlagLLMModel then pools position -1. bge_core
    pads on the right; with rotary positions both give the same vectors."""
    import shutil

    folder = tmp_path / "left-padded-qwen3"
    shutil.copytree(decoders["qwen3"], folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["padding_side"] = "left"
    config_path.write_text(json.dumps(config))
    ref = _llm_ref(flag, folder)
    assert ref.tokenizer.padding_side == "left"
    got = Embedder(folder, precision="fp32").encode_documents(texts)
    np.testing.assert_allclose(got, ref.encode_corpus(texts), atol=ATOL, rtol=0)

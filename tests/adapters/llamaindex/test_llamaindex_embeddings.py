"""llama_index.embeddings.bge.BGEEmbedding: LlamaIndex's BaseEmbedding over bge_core.Embedder."""

from __future__ import annotations

import asyncio
import json
import pickle

import numpy as np
import pytest
from _llamaindex_support import QUESTIONS, ConcurrencyProbe, collected_events
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import ValidationError
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent
from llama_index.core.schema import TransformComponent
from llama_index.embeddings.bge import BGEEmbedding

from bge_core import ConfigError, Embedder, InputTypeError, ModelNotFoundError, lookup
from bge_rag.testing import build_dense_model

INSTRUCTION = "Represent this sentence for searching relevant passages: "
OPTIONS = {"precision": "fp32", "max_length": 64}


@pytest.fixture(scope="module")
def reference(models) -> Embedder:
    return Embedder(models.dense, **OPTIONS)


@pytest.fixture(scope="module")
def embed(models) -> BGEEmbedding:
    return BGEEmbedding(str(models.dense), query_instruction=INSTRUCTION, **OPTIONS)


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return paragraphs[:12]


def as_floats(vectors) -> bool:
    return all(type(x) is float for v in vectors for x in v)


def test_subclasses_the_llamaindex_bases():
    assert issubclass(BGEEmbedding, BaseEmbedding) and issubclass(BGEEmbedding, TransformComponent)
    assert BGEEmbedding.class_name() == "BGEEmbedding"


def test_query_embedding_equals_encode_queries(embed, models):
    reference = Embedder(models.dense, query_instruction=INSTRUCTION, **OPTIONS)
    got = [embed.get_query_embedding(q) for q in QUESTIONS]
    assert as_floats(got)
    np.testing.assert_allclose(got, reference.encode_queries(list(QUESTIONS)), rtol=0, atol=1e-6)


def test_text_embeddings_equal_encode_documents(embed, reference, texts):
    expected = reference.encode_documents(texts)
    batch = embed.get_text_embedding_batch(texts)
    assert len(batch) == len(texts) and as_floats(batch)
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(embed.get_text_embedding(texts[3]), expected[3], rtol=0, atol=1e-5)


def test_async_methods_match_sync_and_run_one_batch_at_a_time(embed, texts, monkeypatch):
    original = BGEEmbedding._dense
    probe = ConcurrencyProbe(original)
    monkeypatch.setattr(BGEEmbedding, "_dense", lambda self, *args: probe(self, *args))
    small = embed.model_copy(update={"embed_batch_size": 4})

    async def run():
        return await asyncio.gather(
            small.aget_text_embedding_batch(texts),
            small.aget_query_embedding(QUESTIONS[0]),
            small.aget_text_embedding(texts[0]),
        )

    batch, query, text = asyncio.run(run())
    assert probe.calls == 3 + 2 and probe.most == 1
    np.testing.assert_allclose(batch, embed.get_text_embedding_batch(texts), rtol=0, atol=1e-5)
    np.testing.assert_allclose(query, embed.get_query_embedding(QUESTIONS[0]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(text, embed.get_text_embedding(texts[0]), rtol=0, atol=1e-6)


def test_embed_batch_size_is_honoured(embed, texts):
    small = embed.model_copy(update={"embed_batch_size": 5})
    with collected_events() as events:
        small.get_text_embedding_batch(texts)
    sizes = [len(e.chunks) for e in events if isinstance(e, EmbeddingEndEvent)]
    assert sizes == [5, 5, 2]


def test_progress_comes_from_the_base_class(embed, texts, capsys):
    embed.get_text_embedding_batch(texts[:3], show_progress=True)
    assert "Generating embeddings" in capsys.readouterr().err


def test_query_instruction_none_is_the_registry_default_and_empty_is_none(models, tmp_path, reference):
    # A folder named like a registry model gets that model's settings (here the real MiniLM
    # weights under bge-small-en-v1.5's name, so the registry's instruction applies).
    folder = build_dense_model(tmp_path / "bge-small-en-v1.5")
    registry = lookup("BAAI/bge-small-en-v1.5").query_instruction
    assert registry
    query = QUESTIONS[0]
    default = BGEEmbedding(str(folder), **OPTIONS)
    none = BGEEmbedding(str(folder), query_instruction="", **OPTIONS)
    np.testing.assert_allclose(
        default.get_query_embedding(query), reference.encode_documents(registry + query), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(none.get_query_embedding(query), reference.encode_documents(query), rtol=0, atol=1e-6)
    # The resolved instruction is never written back (LlamaIndex's HuggingFaceEmbedding does that).
    assert default.query_instruction is None and default.to_dict()["query_instruction"] is None
    assert BGEEmbedding.from_dict(none.to_dict()).query_instruction == ""


def test_to_dict_round_trips_without_the_model(embed):
    data = embed.to_dict()
    assert data["class_name"] == "BGEEmbedding" and data["query_instruction"] == INSTRUCTION
    json.dumps(data)  # plain JSON: no model object inside
    again = BGEEmbedding.from_dict(data)
    assert again.to_dict() == data
    assert again.engine is embed.engine  # identical configurations share one engine


def test_pickle_leaves_the_model_out_and_reloads_on_first_use(embed):
    payload = pickle.dumps(embed)
    assert len(payload) < 10_000
    copy = pickle.loads(payload)
    assert copy._slot.loaded is False
    assert copy.get_query_embedding(QUESTIONS[1]) == embed.get_query_embedding(QUESTIONS[1])
    assert copy.engine is embed.engine


def test_changed_settings_take_effect(embed, texts):
    copy = embed.model_copy()
    copy.truncate_dim = 64
    assert len(copy.get_text_embedding(texts[0])) == 64 and len(embed.get_text_embedding(texts[0])) == 384


def test_empty_and_bad_inputs(embed):
    assert embed.get_text_embedding_batch([]) == []
    with pytest.raises(InputTypeError):
        embed.get_query_embedding(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="model"):
        BGEEmbedding(model="BAAI/bge-small-en-v1.5")  # a typo is an error, not a silent default
    with pytest.raises(ModelNotFoundError):
        BGEEmbedding("BAAI/no-such-model")


def test_defaults_run_bf16_here_within_a_bound_of_fp32(models, texts):
    # precision="auto" is what users get: bf16 on this CPU (native bf16), else fp32.
    default = BGEEmbedding(str(models.dense))
    exact = BGEEmbedding(str(models.dense), precision="fp32")
    assert default.precision == "auto" and str(default.engine.dtype) in ("torch.bfloat16", "torch.float32")
    got, want = np.array(default.get_text_embedding_batch(texts)), np.array(exact.get_text_embedding_batch(texts))
    query = np.array(default.get_query_embedding(QUESTIONS[0]))
    # Measured on this fixture: cosine >= 0.99994, components within 0.006 (benchmarks/bf16_deviation.py).
    assert (got * want).sum(axis=1).min() >= 0.9995
    assert np.abs(got - want).max() <= 0.02
    assert query @ np.array(exact.get_query_embedding(QUESTIONS[0])) >= 0.9995


def test_document_instruction_is_put_before_documents_only(models, reference, texts):
    embed = BGEEmbedding(str(models.dense), document_instruction="passage: ", query_instruction="", **OPTIONS)
    np.testing.assert_allclose(
        embed.get_text_embedding_batch(texts[:3]),
        reference.encode_documents(["passage: " + t for t in texts[:3]]),
        rtol=0,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        embed.get_query_embedding(QUESTIONS[0]), reference.encode_documents(QUESTIONS[0]), rtol=0, atol=1e-6
    )
    again = BGEEmbedding.from_dict(embed.to_dict())
    assert again.document_instruction == "passage: " and again.to_dict() == embed.to_dict()


ICL_EXAMPLES = [
    {
        "instruct": "Given a question, retrieve the passage that answers it.",
        "query": "what is a list?",
        "response": "A list is a mutable sequence.",
    },
    {"query": "how do I open a file?", "response": "Use the built-in open()."},
]


def test_icl_examples_reach_the_engine_and_round_trip(tmp_path):
    from bge_rag.testing import build_decoder_model

    folder = build_decoder_model(tmp_path / "bge-en-icl", "mistral")  # the name gives the ICL format
    fmt = "<instruct>{}\n<query>{}\n<response>{}"
    embed = BGEEmbedding(str(folder), examples=ICL_EXAMPLES, examples_instruction_format=fmt, precision="fp32")
    reference = Embedder(folder, examples=ICL_EXAMPLES, examples_instruction_format=fmt, precision="fp32")
    plain = Embedder(folder, precision="fp32")
    query = QUESTIONS[1]
    np.testing.assert_allclose(embed.get_query_embedding(query), reference.encode_queries(query), rtol=0, atol=1e-6)
    assert not np.allclose(reference.encode_queries(query), plain.encode_queries(query), atol=1e-3)
    data = embed.to_dict()
    assert data["examples"] == ICL_EXAMPLES and data["examples_instruction_format"] == fmt
    json.dumps(data)
    again = BGEEmbedding.from_dict(data)
    assert again.to_dict() == data and again.get_query_embedding(query) == embed.get_query_embedding(query)


def test_examples_on_a_model_without_icl_are_refused(models):
    with pytest.raises(ConfigError, match="examples"):
        BGEEmbedding(str(models.dense), examples=ICL_EXAMPLES, **OPTIONS)

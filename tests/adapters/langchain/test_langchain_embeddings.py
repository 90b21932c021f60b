"""BGEEmbeddings: LangChain's standard suites, parity with bge_core.Embedder, instructions, async."""

from __future__ import annotations

import asyncio

import pytest
from _langchain_support import MAX_LENGTH, pending_while_model_busy
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import ValidationError

from bge_core import ConfigError, Embedder, InputTypeError
from bge_core.registry import EN_INSTRUCTION, ZH_INSTRUCTION
from langchain_bge import BGEEmbeddings


class _FixtureParams:
    """The standard suites' model parameters, pointing at the session's fixture model."""

    @pytest.fixture(autouse=True)
    def _fixture_model(self, registry_folders):  # noqa: F811
        self._folder = registry_folders.en

    @property
    def embeddings_class(self) -> type[BGEEmbeddings]:
        return BGEEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_name": self._folder, "precision": "fp32", "max_length": MAX_LENGTH}


class TestBGEEmbeddingsStandardUnit(_FixtureParams, EmbeddingsUnitTests):
    pass


class TestBGEEmbeddingsStandardIntegration(_FixtureParams, EmbeddingsIntegrationTests):
    pass


@pytest.fixture(scope="module")
def en(registry_folders):  # noqa: F811
    return BGEEmbeddings(model_name=registry_folders.en, precision="fp32", max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def reference(registry_folders):  # noqa: F811
    """An engine of its own (not the adapter's shared one) computing the expected outputs."""
    return Embedder(registry_folders.en, precision="fp32", max_length=MAX_LENGTH)


def test_embed_documents_equals_encode_documents(en, reference, paragraphs):
    texts = paragraphs[:16]
    got = en.embed_documents(texts)
    assert got == reference.encode_documents(texts).tolist()
    assert all(type(x) is float for row in got for x in row)


def test_embed_query_equals_encode_queries_with_the_instruction(en, reference, paragraphs):
    queries = ["how do I catch an exception?", paragraphs[5][:200], "什么是向量检索"]
    for query in queries:
        got = en.embed_query(query)
        assert got == reference.encode_queries(query).tolist()
        assert all(type(x) is float for x in got)
        # The instruction goes before queries only.
        assert got == reference.encode_documents(EN_INSTRUCTION + query).tolist()
        assert got != en.embed_documents([query])[0]


def test_query_instruction_comes_from_the_registry(registry_folders):  # noqa: F811
    common = {"precision": "fp32", "max_length": MAX_LENGTH}
    assert BGEEmbeddings(model_name=registry_folders.en, **common).query_instruction == EN_INSTRUCTION
    assert BGEEmbeddings(model_name=registry_folders.zh, **common).query_instruction == ZH_INSTRUCTION
    assert BGEEmbeddings(model_name=registry_folders.m3, **common).query_instruction == ""


@pytest.mark.parametrize("instruction", ["", "query: "])
def test_query_instruction_can_be_set_or_cleared(registry_folders, reference, instruction):  # noqa: F811
    emb = BGEEmbeddings(
        model_name=registry_folders.en, precision="fp32", max_length=MAX_LENGTH, query_instruction=instruction
    )
    assert emb.query_instruction == instruction
    query = "where do pandas live?"
    assert emb.embed_query(query) == reference.encode_documents(instruction + query).tolist()


def test_m3_queries_get_no_instruction(registry_folders):  # noqa: F811
    m3 = BGEEmbeddings(model_name=registry_folders.m3, precision="fp32", max_length=MAX_LENGTH)
    assert m3.embed_query("what is BGE-M3?") == m3.embed_documents(["what is BGE-M3?"])[0]


def test_identical_settings_share_one_model(registry_folders):  # noqa: F811
    a = BGEEmbeddings(model_name=registry_folders.en, precision="fp32", max_length=MAX_LENGTH)
    b = BGEEmbeddings(model=registry_folders.en, max_length=MAX_LENGTH, precision="fp32")
    c = BGEEmbeddings(model_name=registry_folders.en, precision="fp32", max_length=MAX_LENGTH - 1)
    assert a._engine is b._engine and a._engine is not c._engine
    assert a == b and a != c


def test_settings_serialize_without_the_model_and_round_trip(en):
    dumped = en.model_dump()
    assert dumped == {
        "model_name": en.model_name,
        "device": None,
        "precision": "fp32",
        "batch_size": en.batch_size,
        "max_length": MAX_LENGTH,
        "query_instruction": EN_INSTRUCTION,
        "normalize": True,
        "show_progress": False,
        "document_instruction": "",
        "pooling": None,
        "truncate_dim": None,
        "examples": None,
        "examples_instruction_format": None,
        "trust_remote_code": None,
        "cache_folder": None,
        "revision": None,
        "token": None,
    }
    again = BGEEmbeddings(**dumped)
    assert again.embed_query("a question") == en.embed_query("a question")


def test_settings_are_fixed_after_creation(en):
    with pytest.raises(ValidationError):
        en.batch_size = 4  # type: ignore[misc]


def test_unknown_and_invalid_settings_are_rejected(registry_folders):  # noqa: F811
    with pytest.raises(ValidationError, match="model_kwargs"):
        BGEEmbeddings(model_name=registry_folders.en, model_kwargs={"device": "cpu"})
    with pytest.raises(ConfigError, match="Valid precisions"):
        BGEEmbeddings(model_name=registry_folders.en, precision="fp8")
    with pytest.raises(ConfigError, match="batch_size"):
        BGEEmbeddings(model_name=registry_folders.en, batch_size=0)


def test_normalize_false_keeps_raw_vectors(registry_folders, paragraphs):  # noqa: F811
    raw = BGEEmbeddings(model_name=registry_folders.en, precision="fp32", max_length=MAX_LENGTH, normalize=False)
    reference = Embedder(registry_folders.en, precision="fp32", max_length=MAX_LENGTH, normalize=False)
    assert raw.embed_documents(paragraphs[:4]) == reference.encode_documents(paragraphs[:4]).tolist()
    assert abs(sum(x * x for x in raw.embed_documents(paragraphs[:1])[0]) - 1.0) > 1e-3


def test_empty_document_list_gives_empty_list(en):
    assert en.embed_documents([]) == []
    assert asyncio.run(en.aembed_documents([])) == []


@pytest.mark.parametrize(
    ("call", "bad", "message"),
    [
        ("embed_documents", None, "texts must be a list of strings, got None"),
        ("embed_documents", "one text", "texts must be a list of strings, got str"),
        ("embed_documents", ["ok", None], r"texts\[1\] is None"),
        ("embed_documents", ["ok", 3], r"texts\[1\] is int"),
        ("embed_query", None, "text must be a string, got None"),
        ("embed_query", ["a list"], "text must be a string, got list"),
    ],
)
def test_bad_input_raises_a_clear_error(en, call, bad, message):
    with pytest.raises(InputTypeError, match=message):
        getattr(en, call)(bad)
    with pytest.raises(InputTypeError, match=message):
        asyncio.run(getattr(en, "a" + call)(bad))


def test_inputs_are_not_mutated(en, paragraphs):
    texts = paragraphs[:3]
    copy = list(texts)
    en.embed_documents(texts)
    assert texts == copy


@pytest.mark.slow
async def test_async_equals_sync(en, paragraphs):
    texts = [paragraphs[i : i + 3] for i in range(0, 18, 3)]
    queries = [p[:80] for p in paragraphs[:6]]
    got_docs = await asyncio.gather(*(en.aembed_documents(t) for t in texts))
    got_queries = await asyncio.gather(*(en.aembed_query(q) for q in queries))
    assert got_docs == [en.embed_documents(t) for t in texts]
    assert got_queries == [en.embed_query(q) for q in queries]


async def test_async_calls_leave_the_loop_free_and_queue_on_one_thread(en, paragraphs):
    queries = [p[:60] for p in paragraphs[:16]]
    results, done_while_locked, ticks, threads_added = await pending_while_model_busy(
        en._engine._backbone.lock, lambda: [en.aembed_query(q) for q in queries]
    )
    assert done_while_locked == 0  # nothing ran on the event loop's thread
    assert ticks == 20  # the loop kept turning while the model was busy
    assert threads_added <= 1  # sixteen waiting calls, one worker thread
    assert results == [en.embed_query(q) for q in queries]


def test_is_a_langchain_embeddings(en):
    assert isinstance(en, Embeddings)
    assert en.dimension == len(en.embed_query("x")) == 384


@pytest.mark.slow
@pytest.mark.parametrize(
    "option",
    [
        {"truncate_dim": 64},
        {"pooling": "mean"},
        {"document_instruction": "passage: "},
        {"normalize": False, "truncate_dim": 32},
    ],
    ids=["truncate_dim", "pooling", "document_instruction", "raw-truncated"],
)
def test_engine_options_give_the_engines_outputs(registry_folders, paragraphs, option):  # noqa: F811
    emb = BGEEmbeddings(model_name=registry_folders.en, **option, precision="fp32", max_length=MAX_LENGTH)
    engine = Embedder(registry_folders.en, **option, precision="fp32", max_length=MAX_LENGTH)
    assert emb.embed_documents(paragraphs[:4]) == engine.encode_documents(paragraphs[:4]).tolist()
    assert emb.embed_query("what is a list?") == engine.encode_queries("what is a list?").tolist()
    if "document_instruction" in option:
        assert emb.document_instruction == "passage: "
        plain = Embedder(registry_folders.en, precision="fp32", max_length=MAX_LENGTH)
        assert emb.embed_documents(["x"]) == plain.encode_documents(["passage: x"]).tolist()


def test_icl_examples_reach_the_engine(tmp_path_factory, registry_folders):  # noqa: F811
    from bge_rag.testing import build_decoder_model

    folder = str(build_decoder_model(tmp_path_factory.mktemp("icl") / "bge-en-icl", "mistral"))
    examples = [
        {
            "instruct": "Given a question, retrieve passages that answer it.",
            "query": "what is a panda?",
            "response": "The giant panda is a bear native to China.",
        }
    ]
    emb = BGEEmbeddings(model_name=folder, examples=examples, precision="fp32")
    engine = Embedder(folder, examples=examples, precision="fp32")
    plain = BGEEmbeddings(model_name=folder, precision="fp32")
    query = "where do pandas live?"
    assert emb.embed_query(query) == engine.encode_queries(query).tolist() != plain.embed_query(query)
    assert emb.embed_documents(["Pandas live in bamboo forests."]) == plain.embed_documents(
        ["Pandas live in bamboo forests."]
    )  # examples go before queries only
    assert emb.model_copy(update={"examples": None}).embed_query(query) == plain.embed_query(query)
    with pytest.raises(ConfigError, match="bge-en-icl"):
        BGEEmbeddings(model_name=registry_folders.en, examples=examples)


@pytest.mark.slow
def test_defaults_run_bf16_within_a_cosine_of_fp32(registry_folders, en, paragraphs):  # noqa: F811
    """precision="auto" (bf16 on CPUs with native bf16, as here) stays within min cosine 0.999 of fp32."""
    import numpy as np
    import torch

    from bge_core.devices import cpu_supports_bf16, resolve_device, resolve_precision

    default = BGEEmbeddings(model_name=registry_folders.en, max_length=MAX_LENGTH)
    assert default.precision == "auto"
    assert default._engine.dtype == resolve_precision("auto", resolve_device(None))
    if cpu_supports_bf16() and not torch.cuda.is_available():
        assert default._engine.dtype == torch.bfloat16
    texts = paragraphs[:48]
    for got, want in (
        (default.embed_documents(texts), en.embed_documents(texts)),
        ([default.embed_query(t[:80]) for t in texts[:8]], [en.embed_query(t[:80]) for t in texts[:8]]),
    ):
        a, b = np.asarray(got), np.asarray(want)
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.999
        assert not np.array_equal(a, b) or default._engine.dtype == torch.float32  # bf16 really ran

"""All five LangChain classes pickle, copy, deep-copy and ``model_copy`` like HuggingFaceEmbeddings,
and the engine always follows the fields (including in a fresh process that unpickles them)."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from _langchain_support import MAX_LENGTH
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import ValidationError

from bge_core.registry import EN_INSTRUCTION, ZH_INSTRUCTION
from langchain_bge import BGEEmbeddings, BGEM3Retriever, BGEReranker, BGERerankRetriever, BGESparseEmbeddings

FP32 = {"precision": "fp32", "max_length": MAX_LENGTH}
QUERY = "How do I catch an exception?"


@pytest.fixture(scope="module")
def texts(paragraphs):
    return paragraphs[30:40]


@pytest.fixture(scope="module")
def objects(models, registry_folders, texts):  # noqa: F811
    """One object of each class, with settings away from the defaults."""
    embeddings = BGEEmbeddings(model_name=registry_folders.en, query_instruction="query: ", normalize=False, **FP32)
    reranker = BGEReranker(model_name=str(models.reranker), normalize=False, top_n=2, **FP32)
    store = InMemoryVectorStore.from_texts(texts, BGEEmbeddings(model_name=registry_folders.en, **FP32))
    return {
        "embeddings": embeddings,
        "sparse": BGESparseEmbeddings(model_name=str(models.m3), **FP32),
        "reranker": reranker,
        "rerank_retriever": BGERerankRetriever(
            base_retriever=store.as_retriever(search_kwargs={"k": 6}), reranker=reranker
        ),
        "m3_retriever": BGEM3Retriever.from_texts(texts, model_name=str(models.m3), k=3, **FP32),
    }


def _docs(documents) -> list:
    return [[d.page_content, d.metadata["relevance_score"]] for d in documents]


def outputs(name: str, obj, texts: list[str]):
    """What each class computes, as plain (JSON-able) Python values."""
    if name == "embeddings":
        return [obj.embed_documents(texts[:3]), obj.embed_query(QUERY)]
    if name == "sparse":
        return [[v.to_dict() for v in obj.embed_documents(texts[:3])], obj.embed_query(QUERY).to_dict()]
    if name == "reranker":
        return [
            obj.score([(QUERY, t) for t in texts[:4]]),
            _docs(obj.compress_documents([Document(page_content=t) for t in texts[:4]], QUERY)),
        ]
    return _docs(obj.invoke(QUERY))


@pytest.fixture(scope="module")
def expected(objects, texts):
    return {name: outputs(name, obj, texts) for name, obj in objects.items()}


ROUND_TRIPS = {
    "pickle": lambda o: pickle.loads(pickle.dumps(o)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "model_copy": lambda o: o.model_copy(),
    "model_copy_deep": lambda o: o.model_copy(deep=True),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize("name", ["embeddings", "sparse", "reranker", "rerank_retriever", "m3_retriever"])
def test_copies_give_the_originals_outputs(objects, expected, texts, name, how):
    original = objects[name]
    again = ROUND_TRIPS[how](original)
    assert again is not original
    if name != "rerank_retriever":  # its base retriever (a vector store's) compares by identity
        assert again == original
    assert outputs(name, again, texts) == expected[name]


# Unpickles the objects in a fresh interpreter, checks torch loads only on first use, prints the outputs.
_FRESH = """
import faulthandler, json, pickle, sys
faulthandler.enable()
sys.path.insert(0, {tests!r})
with open(sys.argv[1], "rb") as f:
    objects = pickle.load(f)
assert "torch" not in sys.modules, "unpickling loaded torch"
from test_langchain_copies import outputs
from langchain_milvus.utils.sparse import BaseSparseEmbedding
assert isinstance(objects["sparse"], BaseSparseEmbedding)  # registered on unpickling, no manual step
texts = json.loads(sys.argv[2])
print(json.dumps({{name: outputs(name, obj, texts) for name, obj in objects.items()}}))
"""


@pytest.mark.slow
def test_unpickled_in_a_fresh_process_gives_the_same_outputs(objects, expected, texts, tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps(objects))
    code = _FRESH.format(tests=str(Path(__file__).parent))
    result = subprocess.run(
        [sys.executable, "-c", code, str(path), json.dumps(texts)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got == json.loads(json.dumps(expected))
    # The originals are untouched by all the copies made above.
    assert {name: outputs(name, obj, texts) for name, obj in objects.items()} == expected


def test_model_copy_update_follows_the_fields_for_embeddings(objects, registry_folders, texts):  # noqa: F811
    original = objects["embeddings"]
    before = outputs("embeddings", original, texts)
    for update in ({"normalize": True}, {"query_instruction": "", "truncate_dim": 32}):
        changed = original.model_copy(update=update)
        fresh = BGEEmbeddings(**{**original._constructor_data(), **update})
        assert outputs("embeddings", changed, texts) == outputs("embeddings", fresh, texts) != before
        assert changed.embed_query(QUERY) != original.embed_query(QUERY)
        assert outputs("embeddings", original, texts) == before
        assert original._engine is not changed._engine
    # Another model: the registry instruction of the new model, not the old one's.
    en = BGEEmbeddings(model_name=registry_folders.en, **FP32)
    zh = en.model_copy(update={"model": registry_folders.zh})
    assert (en.query_instruction, zh.query_instruction) == (EN_INSTRUCTION, ZH_INSTRUCTION)
    assert zh.embed_query(QUERY) == BGEEmbeddings(model_name=registry_folders.zh, **FP32).embed_query(QUERY)
    with pytest.raises(ValidationError, match="normalise"):
        en.model_copy(update={"normalise": True})


@pytest.mark.slow
def test_model_copy_update_follows_the_fields_for_the_others(objects, models, texts):
    reranker = objects["reranker"]
    sigmoid = reranker.model_copy(update={"normalize": True, "top_n": 3})
    fresh = BGEReranker(model_name=str(models.reranker), normalize=True, top_n=3, **FP32)
    assert outputs("reranker", sigmoid, texts) == outputs("reranker", fresh, texts)
    assert all(0 < s < 1 for s in sigmoid.score([(QUERY, t) for t in texts]))
    assert outputs("reranker", reranker, texts) != outputs("reranker", sigmoid, texts)

    sparse = objects["sparse"]
    # At 16 tokens the fixture's random sparse head gives texts[0] no weight: "keep" returns it empty.
    update = {"output_format": "milvus", "max_length": 16, "empty_documents": "keep"}
    as_dicts = sparse.model_copy(update=update)
    fresh_sparse = BGESparseEmbeddings(model_name=str(models.m3), precision="fp32", **update)
    assert as_dicts.embed_documents(texts[:3]) == fresh_sparse.embed_documents(texts[:3])
    assert {} in as_dicts.embed_documents(texts[:3])
    assert type(as_dicts.embed_query(QUERY)) is dict

    retriever = objects["m3_retriever"]
    new_texts = [
        "Pandas eat bamboo in the mountains of Sichuan.",
        "Exceptions are caught with try and except.",
        "The kettle boils water for tea.",
    ]
    moved = retriever.model_copy(update={"docs": [Document(page_content=t) for t in new_texts]})
    fresh_m3 = BGEM3Retriever.from_texts(new_texts, model_name=str(models.m3), k=3, **FP32)
    assert _docs(moved.invoke(QUERY)) == _docs(fresh_m3.invoke(QUERY))
    assert {d.page_content for d in moved.invoke(QUERY)} == set(new_texts)
    reweighted = retriever.model_copy(update={"weights": (1.0, 0.0, 0.0), "fusion": "rrf"})
    fresh_rw = BGEM3Retriever.from_texts(
        texts, model_name=str(models.m3), k=3, weights=(1.0, 0.0, 0.0), fusion="rrf", **FP32
    )
    assert _docs(reweighted.invoke(QUERY)) == _docs(fresh_rw.invoke(QUERY))
    assert _docs(retriever.invoke(QUERY)) == outputs("m3_retriever", retriever, texts)

    rerank_retriever = objects["rerank_retriever"]
    swapped = rerank_retriever.model_copy(update={"reranker": fresh})
    assert all(0 < score < 1 for _, score in _docs(swapped.invoke(QUERY)))
    assert len(swapped.invoke(QUERY)) == 3


def test_documents_changed_in_place_are_encoded_again(models):
    docs = [Document(page_content=t) for t in ("alpha beta", "gamma delta", "try and except")]
    retriever = BGEM3Retriever(docs=docs, model_name=str(models.m3), k=3, **FP32)
    retriever.docs[0].page_content = "Exceptions are caught with try and except."
    fresh = BGEM3Retriever(
        docs=[Document(page_content=d.page_content) for d in docs], model_name=str(models.m3), k=3, **FP32
    )
    assert _docs(retriever.invoke(QUERY)) == _docs(fresh.invoke(QUERY))


def test_token_is_a_secret_and_reaches_the_engine(monkeypatch, registry_folders):  # noqa: F811
    import bge_core

    seen = {}
    real = bge_core.shared_embedder

    def recording(model, **options):
        seen.update(options)
        return real(model, **{k: v for k, v in options.items() if k not in ("cache_dir", "revision", "token")})

    monkeypatch.setattr(bge_core, "shared_embedder", recording)
    emb = BGEEmbeddings(
        model_name=registry_folders.en,
        token="hf_secret",
        revision="v2",
        cache_folder="/tmp/hf",
        trust_remote_code=False,
        **FP32,
    )
    assert (seen["token"], seen["revision"], seen["cache_dir"], seen["trust_remote_code"]) == (
        "hf_secret",
        "v2",
        "/tmp/hf",
        False,
    )
    assert "hf_secret" not in repr(emb) and "hf_secret" not in str(emb.model_dump())
    assert pickle.loads(pickle.dumps(emb)).token.get_secret_value() == "hf_secret"

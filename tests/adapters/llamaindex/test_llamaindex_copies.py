"""LlamaIndex components used as users use pydantic objects: positional models, copies, pickles,
``model_copy(update=...)``. A copy always computes with its own fields, compared here with a
freshly built object; the original keeps its engine (no swapping of one shared slot)."""

from __future__ import annotations

import copy
import pickle

import pytest
from _llamaindex_support import QUESTIONS, scored_nodes
from llama_index.embeddings.bge import BGEEmbedding, BGESparseEmbedding
from llama_index.postprocessor.bge_rerank import BGEM3Rerank, BGERerank

from bge_core import ConfigError

OPTIONS = {"precision": "fp32", "max_length": 32}
QUERY = QUESTIONS[0]

COPIES = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "model_copy": lambda obj: obj.model_copy(),
}


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return [" ".join(p.split()[:40]) for p in paragraphs[40:43]]


def dense_outputs(embed: BGEEmbedding, texts: list[str]) -> tuple:
    return embed.get_query_embedding(QUERY), embed.get_text_embedding_batch(texts)


def sparse_outputs(embed: BGESparseEmbedding, texts: list[str]) -> tuple:
    return embed.get_query_embedding(QUERY), embed.get_text_embedding_batch(texts), embed.sparse_doc_fn(texts)


def rerank_outputs(rerank, texts: list[str]) -> list:
    out = rerank.postprocess_nodes(scored_nodes(texts), query_str=QUERY)
    return [(n.node.node_id, n.score) for n in out]


# (class, fixture model attribute, how to read outputs, updates to try one at a time)
CASES = {
    "BGEEmbedding": (
        BGEEmbedding,
        "dense",
        dense_outputs,
        [
            {"normalize": False},
            {"truncate_dim": 64},
            {"query_instruction": "Question: "},
            {"document_instruction": "Passage: "},
            {"pooling": "mean"},
        ],
    ),
    "BGESparseEmbedding": (
        BGESparseEmbedding,
        "m3",
        sparse_outputs,
        [
            {"max_length": 8},
            {"query_instruction": "Question: "},
        ],
    ),
    "BGERerank": (BGERerank, "reranker", rerank_outputs, [{"normalize": True}, {"top_n": 1}]),
    "BGEM3Rerank": (BGEM3Rerank, "m3", rerank_outputs, [{"weights": (0.0, 1.0, 0.0)}, {"max_length": 8}]),
}
UPDATES = [(name, i) for name, case in CASES.items() for i in range(len(case[3]))]


def build(name: str, models, **fields):
    cls, attr = CASES[name][:2]
    return cls(str(getattr(models, attr)), **{**OPTIONS, **fields})


@pytest.fixture(scope="module")
def originals(models) -> dict:
    return {name: build(name, models) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_model_is_accepted_positionally_and_by_keyword(models, name, originals):
    cls, attr = CASES[name][:2]
    field = "model" if cls in (BGERerank, BGEM3Rerank) else "model_name"
    keyword = cls(**{field: str(getattr(models, attr))}, **OPTIONS)
    assert getattr(originals[name], field) == getattr(keyword, field) == str(getattr(models, attr))
    assert keyword.engine is originals[name].engine


@pytest.mark.slow
@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("name", list(CASES))
def test_copies_compute_what_the_original_computes(originals, texts, name, how):
    original = originals[name]
    clone = COPIES[how](original)
    read = CASES[name][2]
    assert clone._slot is not original._slot
    assert read(clone, texts) == read(original, texts)
    assert clone.engine is original.engine  # same settings: one shared engine


@pytest.mark.slow
@pytest.mark.parametrize(("name", "i"), UPDATES, ids=[f"{n}-{list(CASES[n][3][i])[0]}-{i}" for n, i in UPDATES])
def test_model_copy_with_updates_follows_the_new_fields(models, originals, texts, name, i):
    original = originals[name]
    update = CASES[name][3][i]
    read = CASES[name][2]
    before_engine, before = original.engine, read(original, texts)

    changed = original.model_copy(update=update)
    expected = read(build(name, models, **update), texts)
    assert read(changed, texts) == expected
    assert expected != before  # the update matters for these inputs
    # Alternating calls: each object keeps its own engine (no reload, no swap).
    changed_engine = changed.engine
    assert read(original, texts) == before and original.engine is before_engine
    assert changed.engine is changed_engine
    # ... and the copy's copies keep the new fields.
    for how in ("pickle", "deepcopy"):
        assert read(COPIES[how](changed), texts) == expected, how


def test_attribute_assignment_on_a_copy_leaves_the_original(models, originals, texts):
    original = originals["BGEEmbedding"]
    clone = copy.copy(original)
    clone.truncate_dim = 32
    assert len(clone.get_text_embedding(texts[0])) == 32
    assert len(original.get_text_embedding(texts[0])) == 384 and original.truncate_dim is None


def test_model_copy_with_bad_weights_fails_at_use(originals, texts):
    # model_copy does not validate (pydantic): the bad value is refused when it would be used.
    broken = originals["BGEM3Rerank"].model_copy(update={"weights": (0.0, 0.0, 0.0)})
    with pytest.raises(ConfigError, match="weights"):
        broken.postprocess_nodes(scored_nodes(texts), query_str=QUERY)


def test_alternating_calls_on_a_changed_copy_load_nothing_again(originals, texts, monkeypatch):
    import llama_index.embeddings.bge.base as base

    original = originals["BGEEmbedding"]
    changed = original.model_copy(update={"truncate_dim": 64})
    changed.get_text_embedding(texts[0])  # its first load
    loads = []
    real = base.shared_embedder
    monkeypatch.setattr(base, "shared_embedder", lambda *a, **k: loads.append(a) or real(*a, **k))
    for _ in range(3):
        assert len(original.get_text_embedding(texts[0])) == 384
        assert len(changed.get_text_embedding(texts[0])) == 64
    assert loads == []  # each keeps its own engine: nothing is looked up or loaded again

"""The Haystack component contract of the BGE components, in Haystack's own test style:
serialization, light ``__init__``, idempotent and shared ``warm_up``, input checks."""

from __future__ import annotations

import inspect
import sys

import pytest
import yaml
from _haystack_support import FAST
from haystack import Document
from haystack.utils import ComponentDevice, Secret
from haystack.utils.device import Device, DeviceMap
from haystack_integrations.components.embedders.bge import (
    BGEDocumentEmbedder,
    BGESparseDocumentEmbedder,
    BGESparseTextEmbedder,
    BGETextEmbedder,
)
from haystack_integrations.components.rankers.bge import BGEM3Ranker, BGERanker

import bge_core
from bge_core import ConfigError, InputTypeError, MissingHeadError, ModelNotFoundError

CLASSES = [
    BGETextEmbedder,
    BGEDocumentEmbedder,
    BGESparseTextEmbedder,
    BGESparseDocumentEmbedder,
    BGERanker,
    BGEM3Ranker,
]
DEFAULT_TOKEN = Secret.from_env_var(["HF_API_TOKEN", "HF_TOKEN"], strict=False)
CPU = ComponentDevice.from_str("cpu")
TOKEN = Secret.from_env_var("MY_HF_TOKEN", strict=False)

# Every init parameter set away from its default, per class.
COMMON = {
    "model": "org/some-model",
    "device": CPU,
    "token": TOKEN,
    "max_length": 64,
    "precision": "fp32",
    "trust_remote_code": False,
    "revision": "v1",
}
DOCS = {"batch_size": 8, "progress_bar": False, "meta_fields_to_embed": ["title"], "embedding_separator": " | "}
DENSE = {"pooling": "mean", "normalize_embeddings": False, "truncate_dim": 128}
CUSTOM = {
    BGETextEmbedder: {
        **COMMON,
        **DENSE,
        "query_instruction": "query: ",
        "prefix": "Q: ",
        "suffix": " ?",
        "examples": [{"query": "q", "response": "r"}],
        "examples_instruction_format": "{}|{}|{}",
    },
    BGEDocumentEmbedder: {**COMMON, **DENSE, **DOCS, "prefix": "D: ", "suffix": " .", "document_instruction": "p: "},
    BGESparseTextEmbedder: COMMON,
    BGESparseDocumentEmbedder: {**COMMON, **DOCS},
    BGERanker: {
        **COMMON,
        "top_k": 4,
        "scale_score": False,
        "calibration_factor": 0.5,
        "score_threshold": 0.2,
        "meta_fields_to_embed": ["title"],
        "embedding_separator": " | ",
        "batch_size": 8,
    },
    BGEM3Ranker: {
        **COMMON,
        "top_k": 4,
        "mode": "sparse+dense",
        "weights": [0.5, 0.5, 0.0],
        "score_threshold": 0.2,
        "meta_fields_to_embed": ["title"],
        "embedding_separator": " | ",
        "batch_size": 8,
    },
}


def _type(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def test_text_embedder_to_dict():
    assert BGETextEmbedder(device=CPU).to_dict() == {
        "type": "haystack_integrations.components.embedders.bge.text_embedder.BGETextEmbedder",
        "init_parameters": {
            "model": "BAAI/bge-small-en-v1.5",
            "device": {"type": "single", "device": "cpu"},
            "token": {"type": "env_var", "env_vars": ["HF_API_TOKEN", "HF_TOKEN"], "strict": False},
            "query_instruction": None,
            "max_length": None,
            "precision": "auto",
            "pooling": None,
            "normalize_embeddings": True,
            "truncate_dim": None,
            "trust_remote_code": None,
            "revision": None,
            "prefix": "",
            "suffix": "",
            "examples": None,
            "examples_instruction_format": None,
        },
    }


def test_document_embedder_to_dict():
    assert BGEDocumentEmbedder(device=CPU).to_dict() == {
        "type": "haystack_integrations.components.embedders.bge.document_embedder.BGEDocumentEmbedder",
        "init_parameters": {
            "model": "BAAI/bge-small-en-v1.5",
            "device": {"type": "single", "device": "cpu"},
            "token": {"type": "env_var", "env_vars": ["HF_API_TOKEN", "HF_TOKEN"], "strict": False},
            "batch_size": 256,
            "progress_bar": True,
            "meta_fields_to_embed": [],
            "embedding_separator": "\n",
            "max_length": None,
            "precision": "auto",
            "pooling": None,
            "normalize_embeddings": True,
            "truncate_dim": None,
            "trust_remote_code": None,
            "revision": None,
            "prefix": "",
            "suffix": "",
            "document_instruction": None,
        },
    }


def test_ranker_to_dict():
    assert BGERanker(device=CPU).to_dict() == {
        "type": "haystack_integrations.components.rankers.bge.ranker.BGERanker",
        "init_parameters": {
            "model": "BAAI/bge-reranker-base",
            "device": {"type": "single", "device": "cpu"},
            "token": {"type": "env_var", "env_vars": ["HF_API_TOKEN", "HF_TOKEN"], "strict": False},
            "top_k": 10,
            "scale_score": True,
            "calibration_factor": 1.0,
            "score_threshold": None,
            "meta_fields_to_embed": [],
            "embedding_separator": "\n",
            "batch_size": 128,
            "max_length": None,
            "precision": "auto",
            "trust_remote_code": None,
            "revision": None,
        },
    }


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_to_dict_from_dict_round_trip(cls):
    params = CUSTOM[cls]
    data = cls(**params).to_dict()
    assert data["type"] == _type(cls)
    assert set(data["init_parameters"]) == set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert yaml.safe_load(yaml.safe_dump(data)) == data  # plain types only
    restored = cls.from_dict(data)
    for name, value in params.items():
        assert getattr(restored, name) == value, name
    assert restored.to_dict() == data


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_from_dict_without_parameters_gives_defaults(cls):
    component = cls.from_dict({"type": _type(cls), "init_parameters": {}})
    assert component.device == ComponentDevice.resolve_device(None)
    assert component.token == DEFAULT_TOKEN
    assert component.model == inspect.signature(cls.__init__).parameters["model"].default
    assert component.to_dict() == cls().to_dict()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_token_secret_is_never_serialized(cls):
    component = cls(token=Secret.from_token("hf_secret"))
    with pytest.raises(ValueError, match="Cannot serialize token-based secret"):
        component.to_dict()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_init_loads_nothing_and_warm_up_does(cls):
    component = cls(model="/nonexistent/bge-model-folder", device=CPU)  # no error: nothing is read yet
    assert getattr(component, "_embedder", None) is None and getattr(component, "_reranker", None) is None
    with pytest.raises(ModelNotFoundError):
        component.warm_up()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_device_map_is_refused(cls):
    device_map = ComponentDevice.from_multiple(DeviceMap({"encoder": Device.cpu(), "head": Device.cpu()}))
    with pytest.raises(ConfigError, match="single device"):
        cls(device=device_map)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: BGERanker(top_k=0), "top_k"),
        (lambda: BGERanker(calibration_factor=0.0), "calibration_factor"),
        (lambda: BGERanker(calibration_factor=float("nan")), "calibration_factor"),
        (lambda: BGEDocumentEmbedder(batch_size=0), "batch_size"),
        (lambda: BGESparseDocumentEmbedder(batch_size=2.5), "batch_size"),
        (lambda: BGEM3Ranker(mode="hybrid"), "Valid modes are: dense, sparse, colbert"),
        (lambda: BGEM3Ranker(weights=[1.0, 1.0]), "weights"),
        (lambda: BGEM3Ranker(weights=[1.0, -1.0, 1.0]), "weights"),
    ],
)
def test_invalid_settings_raise_config_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize(
    ("component", "inputs", "match"),
    [
        (BGETextEmbedder(), {"text": ["a", "list"]}, "BGETextEmbedder expects a string.*BGEDocumentEmbedder"),
        (BGETextEmbedder(), {"text": Document(content="doc")}, "BGETextEmbedder expects a string"),
        (BGETextEmbedder(), {"text": None}, "got NoneType"),
        (BGESparseTextEmbedder(), {"text": 3}, "BGESparseTextEmbedder expects a string.*BGESparseDocumentEmbedder"),
        (BGEDocumentEmbedder(), {"documents": "text"}, "BGEDocumentEmbedder expects a list of Documents.*TextEmbedder"),
        (BGEDocumentEmbedder(), {"documents": [Document(content="a"), "b"]}, r"documents\[1\] is str"),
        (BGEDocumentEmbedder(), {"documents": Document(content="a")}, "got Document"),
        (BGESparseDocumentEmbedder(), {"documents": ["a"]}, r"documents\[0\] is str.*BGESparseTextEmbedder"),
        (BGERanker(), {"query": None, "documents": []}, "BGERanker expects query to be a string"),
        (BGERanker(), {"query": "q", "documents": ["text"]}, r"BGERanker expects a list of Documents; documents\[0\]"),
        (BGEM3Ranker(), {"query": ["q"], "documents": []}, "BGEM3Ranker expects query to be a string"),
        (BGEM3Ranker(), {"query": "q", "documents": None}, "BGEM3Ranker expects a list of Documents"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, (dict, str)) else None,
)
def test_run_with_wrong_input_types_raises(component, inputs, match):
    with pytest.raises(InputTypeError, match=match) as info:
        component.run(**inputs)
    assert isinstance(info.value, TypeError)


def test_run_with_invalid_top_k_raises():
    with pytest.raises(ConfigError, match="top_k"):
        BGERanker().run(query="q", documents=[Document(content="d")], top_k=0)


@pytest.mark.parametrize(
    ("component", "inputs"),
    [
        (BGEDocumentEmbedder(model="/nonexistent/folder"), {"documents": []}),
        (BGESparseDocumentEmbedder(model="/nonexistent/folder"), {"documents": []}),
        (BGERanker(model="/nonexistent/folder"), {"query": "q", "documents": []}),
        (BGEM3Ranker(model="/nonexistent/folder"), {"query": "q", "documents": []}),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, dict) else None,
)
def test_empty_documents_give_empty_output_without_loading(component, inputs):
    assert component.run(**inputs) == {"documents": []}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_warm_up_loads_once(cls, models, monkeypatch):
    module = sys.modules[cls.__module__]
    factory = "shared_reranker" if cls is BGERanker else "shared_embedder"
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return getattr(bge_core, factory)(*args, **kwargs)

    monkeypatch.setattr(module, factory, counting)
    model = models.reranker if cls is BGERanker else models.m3
    component = cls(model=str(model), device=CPU, **FAST)
    assert calls == []
    component.warm_up()
    component.warm_up()
    assert calls == [(str(model),)]


def test_warm_up_is_idempotent_and_text_and_document_embedders_share_one_engine(models):
    text = BGETextEmbedder(model=str(models.dense), device=CPU, **FAST)
    docs = BGEDocumentEmbedder(model=str(models.dense), device=CPU, batch_size=4, progress_bar=False, **FAST)
    text.warm_up()
    engine = text._embedder
    text.warm_up()
    assert engine is not None and text._embedder is engine
    docs.warm_up()
    assert docs._embedder is engine  # batch_size / progress_bar are per call, not engine settings
    other = BGETextEmbedder(model=str(models.dense), device=CPU, query_instruction="query: ", **FAST)
    other.warm_up()
    assert other._embedder is not engine and other._embedder._backbone is engine._backbone  # weights loaded once


def test_bge_m3_components_share_one_engine(models):
    settings = {"model": str(models.m3), "device": CPU, **FAST}
    components = [
        BGETextEmbedder(**settings),
        BGEDocumentEmbedder(**settings),
        BGESparseTextEmbedder(**settings),
        BGESparseDocumentEmbedder(**settings),
        BGEM3Ranker(**settings),
    ]
    for component in components:
        component.warm_up()
    assert len({id(component._embedder) for component in components}) == 1


def test_rankers_with_the_same_model_share_one_engine(models):
    a = BGERanker(model=str(models.reranker), device=CPU, top_k=2, **FAST)
    b = BGERanker(model=str(models.reranker), device=CPU, top_k=5, scale_score=False, **FAST)
    a.warm_up()
    b.warm_up()
    a.warm_up()
    assert a._reranker is not None and a._reranker is b._reranker


@pytest.mark.parametrize(
    "cls", [BGESparseTextEmbedder, BGESparseDocumentEmbedder, BGEM3Ranker], ids=lambda c: c.__name__
)
def test_model_without_m3_heads_fails_at_warm_up(cls, models):
    component = cls(model=str(models.dense), device=CPU, **FAST)
    with pytest.raises(MissingHeadError, match="sparse_linear.pt"):
        component.warm_up()
    assert component._embedder is None

"""Haystack components for code moving from the sentence-transformers components: prefix/suffix,
document_instruction, in-context examples, our own deduplication, the defaults (bf16 here),
and imports (cheap, and naming the extra when Haystack is missing)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _haystack_support import FAST
from haystack import Document
from haystack.utils.misc import _deduplicate_documents
from haystack_integrations.components.embedders.bge import BGEDocumentEmbedder, BGETextEmbedder
from haystack_integrations.components.embedders.bge._common import deduplicate_documents
from haystack_integrations.components.rankers.bge import BGERanker

from bge_core import ConfigError, Embedder, Reranker

QUERY = "How do I handle an exception with try and except?"


@pytest.fixture(scope="module")
def reference(models) -> Embedder:
    return Embedder(models.dense, **FAST)


@pytest.fixture(scope="module")
def docs(paragraphs) -> list[Document]:
    return [Document(content=t, meta={"title": f"T{i}"}) for i, t in enumerate(paragraphs[60:64])]


def test_text_embedder_prefix_and_suffix_wrap_the_query(models, reference):
    embedder = BGETextEmbedder(
        model=str(models.dense), prefix="Q: ", suffix=" (python)", query_instruction="Find: ", **FAST
    )
    got = embedder.run(QUERY)["embedding"]
    # The engine's instruction first, then prefix + text + suffix.
    np.testing.assert_allclose(got, reference.encode_documents("Find: Q: " + QUERY + " (python)"), rtol=0, atol=1e-6)
    again = BGETextEmbedder.from_dict(embedder.to_dict())
    assert again.run(QUERY)["embedding"] == got


def test_document_embedder_prefix_suffix_and_document_instruction(models, reference, docs):
    embedder = BGEDocumentEmbedder(
        model=str(models.dense),
        prefix="D: ",
        suffix=" .",
        document_instruction="passage: ",
        meta_fields_to_embed=["title"],
        embedding_separator=" | ",
        progress_bar=False,
        **FAST,
    )
    got = [d.embedding for d in embedder.run(docs)["documents"]]
    texts = [f"passage: D: {d.meta['title']} | {d.content} ." for d in docs]
    np.testing.assert_allclose(got, reference.encode_documents(texts), rtol=0, atol=1e-5)
    assert all(d.embedding is None for d in docs)  # inputs untouched
    assert BGEDocumentEmbedder.from_dict(embedder.to_dict()).to_dict() == embedder.to_dict()


def test_a_prefix_repeating_the_instruction_is_refused(models):
    instruction = "Represent this sentence for searching relevant passages: "
    doubled = BGETextEmbedder(model=str(models.dense), query_instruction=instruction, prefix=instruction, **FAST)
    with pytest.raises(ConfigError, match="query_instruction=''"):
        doubled.warm_up()
    alone = BGETextEmbedder(model=str(models.dense), query_instruction="", prefix=instruction, **FAST)
    other = BGETextEmbedder(model=str(models.dense), query_instruction=instruction, **FAST)
    assert alone.run(QUERY)["embedding"] == other.run(QUERY)["embedding"]


ICL_EXAMPLES = [{"query": "how do I open a file?", "response": "Use the built-in open()."}]


def test_icl_examples_reach_the_engine(tmp_path):
    from bge_rag.testing import build_decoder_model

    folder = build_decoder_model(tmp_path / "bge-en-icl", "mistral")
    embedder = BGETextEmbedder(model=str(folder), examples=ICL_EXAMPLES, precision="fp32", token=None)
    reference = Embedder(folder, examples=ICL_EXAMPLES, precision="fp32")
    np.testing.assert_allclose(embedder.run(QUERY)["embedding"], reference.encode_queries(QUERY), rtol=0, atol=1e-6)
    data = embedder.to_dict()
    assert data["init_parameters"]["examples"] == ICL_EXAMPLES
    assert BGETextEmbedder.from_dict(data).to_dict() == data
    plain = build_decoder_model(tmp_path / "plain-decoder", "qwen2")  # not an ICL model
    with pytest.raises(ConfigError, match="examples"):
        BGETextEmbedder(model=str(plain), examples=ICL_EXAMPLES, precision="fp32", token=None).warm_up()


@pytest.mark.parametrize(
    "scores",
    [
        [None, 0.5, 0.9, None, 0.9, 0.1],
        [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
        [None, None, None, None, None, None],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    ],
)
def test_deduplication_has_haystack_s_semantics(scores):
    ids = ["a", "b", "a", "c", "b", "a"]
    documents = [Document(id=i, content=f"{i}-{n}", score=s) for n, (i, s) in enumerate(zip(ids, scores))]
    ours = deduplicate_documents(documents)
    assert [(d.id, d.content) for d in ours] == [(d.id, d.content) for d in _deduplicate_documents(documents)]
    assert [d.id for d in ours] == ["a", "b", "c"] and all(d in documents for d in ours)
    assert deduplicate_documents([]) == []


def test_defaults_run_bf16_here_within_a_bound_of_fp32(models, docs):
    # No precision argument: "auto", bf16 on this CPU. Measured: cosine >= 0.99994 (dense),
    # reranker logits within 0.018 of fp32 on these fixtures (benchmarks/bf16_deviation.py).
    default = BGEDocumentEmbedder(model=str(models.dense), progress_bar=False, token=None)
    exact = Embedder(models.dense, precision="fp32")
    assert default.precision == "auto"
    got = np.array([d.embedding for d in default.run(docs)["documents"]])
    assert (got * exact.encode_documents([d.content for d in docs])).sum(axis=1).min() >= 0.9995
    ranker = BGERanker(model=str(models.reranker), scale_score=False, token=None, max_length=128)
    ranked = {d.id: d.score for d in ranker.run(query=QUERY, documents=docs)["documents"]}
    expected = Reranker(models.reranker, precision="fp32", max_length=128).score([(QUERY, d.content) for d in docs])
    np.testing.assert_allclose([ranked[d.id] for d in docs], expected, rtol=0, atol=0.05)


# Haystack cannot be imported at all in this interpreter (as if haystack-ai were not installed).
_BLOCK_HAYSTACK = """
import sys
class _NoHaystack:
    def find_spec(self, name, path=None, target=None):
        if name == "haystack" or name.startswith("haystack."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoHaystack())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("package", ["embedders", "rankers"])
def test_missing_haystack_names_the_extra(package):
    result = _run(
        _BLOCK_HAYSTACK
        + f"""
from bge_core import MissingExtraError
try:
    import haystack_integrations.components.{package}.bge
except MissingExtraError as exc:
    assert isinstance(exc, ImportError)
    print(exc)
else:
    raise SystemExit("imported without haystack")
"""
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install 'bge-rag[haystack]'" in result.stdout and "haystack-ai" in result.stdout


def test_import_does_not_import_torch():
    # Haystack itself imports torch when it is installed (haystack.utils.device); blocking torch
    # shows that our components do not need it to import (Haystack's LazyImport tolerates it).
    result = _run(
        "import sys\n"
        "class _NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, _NoTorch())\n"
        "from haystack_integrations.components.embedders.bge import BGEDocumentEmbedder, BGETextEmbedder\n"
        "from haystack_integrations.components.rankers.bge import BGEM3Ranker, BGERanker\n"
        "print(sorted(m for m in ('torch', 'transformers', 'bge_core.embedder') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"

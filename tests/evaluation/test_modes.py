"""BGE-M3 retrieval modes score every document as FlagEmbedding's BGEM3FlagModel.compute_score does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bge_core import Embedder
from bge_core.errors import ConfigError, MissingHeadError
from bge_rag.evaluation import MODES, EmbedderRetriever, compare, load_dataset
from bge_rag.testing import FixtureModels

FLAG_KEYS = {
    "dense": "dense",
    "sparse": "sparse",
    "colbert": "colbert",
    "dense+sparse": "sparse+dense",
    "hybrid": "colbert+sparse+dense",
}


@pytest.fixture(scope="module")
def m3(models: FixtureModels) -> Embedder:
    return Embedder(models.xlmr_m3, precision="fp32", query_instruction="", show_progress=False)


@pytest.mark.slow
@pytest.mark.parity
def test_every_mode_scores_as_flagembedding(flag, m3: Embedder, models: FixtureModels, eval_dir: Path) -> None:
    data = load_dataset(eval_dir)
    queries = dict(list(data.split("test").queries.items())[:6])
    docs = list(data.corpus)
    reference = flag.BGEM3FlagModel(str(models.xlmr_m3), use_fp16=False, devices="cpu")
    pairs = [(queries[q], data.corpus[d].full_text) for q in queries for d in docs]
    expected = reference.compute_score(pairs, weights_for_different_modes=[0.4, 0.2, 0.4])
    for mode in MODES:
        retriever = EmbedderRetriever(m3, mode=mode)
        found = retriever.retrieve(data, queries, top_k=len(docs))  # every document, ranked
        assert retriever.name == (models.xlmr_m3.name if mode == "dense" else f"{models.xlmr_m3.name}-{mode}")
        want = np.array(expected[FLAG_KEYS[mode]]).reshape(len(queries), len(docs))
        got = np.array([[found[q][d] for d in docs] for q in queries])
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=mode)
        for q, row in zip(queries, want):  # ranked best first, as the scores say
            assert list(found[q]) == [docs[i] for i in np.lexsort((np.arange(len(docs)), -got[list(queries).index(q)]))]
            assert len(row) == len(docs)


@pytest.mark.slow
def test_modes_share_one_corpus_encoding(m3: Embedder, eval_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset(eval_dir)
    calls: list[tuple[str, bool, bool, bool]] = []
    original = Embedder.encode

    def spy(self, texts, **kwargs):
        calls.append(
            (
                kwargs.get("kind", "document"),
                kwargs.get("dense", True),
                kwargs.get("sparse", False),
                kwargs.get("colbert", False),
            )
        )
        return original(self, texts, **kwargs)

    monkeypatch.setattr(Embedder, "encode", spy)
    report = compare([EmbedderRetriever(m3, mode=m) for m in ("dense", "sparse", "hybrid")], data, k_values=[10])
    # one corpus pass and one query pass, each with every output the three modes need
    assert calls == [("document", True, True, True), ("query", True, True, True)]
    assert {run.retriever for run in report.runs} == {
        m3.model_name.rstrip("/").rsplit("/", 1)[-1] + s for s in ("", "-sparse", "-hybrid")
    }


def test_mode_errors(models: FixtureModels) -> None:
    dense = Embedder(models.dense, precision="fp32", show_progress=False)
    with pytest.raises(ConfigError, match="Invalid retrieval mode 'bm25'. Valid modes are: dense, sparse"):
        EmbedderRetriever(dense, mode="bm25")
    with pytest.raises(MissingHeadError):  # a model without BGE-M3 heads cannot retrieve sparse: said up front
        EmbedderRetriever(dense, mode="sparse")
    with pytest.raises(ConfigError, match="weights"):
        EmbedderRetriever(dense, mode="dense", weights=(1, 2))

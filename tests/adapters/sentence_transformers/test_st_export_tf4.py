"""Dense and reranker exports load in sentence-transformers 5.x and give the engine's outputs.

Runs in ``.venv-tf4`` only (transformers 4.x, sentence-transformers 5.x; ``./dev.sh test`` runs every
``test_*_tf4.py`` there). The export itself needs sentence-transformers 6, so the folders are
written by ``bge-rag export-st`` from the main environment (``.venv-test``, which ``./dev.sh test``
builds first), exactly as a user exports with one install and serves with another (Infinity and
many apps pin sentence-transformers 5.x).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sentence_transformers
from _st_support import ATOL, MINILM_MAX_LENGTH, QUERIES, SCORE_ATOL, ST_BATCH, reference, registry_named
from sentence_transformers import CrossEncoder, SentenceTransformer

from bge_core import Reranker
from bge_core.registry import EN_INSTRUCTION

pytestmark = pytest.mark.tf4

ROOT = Path(__file__).resolve().parents[3]
#: The interpreter that writes the exports: sentence-transformers 6 with bge-rag installed.
EXPORTER = Path(os.environ.get("BGE_RAG_EXPORT_PYTHON", ROOT / ".venv-test" / "bin" / "python"))


def _export_all(jobs: dict[str, list[str]], root: Path) -> dict[str, Path]:
    """Run ``bge-rag export-st`` once per job (``name -> arguments after the command``), in one process."""
    if not EXPORTER.is_file():
        pytest.fail(
            f"{EXPORTER} is missing: run ./dev.sh test (it builds .venv-test first), "
            f"or set BGE_RAG_EXPORT_PYTHON to a Python with bge-rag[sentence-transformers]."
        )
    argvs = [["export-st", args[0], str(root / name), *args[1:]] for name, args in jobs.items()]
    code = (
        "import json, sys\nfrom bge_rag.cli import main\nsys.exit(max(main(argv) for argv in json.loads(sys.argv[1])))"
    )
    result = subprocess.run(
        [str(EXPORTER), "-c", code, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folders = {name: root / name for name in jobs}
    for folder in folders.values():
        version = json.loads((folder / "config_sentence_transformers.json").read_text())["__version__"]
        assert version["sentence_transformers"].startswith("6."), "the exporter is not sentence-transformers 6"
    return folders


def test_this_is_sentence_transformers_5():
    assert sentence_transformers.__version__.split(".")[0] == "5", sentence_transformers.__version__


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return [*paragraphs[:5], "", "bge", "Grüße aus Köln, 北京欢迎你", " ".join(paragraphs[100:130])]


@pytest.fixture(scope="module")
def registry_dense(models, tmp_path_factory) -> Path:
    """The dense fixture under a registered name: CLS pooling and the English query instruction."""
    return registry_named(models, tmp_path_factory, "bge-small-en-v1.5", "dense")


@pytest.fixture(scope="module")
def exported(models, registry_dense, tmp_path_factory) -> dict[str, Path]:
    length = ["--max-length", str(MINILM_MAX_LENGTH)]
    return _export_all(
        {
            "dense": [str(registry_dense), "--kind", "dense", *length],
            "mean": [
                str(models.dense),
                "--kind",
                "dense",
                "--pooling",
                "mean",
                "--no-normalize",
                "--query-instruction",
                "query: ",
                "--max-length",
                "64",
            ],
            "identity": [str(models.reranker), "--kind", "reranker", "--activation", "identity", *length],
            "sigmoid": [str(models.reranker), "--kind", "reranker", "--activation", "sigmoid", *length],
        },
        tmp_path_factory.mktemp("st5"),
    )


@pytest.mark.parity
def test_dense_export_loads_in_st5_with_prompts(exported):
    model = SentenceTransformer(str(exported["dense"]), device="cpu")
    assert model.prompts == {"query": EN_INSTRUCTION, "document": ""}
    assert model.max_seq_length == MINILM_MAX_LENGTH
    assert model.similarity_fn_name == "cosine"


@pytest.mark.parity
def test_dense_export_in_st5_matches_engine(exported, registry_dense, texts):
    model = SentenceTransformer(str(exported["dense"]), device="cpu")
    ref = reference(registry_dense, max_length=MINILM_MAX_LENGTH)
    np.testing.assert_allclose(model.encode_query(QUERIES), ref.encode_queries(QUERIES), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        model.encode_document(texts, batch_size=ST_BATCH), ref.encode_documents(texts), atol=ATOL, rtol=0
    )
    # the prompt is applied: the query vectors are not the document vectors of the same text
    assert not np.allclose(model.encode_query(QUERIES[:1]), ref.encode_documents(QUERIES[:1]), atol=1e-3)


@pytest.mark.parity
def test_mean_pooled_unnormalized_export_in_st5_matches_engine(exported, models, texts):
    model = SentenceTransformer(str(exported["mean"]), device="cpu")
    ref = reference(models.dense, pooling="mean", normalize=False, query_instruction="query: ", max_length=64)
    np.testing.assert_allclose(model.encode_query(QUERIES), ref.encode_queries(QUERIES), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        model.encode_document(texts, batch_size=ST_BATCH), ref.encode_documents(texts), atol=ATOL, rtol=0
    )
    assert not np.allclose(np.linalg.norm(ref.encode_documents(texts[:3]), axis=1), 1.0)


@pytest.mark.parity
@pytest.mark.parametrize("activation", ["identity", "sigmoid"])
def test_reranker_export_in_st5_matches_engine(exported, models, texts, activation):
    model = CrossEncoder(str(exported[activation]), device="cpu")
    assert type(model.activation_fn).__name__ == {"identity": "Identity", "sigmoid": "Sigmoid"}[activation]
    pairs = [(q, d) for q in QUERIES[:2] for d in texts] + [("q", ""), ("", "passage")]
    expected = Reranker(
        models.reranker, precision="fp32", device="cpu", normalize=activation == "sigmoid", max_length=MINILM_MAX_LENGTH
    ).score(pairs)
    np.testing.assert_allclose(model.predict(pairs, batch_size=ST_BATCH), expected, atol=SCORE_ATOL, rtol=0)

"""Exported folders, saved again the way sentence-transformers users do, load where bge-rag is absent.

A sparse folder loaded with ``trust_remote_code=True`` (or through ``load_sparse_encoder`` /
``build_sparse_encoder``) and saved again with ``model.save`` (what ``push_to_hub`` and training
checkpoints call) must load in a fresh process in which ``bge_core`` and every bge-rag package
cannot be imported, and give the engine's weights. The model cards name the source model by hub
id and license, never by a local path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _st_support import ATOL, MINILM_MAX_LENGTH, QUERIES, assert_same_sparse, reference
from safetensors.torch import load_file
from sentence_transformers import SparseEncoder

from sentence_transformers_bge import build_sparse_encoder, export, load_sparse_encoder

DOCS = ["BGE-M3 gives dense, sparse and multi-vector outputs.", "", "the the cat sat", "Grüße aus Köln"]
BLOCKED = (
    "bge_core",
    "sentence_transformers_bge",
    "langchain_bge",
    "llama_index.embeddings.bge",
    "llama_index.postprocessor.bge_rerank",
    "haystack_integrations.components.embedders.bge",
)

# Runs in a fresh interpreter: bge-rag cannot be imported there, whatever is installed.
_CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = {blocked!r}

    class _NoBgeRag(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, _NoBgeRag())
    try:
        import sentence_transformers_bge  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the blocker let sentence_transformers_bge through")

    import numpy as np
    from sentence_transformers import SparseEncoder

    jobs = json.loads(sys.argv[1])
    for job in jobs:
        model = SparseEncoder(job["folder"], device="cpu", trust_remote_code=True)
        docs = model.encode_document(job["docs"], batch_size=4).to_dense().cpu().numpy()
        queries = model.encode_query(job["queries"]).to_dense().cpu().numpy()
        np.save(job["out"] + "-docs.npy", docs)
        np.save(job["out"] + "-queries.npy", queries)
        if job.get("save_to"):
            model.save(job["save_to"])  # a user without bge-rag saving it again (fine-tuning, push_to_hub)
    leaked = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    if leaked:
        raise SystemExit(f"bge-rag modules were imported: {{leaked}}")
    print("ok")
    """
).format(blocked=BLOCKED)


def _run_without_bge_rag(jobs: list[dict], cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(jobs)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def _rows(matrix: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in matrix]


def _lexical_state(folder: Path) -> dict[str, torch.Tensor]:
    modules = json.loads((folder / "modules.json").read_text())
    return load_file(str(folder / modules[1]["path"] / "model.safetensors"))


@pytest.fixture(scope="module")
def resaved(models, tmp_path_factory) -> dict[str, Path]:
    """One export, and the three ways a user gets a sparse model and saves it again."""
    root = tmp_path_factory.mktemp("st-resave")
    folders = {"export": export(models.m3, root / "export", kind="sparse", max_length=MINILM_MAX_LENGTH)}
    loaded = SparseEncoder(str(folders["export"]), device="cpu", trust_remote_code=True)
    loaded.save(str(root / "trusted"))
    load_sparse_encoder(folders["export"], device="cpu").save(str(root / "load_sparse_encoder"))
    build_sparse_encoder(models.m3, device="cpu", max_length=MINILM_MAX_LENGTH).save(str(root / "built"))
    folders.update({name: root / name for name in ("trusted", "load_sparse_encoder", "built")})
    return folders


@pytest.mark.slow
def test_resaved_sparse_folders_load_without_bge_rag(resaved, models, tmp_path):
    """Fresh processes that cannot import bge-rag load every re-saved folder, save one again, reload it."""
    ref = reference(models.m3, max_length=MINILM_MAX_LENGTH)
    expected_docs = ref.encode(DOCS, sparse=True, dense=False).sparse
    expected_queries = ref.encode(QUERIES, kind="query", sparse=True, dense=False).sparse
    jobs = [
        {"folder": str(folder), "docs": DOCS, "queries": QUERIES, "out": str(tmp_path / name)}
        for name, folder in resaved.items()
    ]
    jobs[1]["save_to"] = str(tmp_path / "second-generation")
    _run_without_bge_rag(jobs, cwd=tmp_path)
    _run_without_bge_rag(
        [
            {
                "folder": str(tmp_path / "second-generation"),
                "docs": DOCS,
                "queries": QUERIES,
                "out": str(tmp_path / "second-generation"),
            }
        ],
        cwd=tmp_path,
    )
    for name in [*resaved, "second-generation"]:
        docs = np.load(tmp_path / f"{name}-docs.npy")
        queries = np.load(tmp_path / f"{name}-queries.npy")
        assert_same_sparse(_rows(docs), expected_docs)
        assert_same_sparse(_rows(queries), expected_queries)
        np.testing.assert_array_equal(docs, np.load(tmp_path / "export-docs.npy"))  # the same model, bit for bit
    # the lexical head's weights are the same tensors in every generation
    original = _lexical_state(resaved["export"])
    for folder in [*resaved.values(), tmp_path / "second-generation"]:
        state = _lexical_state(folder)
        assert state.keys() == original.keys()
        assert all(torch.equal(state[key], original[key]) for key in original)


def test_resaved_sparse_folders_name_the_module_by_file(resaved):
    for folder in resaved.values():
        types = [entry["type"] for entry in json.loads((folder / "modules.json").read_text())]
        assert types[1] == "m3_lexical_weights.M3LexicalWeights", folder.name
        assert (folder / "m3_lexical_weights.py").read_text() == (
            resaved["export"] / "m3_lexical_weights.py"
        ).read_text()


def test_resaved_sparse_folder_still_loads_through_load_sparse_encoder(resaved, models):
    model = load_sparse_encoder(resaved["trusted"], device="cpu")
    expected = reference(models.m3, max_length=MINILM_MAX_LENGTH).encode(DOCS, sparse=True, dense=False).sparse
    assert_same_sparse(_rows(model.encode_document(DOCS).to_dense().numpy()), expected)


@pytest.mark.parity
@pytest.mark.slow
def test_dense_and_reranker_folders_load_without_bge_rag(models, tmp_path):
    """Dense and reranker exports need no custom code at all: a blocked process loads them too."""
    dense = export(models.dense, tmp_path / "dense", kind="dense", max_length=MINILM_MAX_LENGTH)
    ranker = export(models.reranker, tmp_path / "ranker", kind="reranker", max_length=MINILM_MAX_LENGTH)
    code = _CHILD.split("import numpy as np")[0] + textwrap.dedent(
        f"""
        import numpy as np
        from sentence_transformers import CrossEncoder, SentenceTransformer
        np.save("dense.npy", SentenceTransformer({str(dense)!r}, device="cpu").encode_document({DOCS!r}))
        cross_encoder = CrossEncoder({str(ranker)!r}, device="cpu")
        np.save("scores.npy", cross_encoder.predict([(q, {DOCS[0]!r}) for q in {QUERIES!r}]))
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "dense.npy"),
        reference(models.dense, max_length=MINILM_MAX_LENGTH).encode_documents(DOCS),
        atol=ATOL,
        rtol=0,
    )
    from bge_core import Reranker

    expected = Reranker(models.reranker, precision="fp32", device="cpu", max_length=MINILM_MAX_LENGTH).score(
        [(q, DOCS[0]) for q in QUERIES]
    )
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), expected, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------- model cards
def _hub_snapshot(source: Path, hub: Path, repo: str, card: str) -> Path:
    """A hub cache entry for ``repo`` whose files are links to ``source``, plus the model's own card."""
    snapshot = hub / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        if file.name != "README.md":  # never write through a link into the shared fixture
            (snapshot / file.name).symlink_to(file)
    (snapshot / "README.md").write_text(card)
    (hub / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (hub / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0123456789abcdef")
    return snapshot


def _front_matter(card: str) -> dict[str, str]:
    head = card.split("---\n")[1]
    return dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)


@pytest.mark.parametrize(
    ("kind", "fixture", "pipeline_tag"),
    [
        ("dense", "dense", "sentence-similarity"),
        ("reranker", "reranker", "text-ranking"),
        ("sparse", "m3", "feature-extraction"),
    ],
)
def test_card_names_base_model_license_and_task(models, tmp_path, kind, fixture, pipeline_tag):
    repo = {"dense": "BAAI/bge-small-en-v1.5", "reranker": "BAAI/bge-reranker-base", "sparse": "BAAI/bge-m3"}[kind]
    hub = tmp_path / "hub"
    _hub_snapshot(getattr(models, fixture), hub, repo, "---\nlicense: mit\nlanguage:\n- en\n---\n\n# the model\n")
    out = export(repo, tmp_path / "out" / "exported", kind=kind, cache_dir=hub, max_length=MINILM_MAX_LENGTH)
    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["base_model"] == repo and meta["license"] == "mit" and meta["pipeline_tag"] == pipeline_tag
    assert meta["library_name"] == "sentence-transformers"
    assert str(tmp_path) not in card and "/tmp" not in card and str(Path.home()) not in card
    assert f"Exported from `{repo}`" in card


@pytest.mark.parity
def test_card_of_a_local_folder_has_no_path_and_no_invented_metadata(models, tmp_path):
    out = export(models.dense, tmp_path / "exported", kind="dense", max_length=MINILM_MAX_LENGTH)
    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert "base_model" not in meta and "license" not in meta  # a plain folder proves neither
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert str(models.dense.parent) not in card and str(tmp_path) not in card
    assert f"a local folder named `{models.dense.name}`" in card and "declares no license" in card
    assert 'SentenceTransformer("exported")' in card


def test_card_reads_the_base_model_of_a_snapshot_path(models, tmp_path):
    snapshot = _hub_snapshot(models.xlmr_m3, tmp_path / "hub", "BAAI/bge-m3", "---\nlicense: mit\n---\n")
    out = export(snapshot, tmp_path / "colbert", kind="colbert")
    meta = _front_matter((out / "README.md").read_text())
    assert meta["base_model"] == "BAAI/bge-m3" and meta["license"] == "mit"
    assert "0123456789abcdef" not in (out / "README.md").read_text()

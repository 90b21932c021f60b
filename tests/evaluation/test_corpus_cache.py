"""The corpus embedding cache: keyed by model, settings and corpus, reused across runs, resumable.

Every test spies on ``Embedder.encode`` (the class, so engines the command line loads are seen
too) and counts the documents encoded: a reused entry encodes none, an interrupted one only the
rows after the last complete Parquet part.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _eval_support import build_dataset

from bge_core import Embedder
from bge_core.errors import ConfigError
from bge_rag.cli import main
from bge_rag.corpus import read_embeddings
from bge_rag.evaluation import CorpusCache, EmbedderRetriever, RetrievalDataset, evaluate, load_dataset
from bge_rag.testing import FixtureModels

K_VALUES = [1, 5, 10]
SETTINGS = {"precision": "fp32", "pooling": "mean", "max_length": 96}


class Interrupted(RuntimeError):
    """Raised by the spy to stop a job between two chunks."""


class EncodeSpy:
    """Counts the documents ``Embedder.encode`` encodes; can fail on the n-th document call."""

    def __init__(self) -> None:
        self.documents: list[int] = []  # texts per document call
        self.fail_on: int | None = None

    @property
    def encoded(self) -> int:
        return sum(self.documents)

    def reset(self) -> None:
        self.documents.clear()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[EncodeSpy]:
    state = EncodeSpy()
    original = Embedder.encode

    def encode(self, texts, *, kind="document", **kwargs):  # noqa: ANN001, ANN202
        if kind == "document" and not isinstance(texts, str) and len(texts):
            if state.fail_on is not None and len(state.documents) + 1 >= state.fail_on:
                raise Interrupted("interrupted")
            state.documents.append(len(texts))
        return original(self, texts, kind=kind, **kwargs)

    monkeypatch.setattr(Embedder, "encode", encode)
    yield state


@pytest.fixture(scope="module")
def data(eval_dir: Path) -> RetrievalDataset:
    return load_dataset(eval_dir)


@pytest.fixture(scope="module")
def embedder(models: FixtureModels) -> Embedder:
    return Embedder(models.dense, **SETTINGS)  # type: ignore[arg-type]


def _run(embedder: Embedder, data: RetrievalDataset, cache: CorpusCache) -> dict[str, float]:
    return evaluate(EmbedderRetriever(embedder, cache=cache), data, k_values=K_VALUES).runs[0].metrics


def _entries(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/*/_bge_rag.json"))


def _manifest(entry: Path) -> dict:
    return json.loads((entry / "_bge_rag.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_second_run_reuses_the_entry(
    tmp_path: Path, spy: EncodeSpy, embedder: Embedder, data: RetrievalDataset
) -> None:
    first = _run(embedder, data, CorpusCache(tmp_path))
    assert spy.encoded == len(data.corpus)
    (entry,) = _entries(tmp_path)
    assert entry.parent.name == "dense-minilm"
    assert _manifest(entry)["complete"] is True
    assert _manifest(entry)["rows"] == len(data.corpus)
    spy.reset()
    second = _run(embedder, data, CorpusCache(tmp_path))  # a fresh cache: nothing in memory
    assert spy.encoded == 0
    assert second == first
    assert _entries(tmp_path) == [entry]
    # The cached vectors are the engine's own, in corpus order.
    _, cached = read_embeddings(entry)
    direct = embedder.encode([d.full_text for d in data.corpus.values()], kind="document")
    np.testing.assert_array_equal(cached.dense, direct.dense)
    # And without a cache folder the metrics are the same.
    assert _run(embedder, data, CorpusCache()) == first


@pytest.mark.slow
def test_edited_document_gets_a_new_entry(
    tmp_path: Path, spy: EncodeSpy, embedder: Embedder, data: RetrievalDataset, paragraphs: list[str]
) -> None:
    root = tmp_path / "cache"
    _run(embedder, data, CorpusCache(root))
    edited_dir = build_dataset(tmp_path / "edited", paragraphs)
    rows = (edited_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    doc = json.loads(rows[5])
    doc["text"] += " Edited."
    rows[5] = json.dumps(doc)
    (edited_dir / "corpus.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    edited = load_dataset(edited_dir)
    assert edited.corpus_digest() != data.corpus_digest()
    spy.reset()
    _run(embedder, edited, CorpusCache(root))
    assert spy.encoded == len(edited.corpus)  # never the stale vectors
    assert len(_entries(root)) == 2
    # Both entries stay usable.
    spy.reset()
    _run(embedder, data, CorpusCache(root))
    _run(embedder, edited, CorpusCache(root))
    assert spy.encoded == 0


@pytest.mark.slow
@pytest.mark.parametrize("change", [{"max_length": 64}, {"pooling": "cls"}, {"normalize": False}])
def test_changed_settings_get_a_new_entry(
    tmp_path: Path, spy: EncodeSpy, embedder: Embedder, data: RetrievalDataset, models: FixtureModels, change: dict
) -> None:
    cache = CorpusCache(tmp_path)
    _run(embedder, data, cache)
    other = Embedder(models.dense, **{**SETTINGS, **change})  # type: ignore[arg-type]
    assert cache.key(other, data, ("dense",)) != cache.key(embedder, data, ("dense",))
    spy.reset()
    metrics = _run(other, data, CorpusCache(tmp_path))
    assert spy.encoded == len(data.corpus)
    assert len(_entries(tmp_path)) == 2
    assert metrics == _run(other, data, CorpusCache())  # the new entry holds the new settings' vectors


@pytest.mark.slow
def test_retrained_weights_in_the_same_folder_get_a_new_entry(
    tmp_path: Path, spy: EncodeSpy, data: RetrievalDataset, models: FixtureModels
) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(models.dense, tmp_path / "my-model")
    before = _run(Embedder(folder, **SETTINGS), data, CorpusCache(tmp_path / "cache"))  # type: ignore[arg-type]
    weights = load_file(folder / "model.safetensors")
    torch.manual_seed(0)
    for name, tensor in weights.items():
        if tensor.is_floating_point():
            weights[name] = tensor + 0.05 * torch.randn_like(tensor)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    retrained = Embedder(folder, **SETTINGS)  # type: ignore[arg-type]
    spy.reset()
    after = _run(retrained, data, CorpusCache(tmp_path / "cache"))
    assert spy.encoded == len(data.corpus)  # not the old weights' vectors
    assert len(_entries(tmp_path / "cache")) == 2
    assert after == _run(retrained, data, CorpusCache())
    assert after != before


def test_key_follows_the_files_that_make_the_model(
    tmp_path: Path, data: RetrievalDataset, models: FixtureModels
) -> None:
    import os
    import shutil

    folder = shutil.copytree(models.dense, tmp_path / "my-model")
    engine = Embedder(folder, **SETTINGS)  # type: ignore[arg-type]
    cache = CorpusCache()
    key = cache.key(engine, data, ("dense",))
    (folder / "checkpoint-10").mkdir()  # a training run's leftovers are not the model that runs
    (folder / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    (folder / ".cache").mkdir()
    assert cache.key(engine, data, ("dense",)) == key
    dense = folder / "2_Dense"
    dense.mkdir()
    (dense / "model.safetensors").write_bytes(b"v1")
    (folder / "modules.json").write_text(
        json.dumps([{"idx": 0, "path": "", "type": "Transformer"}, {"idx": 1, "path": "2_Dense", "type": "Dense"}])
    )
    with_modules = cache.key(engine, data, ("dense",))
    assert with_modules != key
    (dense / "model.safetensors").write_bytes(b"v2")  # a module's weights are the model's
    assert cache.key(engine, data, ("dense",)) != with_modules
    before = cache.key(engine, data, ("dense",))
    stat = (folder / "config.json").stat()
    os.utime(folder / "config.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.key(engine, data, ("dense",)) != before  # saved again over the folder


def test_outputs_and_instruction_are_in_the_key(
    embedder: Embedder, data: RetrievalDataset, models: FixtureModels
) -> None:
    cache = CorpusCache()
    dense = cache.key(embedder, data, ("dense",))
    assert cache.key(embedder, data, ("dense", "sparse")) != dense
    assert cache.key(Embedder(models.dense, document_instruction="passage: ", **SETTINGS), data, ("dense",)) != dense  # type: ignore[arg-type]
    # The query side is not: queries are never cached on disk.
    assert cache.key(Embedder(models.dense, query_instruction="Q: ", **SETTINGS), data, ("dense",)) == dense  # type: ignore[arg-type]


def test_overwrite_encodes_again(tmp_path: Path, spy: EncodeSpy, embedder: Embedder, data: RetrievalDataset) -> None:
    first = _run(embedder, data, CorpusCache(tmp_path))
    spy.reset()
    again = _run(embedder, data, CorpusCache(tmp_path, overwrite=True))
    assert spy.encoded == len(data.corpus)
    assert again == first
    assert len(_entries(tmp_path)) == 1


def test_interrupted_entry_resumes_after_its_last_part(
    tmp_path: Path, spy: EncodeSpy, embedder: Embedder, data: RetrievalDataset
) -> None:
    n = len(data.corpus)
    spy.fail_on = 2  # the second chunk's encode call raises, after part 0 is written
    with pytest.raises(Interrupted):
        _run(embedder, data, CorpusCache(tmp_path / "resumed", chunk_size=32))
    (entry,) = _entries(tmp_path / "resumed")
    assert _manifest(entry)["complete"] is False
    assert sorted(p.name for p in entry.glob("part-*")) == ["part-000000.parquet"]
    spy.fail_on = None
    spy.reset()
    # A later run (any chunk_size: the entry keeps its own) encodes only the rows after part 0.
    resumed = _run(embedder, data, CorpusCache(tmp_path / "resumed"))
    assert spy.documents == [32, n - 64]
    assert _manifest(entry)["complete"] is True
    spy.reset()
    whole = _run(embedder, data, CorpusCache(tmp_path / "whole", chunk_size=32))
    assert spy.documents == [32, 32, n - 64]
    assert resumed == whole
    (other,) = _entries(tmp_path / "whole")
    assert other.name == entry.name  # the chunk size is no part of the key
    for part in sorted(entry.glob("part-*")):
        assert part.read_bytes() == (other / part.name).read_bytes()
    # A complete entry made with chunk_size 32 is reused by a cache with the default chunk size.
    spy.reset()
    assert _run(embedder, data, CorpusCache(tmp_path / "whole")) == whole
    assert spy.encoded == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_chunk_size_must_be_positive(bad: object) -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        CorpusCache(chunk_size=bad)  # type: ignore[arg-type]


def _cli(data: Path, out: Path, models: FixtureModels, cache: Path, *extra: str) -> dict:
    main(
        [
            "eval",
            "--eval_name", "paragraphs",
            "--dataset_dir", str(data),
            "--output_dir", str(out / "search_results"),
            "--eval_output_method", "json",
            "--eval_output_path", str(out / "summary.json"),
            "--embedder_name_or_path", str(models.dense),
            "--pooling_method", "mean",
            "--embedder_passage_max_length", "96",
            "--k_values", "1", "5", "10",
            "--search_top_k", "20",
            "--devices", "cpu",
            "--corpus_embd_save_dir", str(cache),
            *extra,
        ]
    )  # fmt: skip
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_cli_reuses_the_cache(tmp_path: Path, spy: EncodeSpy, eval_dir: Path, models: FixtureModels) -> None:
    cache = tmp_path / "corpus_embd"
    first = _cli(eval_dir, tmp_path / "one", models, cache)
    n = len(load_dataset(eval_dir).corpus)
    assert spy.encoded == n
    (entry,) = _entries(cache)
    manifest = _manifest(entry)
    assert manifest["complete"] is True and manifest["rows"] == n
    assert manifest["settings"]["max_length"] == 96 and manifest["settings"]["pooling"] == "mean"
    spy.reset()
    second = _cli(eval_dir, tmp_path / "two", models, cache)
    assert spy.encoded == 0
    assert second == first
    spy.reset()
    third = _cli(eval_dir, tmp_path / "three", models, cache, "--overwrite", "True")
    assert spy.encoded == n
    assert third == first
    assert _entries(cache) == [entry]

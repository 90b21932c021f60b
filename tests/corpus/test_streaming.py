"""Streaming, resumable corpus encoding (bge_rag.corpus): parity, order, resumption, errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _streaming_support import assert_close, assert_identical, corpus, write_jsonl

from bge_core import (
    ConfigError,
    Embedder,
    Encoded,
    InputTypeError,
    InvalidInputError,
    MissingExtraError,
    MissingHeadError,
)
from bge_rag.corpus import MANIFEST, embed_corpus, iter_embeddings, read_embeddings

ALL = ("dense", "sparse", "colbert")


@pytest.fixture(scope="module")
def tiny(models) -> Embedder:
    """The tiny XLM-R with BGE-M3 heads: real tokenizer, all three outputs, fast."""
    return Embedder(models.xlmr_m3, precision="fp32", max_length=64)


@pytest.fixture(scope="module")
def bert_m3(models) -> Embedder:
    return Embedder(models.m3, precision="fp32", max_length=32)


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_a_few_thousand_texts_match_one_in_memory_call(tiny, paragraphs, tmp_path):
    texts = corpus(paragraphs, 2000)
    ids = [f"doc-{i}" for i in range(len(texts))]
    source = write_jsonl(tmp_path / "corpus.jsonl", texts, ids)

    summary = embed_corpus(source, tmp_path / "out", tiny, outputs=ALL, chunk_size=300, show_progress=False)

    assert (summary.rows, summary.encoded, summary.skipped, summary.parts) == (2000, 2000, 0, 7)
    got_ids, got = read_embeddings(tmp_path / "out")
    assert got_ids == ids
    want = tiny.encode(texts, dense=True, sparse=True, colbert=True)
    # Chunks are batched apart from each other, so the float rounding of padded batches differs
    # from one call over everything; identical up to that.
    assert_close(got, want)
    # One chunk on its own (the last, partial one) gives the very same bits as the engine.
    _, last = list(iter_embeddings(tmp_path / "out"))[-1]
    assert_identical(last, tiny.encode(texts[1800:], dense=True, sparse=True, colbert=True))


@pytest.mark.slow
@pytest.mark.parametrize("dense_format", ["parquet", "npy"])
def test_one_chunk_round_trips_bit_identical(bert_m3, paragraphs, tmp_path, dense_format):
    texts = corpus(paragraphs, 48)
    embed_corpus(
        texts, tmp_path / "out", bert_m3, outputs=ALL, chunk_size=1000, dense_format=dense_format, show_progress=False
    )
    ids, got = read_embeddings(tmp_path / "out")
    assert ids == list(range(48))  # no id field: row numbers
    assert_identical(got, bert_m3.encode(texts, dense=True, sparse=True, colbert=True))
    if dense_format == "npy":
        assert "dense" not in pq.read_schema(tmp_path / "out" / "part-000000.parquet").names
        assert np.load(tmp_path / "out" / "_dense.npy", mmap_mode="r").shape == (48, 384)


def test_columns_are_what_parquet_readers_and_vector_stores_take(bert_m3, paragraphs, tmp_path):
    texts = corpus(paragraphs, 40)
    embed_corpus(
        [{"id": 10 + i, "text": t} for i, t in enumerate(texts)],
        tmp_path / "out",
        bert_m3,
        outputs="dense,sparse,colbert",
        chunk_size=16,
        show_progress=False,
    )
    table = pq.read_table(tmp_path / "out")  # the folder as a Parquet dataset: manifest skipped
    assert table.num_rows == 40 and table.column_names == ["id", "dense", "sparse", "colbert"]
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("dense").type == pa.list_(pa.float32(), 384)
    assert table.schema.field("sparse").type == pa.struct(
        [pa.field("indices", pa.list_(pa.int64())), pa.field("values", pa.list_(pa.float32()))]
    )
    assert table.schema.field("colbert").type == pa.list_(pa.list_(pa.float32(), 384))
    want = bert_m3.encode(texts[:16], sparse=True)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["id"] == 10
    assert first["sparse"] == want.sparse[0].to_qdrant()  # Qdrant's SparseVector(indices, values)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["complete"] and manifest["rows"] == 40 and manifest["parts"] == 3
    assert manifest["settings"]["model"] == bert_m3.model_name


def _kill_after_two_parts(model: Path, source: Path, out: Path) -> subprocess.CompletedProcess:
    code = f"""
import os, signal
from bge_core import Embedder
from bge_rag.corpus import embed_corpus
def die(index, rows):
    if index == 1:
        os.kill(os.getpid(), signal.SIGKILL)
embed_corpus({str(source)!r}, {str(out)!r}, Embedder({str(model)!r}, precision="fp32", max_length=64),
             outputs=("dense", "sparse", "colbert"), chunk_size=100, show_progress=False, on_chunk=die)
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_killed_job_resumes_to_the_same_files(tiny, models, paragraphs, tmp_path):
    texts = corpus(paragraphs, 330)
    source = write_jsonl(tmp_path / "corpus.jsonl", texts, [f"d{i}" for i in range(330)])
    reference = embed_corpus(source, tmp_path / "whole", tiny, outputs=ALL, chunk_size=100, show_progress=False)
    assert reference.parts == 4

    killed = _kill_after_two_parts(models.xlmr_m3, source, tmp_path / "resumed")
    assert killed.returncode == -9, killed.stderr
    written = sorted(p.name for p in (tmp_path / "resumed").glob("part-*"))
    assert written == ["part-000000.parquet", "part-000001.parquet"]
    assert not json.loads((tmp_path / "resumed" / MANIFEST).read_text())["complete"]
    (tmp_path / "resumed" / "_part-000002.parquet.tmp").write_bytes(b"half a part")  # as if killed mid-write

    resumed = embed_corpus(source, tmp_path / "resumed", tiny, outputs=ALL, chunk_size=100, show_progress=False)

    assert (resumed.skipped, resumed.encoded, resumed.rows) == (200, 130, 330)
    assert _files(tmp_path / "resumed") == _files(tmp_path / "whole")  # byte for byte, manifest included
    again = embed_corpus(source, tmp_path / "resumed", tiny, outputs=ALL, chunk_size=100, show_progress=False)
    assert (again.skipped, again.encoded) == (330, 0)


def test_interrupted_npy_job_resumes_to_the_same_files(tiny, paragraphs, tmp_path):
    texts = corpus(paragraphs, 230)
    embed_corpus(
        texts, tmp_path / "whole", tiny, outputs="dense,sparse", chunk_size=50, dense_format="npy", show_progress=False
    )

    def interrupt(index, rows):
        if index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_corpus(
            texts,
            tmp_path / "resumed",
            tiny,
            outputs="dense,sparse",
            chunk_size=50,
            dense_format="npy",
            show_progress=False,
            on_chunk=interrupt,
        )
    resumed = embed_corpus(
        texts,
        tmp_path / "resumed",
        tiny,
        outputs="dense,sparse",
        chunk_size=50,
        dense_format="npy",
        show_progress=False,
    )
    assert (resumed.skipped, resumed.encoded) == (150, 80)
    assert _files(tmp_path / "resumed") == _files(tmp_path / "whole")


def test_a_changed_input_or_other_settings_are_refused(tiny, paragraphs, tmp_path):
    texts = corpus(paragraphs, 120)
    embed_corpus(texts, tmp_path / "out", tiny, chunk_size=50, show_progress=False)
    before = _files(tmp_path / "out")

    changed = list(texts)
    changed[60] = "an edited paragraph"
    with pytest.raises(InvalidInputError, match="rows 50-99 differ"):
        embed_corpus(changed, tmp_path / "out", tiny, chunk_size=50, show_progress=False)
    with pytest.raises(InvalidInputError, match="fewer than"):
        embed_corpus(texts[:100], tmp_path / "out", tiny, chunk_size=50, show_progress=False)
    with pytest.raises(ConfigError, match="chunk_size: 50 -> 60"):
        embed_corpus(texts, tmp_path / "out", tiny, chunk_size=60, show_progress=False)
    with pytest.raises(ConfigError, match="outputs"):
        embed_corpus(texts, tmp_path / "out", tiny, outputs="dense,sparse", chunk_size=50, show_progress=False)
    assert _files(tmp_path / "out") == before

    summary = embed_corpus(changed, tmp_path / "out", tiny, chunk_size=50, overwrite=True, show_progress=False)
    assert summary.encoded == 120
    edited = read_embeddings(tmp_path / "out")[1].dense[60]
    assert edited.tolist() == tiny.encode_documents(["an edited paragraph"])[0].tolist()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an output"):
        embed_corpus(texts, foreign, tiny, overwrite=True, show_progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_parquet_input_with_its_own_columns(tiny, paragraphs, tmp_path):
    texts = corpus(paragraphs, 70)
    folder = tmp_path / "corpus"
    folder.mkdir()
    for k, start in enumerate(range(0, 70, 30)):  # a folder of files, read in name order
        rows = range(start, min(start + 30, 70))
        pq.write_table(
            pa.table({"doc_id": [1000 + i for i in rows], "body": [texts[i] for i in rows]}),
            folder / f"part-{k}.parquet",
            row_group_size=7,
        )
    embed_corpus(
        folder,
        tmp_path / "out",
        tiny,
        outputs="sparse",
        kind="query",
        text_field="body",
        id_field="doc_id",
        chunk_size=32,
        show_progress=False,
    )
    ids, got = read_embeddings(tmp_path / "out")
    assert ids == [1000 + i for i in range(70)]
    assert got.dense is None and got.colbert is None
    assert_close(got, tiny.encode(texts, kind="query", dense=False, sparse=True))


def test_empty_input_writes_an_empty_readable_output(tiny, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    summary = embed_corpus(tmp_path / "empty.jsonl", tmp_path / "out", tiny, outputs=ALL, show_progress=False)
    assert (summary.rows, summary.parts) == (0, 1)
    ids, got = read_embeddings(tmp_path / "out")
    assert ids == [] and got.dense.shape == (0, tiny.dimension) and got.sparse == [] and got.colbert == []
    assert pq.read_table(tmp_path / "out").column_names == ["id", "dense", "sparse", "colbert"]


@pytest.mark.parametrize(
    ("lines", "error", "message"),
    [
        (['{"text": "a"}', "{not json"], InvalidInputError, r"corpus.jsonl:2: not valid JSON"),
        (['{"text": "a"}', '{"body": "b"}'], InvalidInputError, r"corpus.jsonl:2 has no 'text' field"),
        (['{"text": "a"}', '{"text": 3}'], InputTypeError, r"corpus.jsonl:2: the text is int"),
        (['{"text": "a"}', '["a"]'], InputTypeError, r"corpus.jsonl:2: expected an object"),
        (['{"id": 1, "text": "a"}', '{"text": "b"}'], InvalidInputError, r"corpus.jsonl:2 lacks the id field"),
        (['{"id": 1, "text": "a"}', '{"id": "2", "text": "b"}'], InputTypeError, r"earlier ids are int"),
        (['{"id": 1.5, "text": "a"}'], InputTypeError, r"ids must be integers or strings"),
    ],
)
def test_bad_rows_name_file_and_line(tiny, tmp_path, lines, error, message):
    source = tmp_path / "corpus.jsonl"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(error, match=message):
        embed_corpus(source, tmp_path / "out", tiny, show_progress=False)


def test_bad_settings_are_typed_errors(tiny, models, tmp_path):
    texts = ["a", "b"]
    with pytest.raises(ConfigError, match="Valid outputs are: dense, sparse, colbert"):
        embed_corpus(texts, tmp_path / "o1", tiny, outputs="dense,lexical")
    with pytest.raises(ConfigError, match='needs "dense"'):
        embed_corpus(texts, tmp_path / "o2", tiny, outputs="sparse", dense_format="npy")
    with pytest.raises(ConfigError, match="chunk_size"):
        embed_corpus(texts, tmp_path / "o3", tiny, chunk_size=0)
    with pytest.raises(ConfigError, match="Cannot tell the format"):
        (tmp_path / "corpus.csv").write_text("text\na\n")
        embed_corpus(tmp_path / "corpus.csv", tmp_path / "o4", tiny)
    with pytest.raises(InvalidInputError, match="does not exist"):
        embed_corpus(tmp_path / "missing.jsonl", tmp_path / "o5", tiny)
    with pytest.raises(InputTypeError, match="source must be"):
        embed_corpus(42, tmp_path / "o6", tiny)  # type: ignore[arg-type]
    with pytest.raises(MissingHeadError):
        embed_corpus(texts, tmp_path / "o7", Embedder(models.dense, precision="fp32"), outputs="sparse")
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3, 4, 5, 6, 7))


def test_missing_pyarrow_names_the_extra(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtraError, match=r"bge-rag\[parquet\]"):
        embed_corpus(["a"], tmp_path / "out", tiny)


def test_importing_bge_core_loads_neither_pyarrow_nor_ray():
    code = (
        "import sys, bge_core, bge_rag.cli, bge_rag.corpus, bge_rag.corpus.command\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'ray', 'pandas')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_encoded_from_arrow_reads_sliced_and_plain_list_columns(tiny, paragraphs):
    from bge_rag.corpus import arrow_columns, encoded_from_arrow

    texts = corpus(paragraphs, 12)
    want = tiny.encode(texts, dense=True, sparse=True, colbert=True)
    table = pa.table(arrow_columns(want))
    assert_identical(
        encoded_from_arrow(table.slice(5, 4)),
        Encoded(dense=want.dense[5:9], sparse=want.sparse[5:9], colbert=want.colbert[5:9]),
    )
    plain = table.cast(
        pa.schema(
            [
                pa.field("dense", pa.list_(pa.float32())),
                table.schema.field("sparse"),
                pa.field("colbert", pa.list_(pa.list_(pa.float32()))),
            ]
        )
    )
    assert_identical(encoded_from_arrow(plain), want)

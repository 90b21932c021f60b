"""``bge-rag embed`` (bge_rag.corpus.command): the command, its errors, and bounded memory."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from _streaming_support import assert_close, corpus, write_jsonl

from bge_core import Embedder
from bge_rag.cli import main
from bge_rag.corpus import read_embeddings
from bge_rag.corpus.command import register


def test_register_adds_a_working_embed_command(models, paragraphs, tmp_path):
    texts = corpus(paragraphs, 60)
    source = write_jsonl(tmp_path / "corpus.jsonl", texts, [f"doc-{i}" for i in range(60)])
    parser = argparse.ArgumentParser(prog="bge-rag")
    register(parser.add_subparsers(dest="command", required=True))
    argv = [
        "embed",
        str(source),
        str(tmp_path / "out"),
        "--model",
        str(models.m3),
        "--outputs",
        "dense,sparse",
        "--max-length",
        "32",
        "--precision",
        "fp32",
        "--chunk-size",
        "25",
        "--no-progress",
    ]

    first, second = io.StringIO(), io.StringIO()
    args = parser.parse_args(argv)
    assert args.func(args, out=first) == 0
    args = parser.parse_args(argv)
    assert args.func(args, out=second) == 0

    assert "Embedded 60 texts" in first.getvalue()
    assert "60 rows in 3 Parquet parts; outputs: dense, sparse." in first.getvalue()
    assert "Embedded 0 texts" in second.getvalue() and "Kept 60 rows written by an earlier run." in second.getvalue()
    ids, got = read_embeddings(tmp_path / "out")
    assert ids == [f"doc-{i}" for i in range(60)]
    assert_close(got, Embedder(models.m3, precision="fp32", max_length=32).encode(texts, sparse=True))


def test_npy_dense_format_from_the_command(models, paragraphs, tmp_path, capsys):
    texts = corpus(paragraphs, 20)
    source = write_jsonl(tmp_path / "corpus.jsonl", texts)
    rc = main(
        [
            "embed",
            str(source),
            str(tmp_path / "out"),
            "--model",
            str(models.dense),
            "--dense-format",
            "npy",
            "--max-length",
            "32",
            "--precision",
            "fp32",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "dense vectors in" in capsys.readouterr().out
    assert pq.read_schema(tmp_path / "out" / "part-000000.parquet").names == ["id"]
    _, got = read_embeddings(tmp_path / "out")
    assert_close(got, Embedder(models.dense, precision="fp32", max_length=32).encode(texts))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--outputs", "dense,lexical"], "Valid outputs are: dense, sparse, colbert"),
        (["--outputs", "sparse"], "sparse_linear.pt"),
    ],
)
def test_errors_are_reported_not_raised(models, tmp_path, capsys, extra, message):
    source = write_jsonl(tmp_path / "corpus.jsonl", ["a text"])
    rc = main(["embed", str(source), str(tmp_path / "out"), "--model", str(models.dense), "--no-progress", *extra])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_missing_input_is_reported(models, tmp_path, capsys):
    rc = main(["embed", str(tmp_path / "nope.jsonl"), str(tmp_path / "out"), "--model", str(models.dense)])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


# One process embeds the small corpus, then the 10x one, and reports its peak resident set
# (VmHWM) after each job. ru_maxrss is not used: it carries over the parent's peak across exec.
_MEASURE = """
import json, sys
from bge_rag.cli import main

def peak_kib():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmHWM"].split()[0])

model, small, large, work = sys.argv[1:5]
options = ["--model", model, "--outputs", "dense,sparse,colbert", "--max-length", "256", "--chunk-size", "64",
           "--precision", "fp32", "--no-progress"]
peaks = []
for source, out in ((small, work + "/small"), (large, work + "/large")):
    assert main(["embed", source, out, *options]) == 0
    peaks.append(peak_kib())
print(json.dumps(peaks))
"""


def _held_bytes(out) -> int:
    """What the outputs take in memory (float32 vectors, int64 + float32 sparse entries)."""
    _, encoded = read_embeddings(out)
    return (
        encoded.dense.nbytes
        + sum(m.nbytes for m in encoded.colbert)
        + sum(v.indices.nbytes + v.values.nbytes for v in encoded.sparse)
    )


@pytest.mark.slow
def test_peak_memory_stays_bounded_as_the_input_grows_20x(models, paragraphs, tmp_path):
    n = 180
    # 20x, not 10x: the allocator's growth between the runs (tens of MiB, the same at 10x and 20x)
    # must stay well apart from what holding the outputs would add (about 215 MiB here).
    texts = corpus(paragraphs, 20 * n, join=5)  # long texts, cut at 256 tokens: large ColBERT outputs
    small = write_jsonl(tmp_path / "small.jsonl", texts[:n])
    large = write_jsonl(tmp_path / "large.jsonl", texts)

    argv = [str(models.xlmr_m3), str(small), str(large), str(tmp_path)]
    result = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    peak_small, peak_large = (kib * 1024 for kib in json.loads(result.stdout.strip().splitlines()[-1]))

    held = _held_bytes(tmp_path / "large")
    assert read_embeddings(tmp_path / "small")[0] == list(range(n))
    # Holding the input or the outputs would raise the peak by about `held` (~215 MiB); streaming
    # holds one chunk, so the peak moves by allocator noise only (37-68 MiB seen, at 10x and 20x alike).
    assert peak_large - peak_small < 0.5 * held, (
        f"peak grew {(peak_large - peak_small) / 2**20:.0f} MiB for {held / 2**20:.0f} MiB of outputs"
    )
    assert peak_large < 1.3 * peak_small

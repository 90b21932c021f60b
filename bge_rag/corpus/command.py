"""``bge-rag embed INPUT OUTPUT --model ...``: streaming, resumable corpus encoding to Parquet.

:func:`register` adds the ``embed`` subcommand to the ``bge-rag`` parser; the work is
:func:`bge_rag.corpus.embed_corpus`, imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from bge_core.errors import MissingExtraError

_CHUNK_SIZE = 1024  # bge_rag.corpus.DEFAULT_CHUNK_SIZE, repeated so that --help stays light
_INTERRUPTED = 130


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``embed`` subcommand to ``subparsers`` (from ``parser.add_subparsers()``)."""
    embed = subparsers.add_parser(
        "embed",
        help="encode a JSONL or Parquet corpus into Parquet files, in bounded memory, resumable",
        description=(
            "Encode INPUT (a .jsonl / .ndjson file, optionally .gz, of objects with a text field; a .parquet "
            "file; or a folder of .parquet files) into OUTPUT, a folder of Parquet parts in input order with "
            "an 'id' column and one column per output. Memory holds one chunk. If interrupted, run the same "
            "command again: it keeps the parts already written and continues."
        ),
    )
    embed.add_argument("input", help="a .jsonl / .ndjson (.gz) file, a .parquet file, or a folder of .parquet files")
    embed.add_argument("output", help="output folder: new, empty, or an earlier run of the same command")
    embed.add_argument("--model", required=True, help="embedding model: hub id or local folder")
    embed.add_argument(
        "--outputs",
        default="dense",
        help="comma-separated: dense, sparse, colbert (sparse and colbert need a BGE-M3 model); default dense",
    )
    embed.add_argument(
        "--kind",
        choices=["document", "query"],
        default="document",
        help="document (default) or query (applies the model's query instruction)",
    )
    embed.add_argument("--text-field", default="text", help="field / column holding the text (default text)")
    embed.add_argument(
        "--id-field", default="id", help="field / column holding ids (default id; without it, ids are row numbers)"
    )
    embed.add_argument(
        "--chunk-size",
        type=int,
        default=_CHUNK_SIZE,
        help=f"texts per encode call and per Parquet part (default {_CHUNK_SIZE}; lower it for ColBERT on long texts)",
    )
    embed.add_argument(
        "--dense-format",
        choices=["parquet", "npy"],
        default="parquet",
        help="dense vectors as a Parquet column (default) or in one OUTPUT/_dense.npy for np.load(mmap_mode='r')",
    )
    embed.add_argument("--batch-size", type=int, help="texts per forward pass at most (engine default 256)")
    embed.add_argument("--max-batch-tokens", type=int, help="padded tokens per forward pass at most")
    embed.add_argument(
        "--max-length",
        type=int,
        help="tokens per text (default: 512, or a sentence-transformers folder's max_seq_length, "
        "capped by the model's limit)",
    )
    embed.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: first available)")
    embed.add_argument("--precision", default="auto", help="auto, fp32, fp16, bf16 (default auto)")
    embed.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code")
    embed.add_argument("--overwrite", action="store_true", help="replace an earlier output in OUTPUT")
    embed.add_argument("--no-progress", action="store_true", help="no progress bar")
    embed.set_defaults(func=run_embed)
    return embed


def _require_pyarrow() -> None:
    """Pyarrow is importable, or a MissingExtraError naming the extra."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            f"bge-rag embed writes Parquet, which needs pyarrow ({exc}): pip install 'bge-rag[parquet]'"
        ) from exc


def run_embed(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bge-rag embed`` with parsed arguments; print a summary."""
    out = out or sys.stdout
    _require_pyarrow()  # before a model is loaded: loading one takes seconds to minutes
    from bge_core.embedder import Embedder

    from .encoder import check_outputs, embed_corpus

    outputs = check_outputs(args.outputs)
    options = {
        "device": args.device,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
        "max_length": args.max_length,
        "trust_remote_code": True if args.trust_remote_code else None,
    }
    embedder = Embedder(args.model, **{k: v for k, v in options.items() if v is not None})
    try:
        summary = embed_corpus(
            args.input,
            args.output,
            embedder,
            outputs=outputs,
            kind=args.kind,
            text_field=args.text_field,
            id_field=args.id_field or None,
            chunk_size=args.chunk_size,
            dense_format=args.dense_format,
            overwrite=args.overwrite,
            show_progress=False if args.no_progress else None,
        )
    except KeyboardInterrupt:
        print(f"Interrupted. Run the same command again to continue into {args.output}.", file=out)
        return _INTERRUPTED
    rate = summary.encoded / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"Embedded {summary.encoded} texts with {embedder!r} into {summary.output} "
        f"in {summary.seconds:.1f} s ({rate:.0f} texts/s).",
        file=out,
    )
    if summary.skipped:
        print(f"Kept {summary.skipped} rows written by an earlier run.", file=out)
    print(
        f"{summary.rows} rows in {summary.parts} Parquet parts; outputs: {', '.join(outputs)}"
        + (f"; dense vectors in {summary.output / '_dense.npy'}" if args.dense_format == "npy" else "")
        + ".",
        file=out,
    )
    return 0

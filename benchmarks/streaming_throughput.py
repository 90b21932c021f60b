"""Throughput of corpus-scale embedding: in memory, streaming to Parquet, and Ray Data actors.

Runs offline on the packaged MiniLM weights (a BGE-style CLS model, 384 dims) unless --model is
given, on real paragraphs (the Python language reference). Prints texts/s for:

1. one in-memory ``Embedder.encode`` call (all threads),
2. ``embed_corpus`` from JSONL to Parquet parts (all threads): the cost of streaming and writing,
3. one ``Embedder`` limited to one thread: what one single-CPU Ray actor can do,
4. ``embed_dataset`` on a local Ray runtime with 1 and with 2 one-thread actors: end to end
   (actor start-up and model loading included, Ray start-up not), and after start-up (the time
   of a 32-text run subtracted).

    python benchmarks/streaming_throughput.py [--texts 2000] [--model PATH] [--no-ray] [--out FILE.json]

With ``--out`` the figures are also written as JSON (with the date, CPU, versions and command) for
``benchmarks/report.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _texts(n: int) -> list[str]:
    from bge_rag.sample_data import python_docs_paragraphs

    paragraphs = python_docs_paragraphs()
    return [f"{i}. {paragraphs[i % len(paragraphs)]}" for i in range(n)]


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.0f} texts/s  ({seconds:6.2f} s)"


def _best(repeat: int, run) -> float:
    """The shortest of ``repeat`` timed runs (the machine may be shared)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--model", help="model folder or hub id (default: offline MiniLM, BGE-style)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs (not for Ray)")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--out", help="also write the results as JSON here (for benchmarks/report.py)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance

    recorded = provenance("benchmarks/streaming_throughput.py", peers=("ray", "pyarrow")) if args.out else None
    rows: list[dict] = []

    def record(path: str, seconds: float, **extra: float) -> None:
        rows.append({"path": path, "texts_per_s": len(texts) / seconds, "seconds": seconds, **extra})

    import torch

    from bge_core import Embedder
    from bge_rag.corpus import embed_corpus

    work = Path(tempfile.mkdtemp(prefix="bge-stream-bench-"))
    args.model_label = args.model or "MiniLM-L6 fixture (all-MiniLM-L6-v2 weights, BGE-style CLS pooling)"
    if args.model is None:
        from bge_rag.testing import build_dense_model

        args.model = str(build_dense_model(work / "model"))
    texts = _texts(args.texts)
    source = work / "corpus.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    options = {"precision": args.precision, "max_length": args.max_length}
    threads = torch.get_num_threads()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({threads} threads); {len(texts)} paragraphs, max_length {args.max_length}"
    )

    embedder = Embedder(args.model, **options)
    print(f"model: {embedder!r}")
    embedder.encode_documents(texts[:64])  # warm-up
    in_memory = _best(args.repeat, lambda: embedder.encode_documents(texts, show_progress=False))
    print(f"in memory, one encode call      {_rate(len(texts), in_memory)}")
    record(f"one in-memory Embedder.encode call ({threads} threads)", in_memory)

    streamed = _best(
        args.repeat,
        lambda: embed_corpus(source, work / "out", embedder, chunk_size=512, overwrite=True, show_progress=False),
    )
    print(f"embed_corpus JSONL -> Parquet   {_rate(len(texts), streamed)}  = {in_memory / streamed:.2f}x in-memory")
    record(f"embed_corpus JSONL -> Parquet ({threads} threads, 512-text chunks)", streamed)

    torch.set_num_threads(1)
    single = _best(args.repeat, lambda: embedder.encode_documents(texts, show_progress=False))
    torch.set_num_threads(threads)
    print(f"in memory, 1 thread (1 actor)   {_rate(len(texts), single)}")
    record("one Embedder, 1 thread (what a 1-CPU actor can do)", single)
    if args.no_ray:
        _write(args, recorded, texts, threads, in_memory, rows)
        return

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import ray.data

    from bge_rag.ray import embed_dataset

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        full = ray.data.read_json(str(source)).repartition(16).materialize()  # reading is not measured
        small = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts[:32])]).materialize()

        def run(ds, actors: int) -> float:
            started = time.perf_counter()
            out = embed_dataset(
                ds,
                model=args.model,
                concurrency=actors,
                num_cpus_per_actor=min(1.0, 1.5 / actors),
                batch_size=128,
                embedder_options=options,
            ).materialize()
            assert out.count() == ds.count()
            return time.perf_counter() - started

        for actors in (1, 2):
            startup, took = run(small, actors), run(full, actors)
            print(
                f"Ray Data, {actors} actor(s) x 1 thread {_rate(len(texts), took)}  end to end; "
                f"{len(texts) / (took - startup):.0f} texts/s after actor start-up ({startup:.1f} s)"
            )
            record(
                f"Ray Data, {actors} actor(s) x 1 thread, after start-up",
                took - startup,
                end_to_end_texts_per_s=len(texts) / took,
                startup_seconds=startup,
            )
    finally:
        ray.shutdown()
    _write(args, recorded, texts, threads, in_memory, rows)


def _write(args, recorded, texts, threads, in_memory, rows) -> None:  # type: ignore[no-untyped-def]
    if recorded is None:
        return
    for row in rows:
        row["over_in_memory"] = in_memory / row["seconds"]
    report = {
        **recorded,
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "model": args.model_label,
        "texts": len(texts),
        "max_length": args.max_length,
        "precision": args.precision,
        "torch_threads": threads,
        "repeat": args.repeat,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

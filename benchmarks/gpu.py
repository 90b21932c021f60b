"""The GPU check: correctness and throughput of bge_core on one CUDA device, in one command.

    ./dev.sh gpu                               # on a CUDA machine: under 10 minutes on one GPU
    python benchmarks/gpu.py --dry-run         # tiny models on the CPU (the test suite runs this)

What it does, in order, on bge-base (BERT 12 x 768) and BGE-M3-shaped (24 x 1024) models with
random weights from the real configurations (built in code: no hub access), plus a 12 x 768
cross-encoder for the reranking rows:

1. fp32 parity with FlagEmbedding on the same device (``FlagModel(use_fp16=False)``): max |diff|.
2. fp16 accuracy (bge_core's default on CUDA): min / mean cosine to fp32.
3. The out-of-memory back-off on a real CUDA out-of-memory: the allocator is capped with
   ``torch.cuda.set_per_process_memory_fraction`` and bge_core is given a batch that cannot fit;
   the vectors must equal the uncapped run's. (``--dry-run`` can only simulate the error.)
4. Throughput (texts/s, peak device memory, padding waste): bge_core defaults (fp16, token budget,
   prefetching of the next batch into pinned memory with a non-blocking copy) and with prefetching
   off; FlagModel at its defaults (fp16, batch 256) and at its best batch of a sweep;
   sentence-transformers fp16; vLLM's embedding runner and, for the reranker, its scoring runner,
   when vLLM is installed (``pip install vllm``; reported as "not installed" otherwise).

Output: a JSON file (``--out``, default ``benchmarks/results/gpu.json``) and a Markdown table.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: Real layer shapes; the dry run's stand-ins are tiny.
GPU_SHAPES = {
    "bge-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "bge-m3": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
DRY_SHAPES = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
}
RERANKER_SHAPE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
DRY_RERANKER_SHAPE = DRY_SHAPES["tiny"]
FLAG_BATCHES = (32, 64, 128, 256, 512)
DRY_FLAG_BATCHES = (8, 256)

logger = logging.getLogger("bge_rag.gpu")


# --------------------------------------------------------------------------- models and data
def build_bert(dest: Path, shape: dict[str, int], *, reranker: bool = False, seed: int = 0) -> Path:
    """A BERT folder with ``shape``, random weights and MiniLM's 30522-token tokenizer."""
    import shutil

    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from bge_rag.testing import minilm_folder

    config = BertConfig(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, **shape)
    torch.manual_seed(seed)
    if reranker:
        config.num_labels = 1
        config.architectures = ["BertForSequenceClassification"]
        model: Any = BertForSequenceClassification(config)
    else:
        model = BertModel(config, add_pooling_layer=False)
    model.eval().save_pretrained(dest)
    for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (minilm_folder() / file).is_file():
            shutil.copyfile(minilm_folder() / file, dest / file)
    return dest


def corpus(n: int) -> list[str]:
    """Real mixed-length English paragraphs (repeated when more are asked than exist)."""
    from bge_rag.sample_data import python_docs_paragraphs

    paragraphs = python_docs_paragraphs()
    return [paragraphs[i % len(paragraphs)] for i in range(n)]


def padding_waste(lengths: list[int], batches: list[np.ndarray]) -> float:
    """Fraction of the padded tokens of ``batches`` that are padding."""
    real = padded = 0
    for batch in batches:
        widths = [lengths[i] for i in batch]
        real += sum(widths)
        padded += max(widths) * len(widths)
    return 1 - real / padded if padded else 0.0


def fixed_batches(lengths: list[int], size: int) -> list[np.ndarray]:
    """FlagEmbedding's batching: sorted longest first, fixed ``size`` texts per batch."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


# --------------------------------------------------------------------------- measuring
class Device:
    """The device under test and how to synchronize and read its memory."""

    def __init__(self, dry_run: bool) -> None:
        import torch

        self.torch = torch
        if dry_run:
            self.name, self.device = "cpu (dry run)", "cpu"
        else:
            if not torch.cuda.is_available():
                raise SystemExit("No CUDA device: run on a GPU machine, or pass --dry-run.")
            self.device = "cuda:0"
            self.name = torch.cuda.get_device_name(0)
        self.cuda = self.device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None


def timed(dev: Device, run: Callable[[list[Any]], Any], items: list[Any], repeats: int) -> tuple[float, Any]:
    """Best-of-``repeats`` seconds for ``run(items)`` after a warm-up, and the last output."""
    run(items[: min(len(items), 64)])
    dev.sync()
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = run(items)
        dev.sync()
        best = min(best, time.perf_counter() - t)
    return best, out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------- checks
def check_parity(dev: Device, folder: Path, texts: list[str]) -> dict[str, Any]:
    """bge_core fp32 against FlagModel fp32 on the same device."""
    from bench import _import_flag

    from bge_core import Embedder

    ours = Embedder(folder, device=dev.device, precision="fp32").encode_documents(texts)
    flag = _import_flag().FlagModel(str(folder), use_fp16=False, devices=[dev.device], batch_size=32)
    theirs = np.asarray(flag.encode_corpus(texts), dtype=np.float32)
    diff = float(np.abs(ours - theirs).max())
    return {"check": "fp32 parity vs FlagModel", "max_abs_diff": diff, "bound": 1e-4, "ok": diff <= 1e-4}


def check_reduced_precision(dev: Device, folder: Path, texts: list[str]) -> dict[str, Any]:
    """bge_core's default precision (fp16 on CUDA) against its fp32 vectors."""
    from bge_core import Embedder

    auto = Embedder(folder, device=dev.device)
    fp32 = Embedder(folder, device=dev.device, precision="fp32").encode_documents(texts)
    cos = cosines(fp32, auto.encode_documents(texts))
    name = str(auto.dtype).replace("torch.", "")
    return {
        "check": f"default precision ({name}) vs fp32",
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "bound": 0.999,
        "ok": bool(cos.min() >= 0.999),
    }


def check_oom_backoff(dev: Device, folder: Path, texts: list[str]) -> dict[str, Any]:
    """A batch that cannot fit must be split (on a real CUDA OOM) and give the same vectors."""
    import torch

    from bge_core import Embedder, batching

    reference = Embedder(folder, device=dev.device, precision="fp32").encode_documents(texts)
    emb = Embedder(folder, device=dev.device, precision="fp32", batch_size=len(texts), max_batch_tokens=10**9)
    warnings: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    handler = Capture(logging.WARNING)
    batching_logger = logging.getLogger(batching.__name__)  # the back-off logs under bge_core.batching.oom
    batching_logger.addHandler(handler)
    try:
        if dev.cuda:
            dev.reset_peak()
            emb.encode_documents(texts[:4])  # weights and warm-up allocations in place
            total = torch.cuda.get_device_properties(0).total_memory
            # room for the weights and a few texts, not for all texts at once
            one_text = _activation_bytes(emb, max(len(t) for t in texts))
            cap = (torch.cuda.memory_allocated() + 8 * one_text) / total
            torch.cuda.set_per_process_memory_fraction(min(cap, 0.95), 0)
            try:
                got = emb.encode_documents(texts)
            finally:
                torch.cuda.set_per_process_memory_fraction(1.0, 0)
            kind = f"real CUDA OOM (allocator capped at {cap:.4f} of the device)"
        else:
            original = emb._backbone.model.forward

            def forward(*args: Any, **kwargs: Any) -> Any:
                if kwargs["input_ids"].shape[0] > 4:
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated in the dry run)")
                return original(*args, **kwargs)

            emb._backbone.model.forward = forward
            try:
                got = emb.encode_documents(texts)
            finally:
                emb._backbone.model.forward = original
            kind = "simulated OOM (dry run: no device memory to exhaust)"
    finally:
        batching_logger.removeHandler(handler)
    splits = sum("retrying in two halves" in w for w in warnings)
    diff = float(np.abs(got - reference).max())
    return {
        "check": "OOM back-off",
        "kind": kind,
        "splits": splits,
        "max_abs_diff": diff,
        "ok": splits > 0 and diff <= 1e-4,
    }


def _activation_bytes(emb: Any, tokens: int) -> int:
    config = emb._backbone.config
    return int(tokens * config.intermediate_size * 4 * 4 + tokens * tokens * config.num_attention_heads * 4)


# --------------------------------------------------------------------------- throughput
def dense_systems(dev: Device, folder: Path, texts: list[str], dry_run: bool) -> dict[str, Callable[[], Any]]:
    """Loaders of each dense system: each returns ``run(texts) -> vectors``."""
    from bench import _import_flag

    def ours(prefetch: str) -> Callable[[], Any]:
        def load() -> Any:
            from bge_core import Embedder

            os.environ["BGE_RAG_PREFETCH"] = prefetch  # an engine reads it once, when it is built
            try:
                emb = Embedder(folder, device=dev.device)
            finally:
                os.environ.pop("BGE_RAG_PREFETCH", None)
            return emb.encode_documents

        return load

    def flag(batch: int) -> Callable[[], Any]:
        def load() -> Any:
            model = _import_flag().FlagModel(str(folder), use_fp16=dev.cuda, devices=[dev.device], batch_size=batch)
            return lambda items: model.encode_corpus(items)

        return load

    def st() -> Any:
        import torch
        from sentence_transformers import SentenceTransformer, models

        transformer = models.Transformer(str(folder), max_seq_length=512)
        pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="cls")
        model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device=dev.device)
        if dev.cuda:
            model = model.to(torch.float16)
        return lambda items: model.encode(items, convert_to_numpy=True)

    def vllm_embed() -> Any:
        from vllm import LLM

        llm = LLM(model=str(folder), runner="pooling", dtype="float16", enforce_eager=False)
        return lambda items: np.stack([o.outputs.embedding for o in llm.embed(items)])

    systems: dict[str, Callable[[], Any]] = {
        "bge_core (defaults)": ours("1"),
        "bge_core, prefetch off": ours("0"),
        "FlagModel (defaults, batch 256)": flag(256),
        "FlagModel best batch": lambda: None,  # resolved by the sweep
        "sentence-transformers fp16" if dev.cuda else "sentence-transformers fp32": st,
    }
    if not dry_run:
        systems["vLLM embed (fp16)"] = vllm_embed
    systems["_flag"] = flag  # type: ignore[assignment]
    return systems


def throughput(
    dev: Device, shape: str, folder: Path, texts: list[str], dry_run: bool, repeats: int
) -> list[dict[str, Any]]:
    import torch
    from transformers import AutoTokenizer

    from bge_core.batching import DEFAULT_BATCH_SIZE, plan_batches, resolve_max_batch_tokens

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=512)["input_ids"]]
    budget = resolve_max_batch_tokens(None, torch.device(dev.device), None)
    sizes = DRY_FLAG_BATCHES if dry_run else FLAG_BATCHES
    waste = {
        "bge_core": padding_waste(lengths, plan_batches(lengths, DEFAULT_BATCH_SIZE, budget)),
        **{f"batch {b}": padding_waste(lengths, fixed_batches(lengths, b)) for b in sizes},
    }
    systems = dense_systems(dev, folder, texts, dry_run)
    flag = systems.pop("_flag")
    sweep = {}
    probe = texts[: max(64, len(texts) // 4)]
    for b in sizes:
        seconds, _ = _run_system(dev, flag(b), probe, 1)
        sweep[b] = len(probe) / seconds if seconds else 0.0
    best = max(sweep, key=sweep.get)
    systems["FlagModel best batch"] = flag(best)
    rows = []
    for label, load in systems.items():
        if label == "FlagModel best batch":
            label = f"FlagModel best batch ({best})"
        row: dict[str, Any] = {"shape": shape, "task": "dense", "system": label, "texts": len(texts)}
        try:
            dev.reset_peak()
            seconds, _ = _run_system(dev, load, texts, repeats)
            row.update(texts_per_s=len(texts) / seconds, peak_mb=dev.peak_mb())
        except ImportError as exc:
            row.update(error=f"not installed ({exc.name or exc})")
        except Exception as exc:  # noqa: BLE001 - a failing peer is reported, the run goes on
            row.update(error=f"{type(exc).__name__}: {str(exc)[:200]}")
        if label.startswith("bge_core"):
            row["padding_waste"] = waste["bge_core"]
        elif label.startswith("FlagModel"):
            row["padding_waste"] = waste[f"batch {best if 'best batch' in label else 256}"]
        rows.append(row)
    ours = next(r for r in rows if r["system"] == "bge_core (defaults)")
    for row in rows:
        if "texts_per_s" in row and "texts_per_s" in ours:
            row["ours_over_this"] = ours["texts_per_s"] / row["texts_per_s"]
    rows.append(
        {
            "shape": shape,
            "task": "dense",
            "system": "FlagModel batch sweep (texts/s)",
            "sweep": {str(k): v for k, v in sweep.items()},
            "padding_waste_by_batch": waste,
        }
    )
    return rows


def _run_system(dev: Device, load: Callable[[], Any], texts: list[Any], repeats: int) -> tuple[float, Any]:
    run = load()
    try:
        return timed(dev, run, texts, repeats)
    finally:
        del run
        dev.reset_peak()


def rerank_throughput(
    dev: Device, folder: Path, pairs: list[tuple[str, str]], dry_run: bool, repeats: int
) -> list[dict[str, Any]]:
    shape = "reranker tiny" if dry_run else "reranker 12x768"
    from bench import _import_flag

    from bge_core import Reranker

    def ours() -> Any:
        rr = Reranker(folder, device=dev.device)
        return lambda items: rr.score(items)

    def flag() -> Any:
        model = _import_flag().FlagReranker(str(folder), use_fp16=dev.cuda, devices=[dev.device])
        return lambda items: model.compute_score(items)

    def vllm_score() -> Any:
        from vllm import LLM

        llm = LLM(model=str(folder), runner="pooling", dtype="float16")
        return lambda items: [o.outputs.score for o in llm.score([q for q, _ in items], [p for _, p in items])]

    systems = {"bge_core Reranker (defaults)": ours, "FlagReranker (defaults)": flag}
    if not dry_run:
        systems["vLLM score (fp16)"] = vllm_score
    rows = []
    for label, load in systems.items():
        row: dict[str, Any] = {"shape": shape, "task": "rerank", "system": label, "texts": len(pairs)}
        try:
            dev.reset_peak()
            seconds, _ = _run_system(dev, load, pairs, repeats)
            row.update(texts_per_s=len(pairs) / seconds, peak_mb=dev.peak_mb())
        except ImportError as exc:
            row.update(error=f"not installed ({exc.name or exc})")
        except Exception as exc:  # noqa: BLE001
            row.update(error=f"{type(exc).__name__}: {str(exc)[:200]}")
        rows.append(row)
    ours_row = rows[0]
    for row in rows:
        if "texts_per_s" in row and "texts_per_s" in ours_row:
            row["ours_over_this"] = ours_row["texts_per_s"] / row["texts_per_s"]
    return rows


# --------------------------------------------------------------------------- report
def render(report: dict[str, Any]) -> str:
    lines = [
        f"Device: {report['device']}; torch {report['torch']}; {report['mode']}",
        "",
        "| check | shape | result | ok |",
        "|---|---|---|---|",
    ]
    for c in report["checks"]:
        detail = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in c.items()
            if k not in ("check", "shape", "ok")
        )
        lines.append(f"| {c['check']} | {c['shape']} | {detail} | {'yes' if c['ok'] else 'NO'} |")
    lines += [
        "",
        "| task | shape | system | texts/s | bge_core ÷ this | peak MB | padding |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in report["throughput"]:
        if "sweep" in r:
            continue
        tps = f"{r['texts_per_s']:.1f}" if "texts_per_s" in r else r.get("error", "")
        ratio = f"{r['ours_over_this']:.2f}x" if "ours_over_this" in r else ""
        peak = f"{r['peak_mb']:.0f}" if r.get("peak_mb") else ""
        waste = f"{100 * r['padding_waste']:.0f}%" if "padding_waste" in r else ""
        lines.append(f"| {r['task']} | {r['shape']} | {r['system']} | {tps} | {ratio} | {peak} | {waste} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU: checks the script runs")
    parser.add_argument("--texts", type=int, default=None, help="texts per throughput job (default 4000; dry 24)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats, best kept (default 2; dry 1)")
    parser.add_argument("--out", default=str(HERE / "results" / "gpu.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from provenance import load_average, provenance

    recorded = provenance("benchmarks/gpu.py", argv, peers=("FlagEmbedding", "sentence-transformers", "vllm"))
    dev = Device(args.dry_run)
    n = args.texts or (24 if args.dry_run else 4000)
    repeats = args.repeats or (1 if args.dry_run else 2)
    shapes = DRY_SHAPES if args.dry_run else GPU_SHAPES
    work = Path(tempfile.mkdtemp(prefix="bge-gpu-"))
    started = time.perf_counter()
    texts = corpus(n)
    checks, rows = [], []
    for shape, spec in shapes.items():
        folder = build_bert(work / shape, spec)
        small = texts[: min(len(texts), 256)]
        for check in (check_parity, check_reduced_precision, check_oom_backoff):
            result = check(dev, folder, small if check is not check_oom_backoff else small[:64])
            result["shape"] = shape
            logger.info("%s", result)
            checks.append(result)
        shape_texts = texts if "base" in shape else texts[: max(24, n // 2)]
        rows += throughput(dev, shape, folder, shape_texts, args.dry_run, repeats)
        logger.info("%s done [%.0f s]", shape, time.perf_counter() - started)
    reranker = build_bert(work / "reranker", DRY_RERANKER_SHAPE if args.dry_run else RERANKER_SHAPE, reranker=True)
    pairs = [(texts[i][:80], texts[(i * 7 + 3) % len(texts)]) for i in range(max(24, n // 4))]
    rows += rerank_throughput(dev, reranker, pairs, args.dry_run, repeats)
    report = {
        "mode": "dry run (CPU, tiny models: not a measurement)" if args.dry_run else "GPU run",
        "device": dev.name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "checks": checks,
        "throughput": rows,
        "wall_seconds": time.perf_counter() - started,
        # date, host CPU, versions (ours and the peers), command: for benchmarks/report.py
        **recorded,
        "load_average_at_end": load_average(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(render(report))
    print(f"\nwritten {out} in {report['wall_seconds']:.0f} s")
    return report


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(c["ok"] for c in result["checks"]) else 1)

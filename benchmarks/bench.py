"""Throughput of bge_core against FlagEmbedding, sentence-transformers and fastembed.

    ./dev.sh bench                     # full run (~55 min on 2 cores); writes benchmarks/results/
    ./dev.sh bench --quick             # fewer texts and repeats, for a smoke check
    python benchmarks/bench.py --help

Every system runs on the same texts and the same model folder (offline fixtures built from the
real all-MiniLM-L6-v2 weights unless --dense/--m3/--reranker name other folders). Each timed run
happens in a fresh child process (so that peak RSS is that system's own), runs of different
systems are interleaved (A B C A B C ...), and the table reports medians over the repeats, the
ratio to bge_core at its defaults, peak RSS, model-FLOP utilization against a matmul peak
measured in the same run, and for approximate paths their accuracy against fp32 (min and mean
cosine, and how many top-10 retrieval lists change on the realistic set).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# --------------------------------------------------------------------------- corpora
def build_corpora(tokenizer: Any, quick: bool) -> dict[str, list[str]]:
    """Three real-text sets: mixed-length paragraphs, short queries, near-512-token documents."""
    from bge_core.sample_data import python_docs_paragraphs

    paragraphs = python_docs_paragraphs()
    realistic = paragraphs[: 300 if quick else 1200]
    queries = []
    for p in paragraphs:
        words = p.split(".")[0].split()
        if 3 <= len(words):
            queries.append(" ".join(words[:12]))
    queries = queries[: 300 if quick else 1200]
    long_docs, current = [], []
    for p in paragraphs:
        current.append(p)
        if len(tokenizer(" ".join(current))["input_ids"]) >= 480:
            long_docs.append(" ".join(current))
            current = []
    long_docs = long_docs[: 40 if quick else 150]
    return {"realistic": realistic, "queries": queries, "long": long_docs}


def build_pairs(corpora: dict[str, list[str]], quick: bool) -> list[tuple[str, str]]:
    """Reranking job: each query against 10 paragraphs (mixed lengths)."""
    queries, docs = corpora["queries"], corpora["realistic"]
    n = 40 if quick else 120
    return [(queries[i], docs[(i * 7 + j * 13) % len(docs)]) for i in range(n) for j in range(10)]


# --------------------------------------------------------------------------- systems
@dataclass(frozen=True)
class System:
    name: str
    task: str  # dense | m3 | rerank
    label: str
    precision: str  # what it computes in
    approximate: bool = False


SYSTEMS = [
    System("ours", "dense", "bge_core (defaults)", "auto"),
    System("ours-fp32", "dense", "bge_core fp32", "fp32"),
    System("flag-default", "dense", "FlagModel (defaults, batch 256)", "fp32"),
    System("flag-b32", "dense", "FlagModel batch 32", "fp32"),
    System("st", "dense", "SentenceTransformer (defaults, batch 32)", "fp32"),
    System("fastembed-b32", "dense", "fastembed ONNX batch 32", "fp32"),
    System("fastembed-default", "dense", "fastembed ONNX (defaults, batch 256)", "fp32"),
    System("ours-m3", "m3", "bge_core dense+sparse+colbert (defaults)", "auto"),
    System("ours-m3-fp32", "m3", "bge_core dense+sparse+colbert fp32", "fp32"),
    System("flagm3-default", "m3", "BGEM3FlagModel (defaults, batch 256)", "fp32"),
    System("flagm3-b32", "m3", "BGEM3FlagModel batch 32", "fp32"),
    System("flagm3-b8", "m3", "BGEM3FlagModel batch 8", "fp32"),
    System("ours-rerank", "rerank", "bge_core Reranker (defaults)", "auto"),
    System("ours-rerank-fp32", "rerank", "bge_core Reranker fp32", "fp32"),
    System("flagrr-default", "rerank", "FlagReranker (defaults, batch 128)", "fp32"),
    System("flagrr-b32", "rerank", "FlagReranker batch 32", "fp32"),
    System("flagrr-b8", "rerank", "FlagReranker batch 8", "fp32"),
    System("st-crossencoder", "rerank", "CrossEncoder (defaults, batch 32)", "fp32"),
]
BY_NAME = {s.name: s for s in SYSTEMS}


def _import_flag() -> Any:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import import_flag_embedding  # the transformers-5 import shim for the oracle

    return import_flag_embedding()


def make_runner(name: str, folders: dict[str, str]) -> Callable[[Any], Any]:
    """Load a system and return a function that runs its job and returns float32 vectors/scores."""
    if name in ("ours", "ours-fp32"):
        from bge_core import Embedder

        emb = Embedder(folders["dense"], precision="fp32" if name.endswith("fp32") else "auto")
        return emb.encode_documents
    if name in ("ours-m3", "ours-m3-fp32"):
        from bge_core import Embedder

        emb = Embedder(folders["m3"], precision="fp32" if name.endswith("fp32") else "auto")
        return lambda texts: emb.encode(texts, dense=True, sparse=True, colbert=True).dense
    if name in ("ours-rerank", "ours-rerank-fp32"):
        from bge_core import Reranker

        rr = Reranker(folders["reranker"], precision="fp32" if name.endswith("fp32") else "auto")
        return lambda pairs: np.asarray(rr.score(pairs), dtype=np.float32)
    if name.startswith("flag-"):
        flag = _import_flag()
        batch = 256 if name == "flag-default" else 32
        model = flag.FlagModel(folders["dense"], use_fp16=False, devices="cpu", batch_size=batch)
        return lambda texts: model.encode_corpus(texts)
    if name.startswith("flagm3-"):
        flag = _import_flag()
        batch = {"flagm3-default": 256, "flagm3-b32": 32, "flagm3-b8": 8}[name]
        model = flag.BGEM3FlagModel(folders["m3"], use_fp16=False, devices="cpu", batch_size=batch)
        return lambda texts: model.encode_corpus(
            texts, return_dense=True, return_sparse=True, return_colbert_vecs=True
        )["dense_vecs"]
    if name.startswith("flagrr-"):
        flag = _import_flag()
        batch = {"flagrr-default": 128, "flagrr-b32": 32, "flagrr-b8": 8}[name]
        model = flag.FlagReranker(folders["reranker"], use_fp16=False, devices="cpu", batch_size=batch)
        return lambda pairs: np.asarray(model.compute_score(pairs), dtype=np.float32)
    if name == "st":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(folders["dense_st"], device="cpu")
        return lambda texts: model.encode(texts, convert_to_numpy=True)
    if name == "st-crossencoder":
        import torch
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(folders["reranker"], device="cpu", max_length=512, activation_fn=torch.nn.Identity())
        return lambda pairs: np.asarray(model.predict(pairs), dtype=np.float32)
    if name.startswith("fastembed-"):
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        model_id = "bge-rag/minilm-fixture-onnx"
        TextEmbedding.add_custom_model(
            model=model_id, pooling=PoolingType.CLS, normalization=True,
            sources=ModelSource(hf=model_id), dim=384, model_file="model.onnx",
        )
        model = TextEmbedding(model_id, specific_model_path=folders["dense_onnx"], threads=os.cpu_count())
        batch = 32 if name == "fastembed-b32" else 256
        return lambda texts: np.stack(list(model.embed(texts, batch_size=batch))).astype(np.float32)
    raise SystemExit(f"unknown system {name}")


# --------------------------------------------------------------------------- child process
def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it starts afresh at exec,
    so the parent's memory does not count)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    folders = json.loads(Path(args.folders).read_text())
    job = json.loads(Path(args.job).read_text())
    items = [tuple(x) for x in job] if BY_NAME[args.child].task == "rerank" else job
    started = time.perf_counter()
    run = make_runner(args.child, folders)
    load_s = time.perf_counter() - started
    run(items[:8])  # warm-up: first-call allocations and lazy initializations
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = run(items)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if args.save:
        np.save(args.save, np.asarray(out, dtype=np.float32))
    peak_mb = _peak_rss_mb()
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "load_seconds": load_s, "peak_rss_mb": peak_mb}))


def run_child(name: str, folders_file: Path, job_file: Path, save: Optional[Path]) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", name, "--folders", str(folders_file), "--job", str(job_file)]
    if save is not None:
        cmd += ["--save", str(save)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- setup
def export_onnx(dense_folder: Path, out: Path) -> Path:
    """ONNX export of the dense fixture for fastembed (last_hidden_state output)."""
    import shutil

    import torch
    from transformers import AutoModel

    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (dense_folder / name).exists():
            shutil.copyfile(dense_folder / name, out / name)
    backbone = AutoModel.from_pretrained(str(dense_folder), dtype=torch.float32, attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    model = LastHiddenState().eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        str(out / "model.onnx"),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "token_type_ids": dynamic,
                      "last_hidden_state": dynamic},
        opset_version=17,
        dynamo=False,
    )
    return out


def st_folder(dense_folder: Path, out: Path) -> Path:
    """The dense fixture as a sentence-transformers folder with BGE's CLS pooling + Normalize,
    so that sentence-transformers computes the same vectors (and the accuracy column compares
    like with like)."""
    import shutil

    shutil.copytree(dense_folder, out)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (out / "modules.json").write_text(json.dumps(modules))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384,
                                                                "pooling_mode_cls_token": True}))
    (out / "2_Normalize").mkdir()
    return out


def matmul_peak() -> dict[str, float]:
    """Achieved GFLOP/s of large square matmuls in fp32 and bf16 (the denominators of MFU)."""
    import torch

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(2048, 2048).to(dtype)
        a @ a
        best = 0.0
        for _ in range(5):
            t = time.perf_counter()
            a @ a
            best = max(best, 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
        peaks[name] = best
    return peaks


def model_flops(config: Any, lengths: list[int]) -> float:
    """FLOPs of an encoder forward pass over real (unpadded) tokens: the linear layers plus
    the attention products, 2 FLOPs per multiply-add."""
    d, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = layers * 2 * (4 * d * d + 2 * d * ffn)
    return float(sum(per_token * n + layers * 4 * n * n * d for n in lengths))


@dataclass
class Row:
    system: str
    label: str
    task: str
    corpus: str
    precision: str
    seconds: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    items: int = 0

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float:
        return self.items / self.median_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer texts and 2 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--systems", help="comma-separated subset of: " + ", ".join(BY_NAME))
    parser.add_argument("--corpora", default="realistic,queries,long", help="dense corpora to run")
    parser.add_argument("--out", default=str(RESULTS / "latest.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folders", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoTokenizer

    from bge_core.devices import cpu_supports_bf16
    from bge_core.testing import add_m3_heads, build_dense_model, build_reranker_model

    repeats = args.repeats or (2 if args.quick else 3)
    wanted = [BY_NAME[s] for s in args.systems.split(",")] if args.systems else SYSTEMS
    work = Path(tempfile.mkdtemp(prefix="bge-bench-"))
    print(f"building fixtures in {work} ...", flush=True)
    dense = build_dense_model(work / "dense")
    folders = {
        "dense": str(dense),
        "dense_st": str(st_folder(dense, work / "dense-st")),
        "m3": str(add_m3_heads(build_dense_model(work / "m3"))),
        "reranker": str(build_reranker_model(work / "reranker")),
    }
    if any(s.name.startswith("fastembed") for s in wanted):
        folders["dense_onnx"] = str(export_onnx(dense, work / "dense-onnx"))
    folders_file = work / "folders.json"
    folders_file.write_text(json.dumps(folders))

    tokenizer = AutoTokenizer.from_pretrained(str(dense))
    config = AutoConfig.from_pretrained(str(dense))
    corpora = build_corpora(tokenizer, args.quick)
    pairs = build_pairs(corpora, args.quick)
    peaks = matmul_peak()
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
          f"native bf16: {cpu_supports_bf16()}", flush=True)

    jobs: list[tuple[System, str, Any]] = []
    for corpus in args.corpora.split(","):
        jobs += [(s, corpus, corpora[corpus]) for s in wanted if s.task == "dense"]
    jobs += [(s, "realistic", corpora["realistic"]) for s in wanted if s.task == "m3"]
    jobs += [(s, "pairs", pairs) for s in wanted if s.task == "rerank"]

    rows: dict[tuple[str, str], Row] = {}
    job_files: dict[str, Path] = {}
    for system, corpus, items in jobs:
        if corpus not in job_files:
            job_files[corpus] = work / f"{corpus}.json"
            job_files[corpus].write_text(json.dumps(items))
        rows[(system.name, corpus)] = Row(system.name, system.label, system.task, corpus, system.precision,
                                          items=len(items))
    saves: dict[tuple[str, str], Path] = {}
    for r in range(repeats):
        for system, corpus, _ in jobs:  # interleaved: every system once per round
            save = work / f"{system.name}-{corpus}.npy" if r == 0 else None
            result = run_child(system.name, folders_file, job_files[corpus], save)
            row = rows[(system.name, corpus)]
            row.seconds.append(result["seconds"])
            row.peak_rss_mb.append(result["peak_rss_mb"])
            if save is not None:
                saves[(system.name, corpus)] = save
            print(f"  round {r + 1}: {system.name:18} {corpus:9} {row.items / result['seconds']:8.1f} items/s "
                  f"peak {result['peak_rss_mb']:.0f} MB", flush=True)

    report = summarize(rows, saves, corpora, pairs, tokenizer, config, peaks)
    report["machine"] = {
        "cores": os.cpu_count(),
        "native_bf16": cpu_supports_bf16(),
        "python": platform.python_version(),
    }
    report["command"] = "python benchmarks/bench.py " + " ".join(sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(render_table(report))
    print(f"\nwritten {out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def summarize(rows, saves, corpora, pairs, tokenizer, config, peaks) -> dict[str, Any]:
    lengths = {name: [len(x) for x in tokenizer(texts, truncation=True, max_length=512)["input_ids"]]
               for name, texts in corpora.items()}
    lengths["pairs"] = [len(x) for x in tokenizer([q for q, _ in pairs], [p for _, p in pairs],
                                                  truncation="only_second", max_length=512)["input_ids"]]
    ours_dtype = _ours_dtype()
    out_rows = []
    for (name, corpus), row in rows.items():
        system = BY_NAME[name]
        reference = {"dense": "ours-fp32", "m3": "ours-m3-fp32", "rerank": "ours-rerank-fp32"}[system.task]
        baseline = {"dense": "ours", "m3": "ours-m3", "rerank": "ours-rerank"}[system.task]
        base = rows.get((baseline, corpus))
        precision = ours_dtype if row.precision == "auto" else row.precision
        achieved = model_flops(config, lengths[corpus]) / row.median_s / 1e9
        entry = {
            "system": name,
            "label": row.label,
            "task": row.task,
            "corpus": corpus,
            "items": row.items,
            "precision": precision,
            "median_seconds": row.median_s,
            "throughput": row.throughput,
            "runs_seconds": row.seconds,
            "peak_rss_mb": max(row.peak_rss_mb),
            "ours_over_this": (base.throughput / row.throughput) if base else None,
            "gflops": achieved,
            "mfu": achieved / peaks[precision],
        }
        ref_file, own_file = saves.get((reference, corpus)), saves.get((name, corpus))
        if ref_file is not None and own_file is not None and name != reference:
            ref, own = np.load(ref_file), np.load(own_file)
            if system.task == "rerank":
                entry["max_abs_score_diff"] = float(np.abs(ref - own).max())
            else:
                cos = np.sum(ref * own, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(own, axis=1))
                entry["min_cosine"], entry["mean_cosine"] = float(cos.min()), float(cos.mean())
                if corpus == "realistic":
                    entry["top10_changed"] = _top10_changes(ref, own)
        out_rows.append(entry)
    return {"rows": out_rows, "matmul_peak_gflops": peaks, "cpu": _cpu_name()}


def _ours_dtype() -> str:
    import torch

    from bge_core.devices import resolve_precision

    return "bf16" if resolve_precision("auto", torch.device("cpu")) == torch.bfloat16 else "fp32"


def _top10_changes(ref: np.ndarray, own: np.ndarray) -> str:
    """How many of 100 queries (the first 100 vectors as queries) get a different top-10 list."""
    queries = range(min(100, len(ref)))
    changed = 0
    for q in queries:
        a = set(np.argsort(-(ref @ ref[q]))[1:11].tolist())
        b = set(np.argsort(-(own @ own[q]))[1:11].tolist())
        changed += a != b
    return f"{changed}/{len(queries)}"


def render_table(report: dict[str, Any]) -> str:
    machine, peak = report["machine"], report["matmul_peak_gflops"]
    lines = [
        f"CPU: {report['cpu']} ({machine['cores']} cores, native bf16: {machine['native_bf16']}); "
        f"matmul peak fp32 {peak['fp32']:.0f} / bf16 {peak['bf16']:.0f} GFLOP/s",
        "",
        "| task | corpus | system | items/s | bge_core defaults ÷ this | peak RSS MB | MFU | accuracy vs fp32 |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        accuracy = ""
        if "min_cosine" in row:
            accuracy = f"cos min {row['min_cosine']:.5f} / mean {row['mean_cosine']:.6f}"
            if "top10_changed" in row:
                accuracy += f", top-10 changed {row['top10_changed']}"
        elif "max_abs_score_diff" in row:
            accuracy = f"max |Δscore| {row['max_abs_score_diff']:.2e}"
        ratio = f"{row['ours_over_this']:.2f}x" if row["ours_over_this"] else ""
        mfu = f"{100 * row['mfu']:.0f}% ({row['precision']})"
        lines.append(
            f"| {row['task']} | {row['corpus']} | {row['label']} | {row['throughput']:.1f} | {ratio} | "
            f"{row['peak_rss_mb']:.0f} | {mfu} | {accuracy} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

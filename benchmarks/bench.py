"""Throughput of bge_core against FlagEmbedding, sentence-transformers (torch, ONNX and OpenVINO
backends) and fastembed, on a quiet CPU and with one core taken by another process.

    ./dev.sh bench --focused           # the Benchmarks page's CPU tables: 3 model shapes x quiet/busy, ~12 min
    ./dev.sh bench                     # full MiniLM run (~60 min on 2 cores); writes benchmarks/results/
    ./dev.sh bench --quick             # fewer texts and repeats, for a smoke check
    python benchmarks/bench.py --help

Model shapes (``--shapes``): ``minilm`` (the real all-MiniLM-L6-v2 weights, 6 x 384), ``bge-base``
(BERT 12 x 768, the configuration of BAAI/bge-base-en-v1.5) and ``bge-large-4l`` (the 24 x 1024
width of bge-large-en-v1.5 and BGE-M3, 4 of its 24 layers: per-layer cost is what the ratios
measure). The last two get random weights from those real configurations, built in code: the
same arithmetic as trained weights, so speed ratios transfer, and vectors still compare across
systems. ``--busy both`` runs every system twice: on a quiet machine and with a competing process
spinning on one core (started before the system's process and stopped after it).

The sentence-transformers ONNX and OpenVINO backends need transformers 4.x; they run in their own
environment (``.venv-bench-ov``, built by ``./dev.sh bench``; ``--ov-python`` names another).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# --------------------------------------------------------------------------- corpora
def build_corpora(tokenizer: Any, quick: bool) -> dict[str, list[str]]:
    """Three real-text sets: mixed-length paragraphs, short queries, near-512-token documents."""
    from bge_rag.sample_data import python_docs_paragraphs

    paragraphs = python_docs_paragraphs()
    realistic = paragraphs[: 300 if quick else 1200]
    queries = []
    for p in paragraphs:
        words = p.split(".")[0].split()
        if len(words) >= 3:
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
    System("ours-one-stream", "dense", "bge_core, one stream (BGE_RAG_CPU_STREAMS=1)", "auto"),
    System("st-openvino", "dense", "SentenceTransformer backend=openvino (defaults)", "ov"),
    System("st-onnx", "dense", "SentenceTransformer backend=onnx (defaults)", "fp32"),
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
#: Systems that run in the transformers-4 environment (sentence-transformers' optimum backends).
OV_ENV_SYSTEMS = ("st-openvino", "st-onnx")
#: What --focused runs: the engine (default streams and the former one-stream execution) against
#: the strongest CPU peers, at every shape, quiet and with one core busy.
FOCUSED_SYSTEMS = ("ours", "ours-one-stream", "st-openvino", "st-onnx")
FOCUSED_TEXTS = {"minilm": 600, "bge-base": 160, "bge-large-4l": 240}

# --------------------------------------------------------------------------- model shapes
#: Real configurations (BAAI/bge-base-en-v1.5, BAAI/bge-large-en-v1.5; BGE-M3 has the same
#: 24 x 1024 x 4096 layers with an XLM-R vocabulary). ``layers`` may be fewer than the model's.
SHAPES: dict[str, dict[str, Any]] = {
    "bge-base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "label": "bge-base (BERT 12x768)",
    },
    "bge-large-4l": {
        "hidden_size": 1024,
        "num_hidden_layers": 4,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "label": "bge-large / BGE-M3 width (4 of 24 layers x1024)",
    },
    "bge-large": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "label": "bge-large / BGE-M3 shape (24x1024)",
    },
}
SHAPE_LABELS = {"minilm": "MiniLM (6x384, real weights)", **{k: v["label"] for k, v in SHAPES.items()}}


def build_shape(name: str, dest: Path, seed: int = 0) -> Path:
    """A BERT folder with a real BGE configuration and random weights (MiniLM's tokenizer, whose
    30522-token vocabulary is BGE English's). ``minilm`` is the real-weight fixture."""
    from bge_rag.testing import build_dense_model, minilm_folder

    if name == "minilm":
        return build_dense_model(dest)
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    spec = {k: v for k, v in SHAPES[name].items() if k != "label"}
    config = BertConfig(
        vocab_size=30522,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        **spec,
    )
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(dest)
    for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (minilm_folder() / file).is_file():
            shutil.copyfile(minilm_folder() / file, dest / file)
    return dest


def _import_flag() -> Any:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import import_flag_embedding  # the transformers-5 import shim for the oracle

    return import_flag_embedding()


def make_runner(name: str, folders: dict[str, str]) -> Callable[[Any], Any]:
    """Load a system and return a function that runs its job and returns float32 vectors/scores."""
    if name in ("ours", "ours-fp32", "ours-one-stream"):
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
    if name in OV_ENV_SYSTEMS:
        from sentence_transformers import SentenceTransformer

        backend = "openvino" if name == "st-openvino" else "onnx"
        model = SentenceTransformer(folders["dense_st"], device="cpu", backend=backend)
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
            model=model_id,
            pooling=PoolingType.CLS,
            normalization=True,
            sources=ModelSource(hf=model_id),
            dim=384,
            model_file="model.onnx",
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
    if args.shape:
        folders = {**folders, **folders["shapes"][args.shape]}
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


def run_child(
    name: str,
    folders_file: Path,
    job_file: Path,
    save: Path | None,
    *,
    shape: str = "",
    busy: bool = False,
    ov_python: str = "",
) -> dict[str, float]:
    """Run one system in a fresh process; with ``busy``, a competing process spins on one core
    from before that process starts until after it ends."""
    python = ov_python if name in OV_ENV_SYSTEMS else sys.executable
    cmd = [python, __file__, "--child", name, "--folders", str(folders_file), "--job", str(job_file)]
    if shape:
        cmd += ["--shape", shape]
    if save is not None:
        cmd += ["--save", str(save)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if name == "ours-one-stream":
        env["BGE_RAG_CPU_STREAMS"] = "1"
    spinner = start_busy() if busy else None
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    finally:
        if spinner is not None:
            stop_busy(spinner)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_busy() -> subprocess.Popen:
    """A process that keeps one core busy (a pure-Python spin loop, one thread)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)
    return spinner


def stop_busy(spinner: subprocess.Popen) -> None:
    spinner.kill()
    spinner.wait()


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
        dynamic_axes={
            "input_ids": dynamic,
            "attention_mask": dynamic,
            "token_type_ids": dynamic,
            "last_hidden_state": dynamic,
        },
        opset_version=17,
        dynamo=False,
    )
    return out


def st_folder(dense_folder: Path, out: Path, dim: int = 384) -> Path:
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
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": dim, "pooling_mode_cls_token": True})
    )
    (out / "2_Normalize").mkdir()
    return out


def matmul_peak() -> dict[str, float | None]:
    """Achieved GFLOP/s of large square matmuls in fp32 and bf16 (the denominators of MFU).

    bf16 is measured only on a CPU with native bf16 (AVX512-BF16 / AMX): elsewhere torch runs it on
    a scalar reference GEMM (minutes for one 2048^2 product) and nothing here computes in bf16.
    """
    import torch

    from bge_core.devices import cpu_supports_bf16

    peaks: dict[str, float | None] = {"fp32": None, "bf16": None}
    kinds = (("fp32", torch.float32), ("bf16", torch.bfloat16)) if cpu_supports_bf16() else (("fp32", torch.float32),)
    for name, dtype in kinds:
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
    shape: str = "minilm"
    busy: bool = False
    seconds: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    items: int = 0

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float:
        return self.items / self.median_s


Key = tuple[str, str, str, bool]  # system, corpus, shape, busy


def export_st_backends(folder: Path, ov_python: str, backends: list[str]) -> None:
    """Export an ST folder to ONNX / OpenVINO once (ST saves them under onnx/ and openvino/), so
    that timed runs load the exported model instead of exporting again."""
    code = (
        "import sys\nfrom sentence_transformers import SentenceTransformer\n"
        "for backend in sys.argv[2:]:\n"
        "    m = SentenceTransformer(sys.argv[1], device='cpu', backend=backend)\n"
        "    m.save_pretrained(sys.argv[1])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([ov_python, "-c", code, str(folder), *backends], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"exporting {folder} to {backends} failed:\n{result.stderr[-3000:]}")


def build_folders(work: Path, shapes: list[str], wanted: list[System], ov_python: str) -> dict[str, Any]:
    from transformers import AutoConfig

    from bge_rag.testing import add_m3_heads, build_dense_model, build_reranker_model

    tasks = {s.task for s in wanted}
    folders: dict[str, Any] = {"shapes": {}}
    for shape in shapes:
        dense = build_shape(shape, work / shape)
        dim = AutoConfig.from_pretrained(str(dense)).hidden_size
        entry = {"dense": str(dense), "dense_st": str(st_folder(dense, work / f"{shape}-st", dim))}
        backends = [b for b, n in (("onnx", "st-onnx"), ("openvino", "st-openvino")) if n in {s.name for s in wanted}]
        if backends:
            if not Path(ov_python).exists():
                raise SystemExit(f"{ov_python} not found: ./dev.sh bench builds it (or pass --ov-python)")
            export_st_backends(Path(entry["dense_st"]), ov_python, backends)
        if any(s.name.startswith("fastembed") for s in wanted) and shape == "minilm":
            entry["dense_onnx"] = str(export_onnx(dense, work / f"{shape}-onnx"))
        folders["shapes"][shape] = entry
    first = folders["shapes"][shapes[0]]
    folders.update({k: v for k, v in first.items()})
    if "m3" in tasks:
        folders["m3"] = str(add_m3_heads(build_dense_model(work / "m3")))
    if "rerank" in tasks:
        folders["reranker"] = str(build_reranker_model(work / "reranker"))
    return folders


def fp32_reference(folder: str, texts: list[str], out: Path) -> Path:
    """bge_core fp32 vectors (FlagEmbedding's numbers), the reference of the accuracy column."""
    from bge_core import Embedder

    np.save(out, Embedder(folder, precision="fp32").encode_documents(texts))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer texts and 2 repeats")
    parser.add_argument(
        "--focused",
        action="store_true",
        help="the documented run: ours vs sentence-transformers (torch/ONNX/OpenVINO), every shape, "
        "quiet and busy, realistic corpus (about 12 minutes on 2 cores)",
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--systems", help="comma-separated subset of: " + ", ".join(BY_NAME))
    parser.add_argument("--corpora", default=None, help="dense corpora to run (default realistic,queries,long)")
    parser.add_argument("--shapes", default=None, help="model shapes: minilm, " + ", ".join(SHAPES))
    parser.add_argument(
        "--busy",
        choices=("off", "on", "both"),
        default=None,
        help="run with a competing busy process on one core (default off; --focused: both)",
    )
    parser.add_argument("--texts", type=int, default=None, help="texts per dense corpus (default per mode)")
    parser.add_argument(
        "--ov-python",
        default=str(HERE.parent / ".venv-bench-ov" / "bin" / "python"),
        help="python of the environment with sentence-transformers[onnx,openvino]",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSON output (default benchmarks/results/latest.json, or focused.json with --focused)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--folders", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from provenance import load_average, provenance
    from transformers import AutoConfig, AutoTokenizer

    from bge_core.devices import available_cpus, cpu_supports_bf16

    # date, CPU features, versions (ours and the peers in this environment), command: for benchmarks/report.py
    recorded = provenance("benchmarks/bench.py", peers=("FlagEmbedding", "sentence-transformers", "fastembed"))

    focused = args.focused
    repeats = args.repeats or (2 if (args.quick or focused) else 3)
    default_systems = ",".join(FOCUSED_SYSTEMS) if focused else None
    systems = args.systems or default_systems
    wanted = [BY_NAME[s] for s in systems.split(",")] if systems else SYSTEMS
    shapes = (
        args.shapes or ("minilm," + ",".join(k for k in SHAPES if k != "bge-large") if focused else "minilm")
    ).split(",")
    unknown = [s for s in shapes if s != "minilm" and s not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; choose from minilm, {', '.join(SHAPES)}")
    busy_modes = {"off": [False], "on": [True], "both": [False, True]}[args.busy or ("both" if focused else "off")]
    corpora_names = (args.corpora or ("realistic" if focused else "realistic,queries,long")).split(",")
    work = Path(tempfile.mkdtemp(prefix="bge-bench-"))
    print(f"building fixtures in {work} ...", flush=True)
    folders = build_folders(work, shapes, wanted, args.ov_python)
    folders_file = work / "folders.json"
    folders_file.write_text(json.dumps(folders))

    tokenizer = AutoTokenizer.from_pretrained(folders["dense"])
    corpora = build_corpora(tokenizer, args.quick)
    pairs = build_pairs(corpora, args.quick)
    peaks = matmul_peak()
    print(
        f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {_gflops(peaks['bf16'])}; "
        f"native bf16: {cpu_supports_bf16()}; available CPUs: {available_cpus()}",
        flush=True,
    )

    def texts_for(corpus: str, shape: str) -> list[str]:
        n = args.texts or (FOCUSED_TEXTS.get(shape, 200) if focused else None)
        return corpora[corpus][:n] if n else corpora[corpus]

    # (system, corpus, shape, items) in interleaving order; dense systems run at every shape
    jobs: list[tuple[System, str, str, Any]] = []
    for shape in shapes:
        for corpus in corpora_names:
            jobs += [(s, corpus, shape, texts_for(corpus, shape)) for s in wanted if s.task == "dense"]
    jobs += [(s, "realistic", "minilm", corpora["realistic"]) for s in wanted if s.task == "m3"]
    jobs += [(s, "pairs", "minilm", pairs) for s in wanted if s.task == "rerank"]

    rows: dict[Key, Row] = {}
    job_files: dict[tuple[str, str], Path] = {}
    saves: dict[Key, Path] = {}
    for system, corpus, shape, items in jobs:
        if (corpus, shape) not in job_files:
            job_files[(corpus, shape)] = work / f"{corpus}-{shape}.json"
            job_files[(corpus, shape)].write_text(json.dumps(items))
            if system.task == "dense" and not any(s.name == "ours-fp32" for s in wanted):
                ref = fp32_reference(folders["shapes"][shape]["dense"], items, work / f"ref-{corpus}-{shape}.npy")
                saves[("ours-fp32", corpus, shape, False)] = ref
        for busy in busy_modes:
            rows[(system.name, corpus, shape, busy)] = Row(
                system.name, system.label, system.task, corpus, system.precision, shape, busy, items=len(items)
            )
    started = time.perf_counter()
    for r in range(repeats):
        for busy in busy_modes:
            for system, corpus, shape, _ in jobs:  # interleaved: every system once per round
                key = (system.name, corpus, shape, busy)
                save = work / f"{system.name}-{corpus}-{shape}.npy" if (r == 0 and not busy) else None
                result = run_child(
                    system.name,
                    folders_file,
                    job_files[(corpus, shape)],
                    save,
                    shape=shape if system.task == "dense" else "",
                    busy=busy,
                    ov_python=args.ov_python,
                )
                row = rows[key]
                row.seconds.append(result["seconds"])
                row.peak_rss_mb.append(result["peak_rss_mb"])
                if save is not None:
                    saves[key] = save
                print(
                    f"  round {r + 1} {'busy ' if busy else 'quiet'}: {system.name:18} {shape:12} {corpus:9} "
                    f"{row.items / result['seconds']:8.1f} items/s peak {result['peak_rss_mb']:.0f} MB "
                    f"[{time.perf_counter() - started:.0f} s]",
                    flush=True,
                )

    configs = {shape: AutoConfig.from_pretrained(folders["shapes"][shape]["dense"]) for shape in shapes}
    report = summarize(rows, saves, corpora, pairs, tokenizer, configs, peaks, texts_for)
    report["machine"] = {
        "cores": os.cpu_count(),
        "available_cpus": available_cpus(),
        "native_bf16": cpu_supports_bf16(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "sentence_transformers_ov_env": _ov_versions(args.ov_python)
        if any(s.name in OV_ENV_SYSTEMS for s in wanted)
        else None,
    }
    report.update({k: recorded[k] for k in ("date", "cpu_features", "versions", "load_average_at_start", "commit")})
    report["command"] = recorded["command"]
    report["load_average_at_end"] = load_average()
    report["wall_seconds"] = time.perf_counter() - started
    out = Path(args.out or (RESULTS / ("focused.json" if focused else "latest.json")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(render_table(report))
    print(f"\nwritten {out}")


def _version(package: str) -> str:
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:  # noqa: BLE001 - a missing package is reported as such
        return "not installed"


def _ov_versions(ov_python: str) -> dict[str, str]:
    code = (
        "import json\nfrom importlib.metadata import version\n"
        "print(json.dumps({p: version(p) for p in ('sentence-transformers', 'transformers', 'openvino', "
        "'onnxruntime', 'optimum-intel', 'optimum-onnx', 'torch')}))"
    )
    result = subprocess.run([ov_python, "-c", code], capture_output=True, text=True)
    return json.loads(result.stdout) if result.returncode == 0 else {"error": result.stderr[-300:]}


def summarize(rows, saves, corpora, pairs, tokenizer, configs, peaks, texts_for=None) -> dict[str, Any]:
    from provenance import cpu_name

    texts_for = texts_for or (lambda corpus, shape: corpora[corpus])
    lengths: dict[tuple[str, str], list[int]] = {}

    def lengths_of(corpus: str, shape: str) -> list[int]:
        if (corpus, shape) not in lengths:
            if corpus == "pairs":
                lengths[(corpus, shape)] = [
                    len(x)
                    for x in tokenizer(
                        [q for q, _ in pairs], [p for _, p in pairs], truncation="only_second", max_length=512
                    )["input_ids"]
                ]
            else:
                texts = texts_for(corpus, shape)
                lengths[(corpus, shape)] = [
                    len(x) for x in tokenizer(texts, truncation=True, max_length=512)["input_ids"]
                ]
        return lengths[(corpus, shape)]

    ours_dtype = _ours_dtype()
    out_rows = []
    for (name, corpus, shape, busy), row in rows.items():
        system = BY_NAME[name]
        reference = {"dense": "ours-fp32", "m3": "ours-m3-fp32", "rerank": "ours-rerank-fp32"}[system.task]
        baseline = {"dense": "ours", "m3": "ours-m3", "rerank": "ours-rerank"}[system.task]
        base = rows.get((baseline, corpus, shape, busy))
        quiet = rows.get((name, corpus, shape, False))
        precision = ours_dtype if row.precision == "auto" else row.precision
        peak_key = "bf16" if precision in ("bf16", "ov") and ours_dtype == "bf16" else "fp32"
        achieved = model_flops(configs[shape], lengths_of(corpus, shape)) / row.median_s / 1e9
        entry = {
            "system": name,
            "label": row.label,
            "task": row.task,
            "corpus": corpus,
            "shape": shape,
            "busy": busy,
            "items": row.items,
            "precision": precision,
            "median_seconds": row.median_s,
            "throughput": row.throughput,
            "runs_seconds": row.seconds,
            "peak_rss_mb": max(row.peak_rss_mb),
            "ours_over_this": (base.throughput / row.throughput) if base else None,
            "quiet_over_busy": (quiet.throughput / row.throughput) if (busy and quiet) else None,
            "gflops": achieved,
            "mfu": achieved / peaks[peak_key],
            "mfu_peak": peak_key,
        }
        ref_file, own_file = saves.get((reference, corpus, shape, False)), saves.get((name, corpus, shape, False))
        if ref_file is not None and own_file is not None and name != reference:
            ref, own = np.load(ref_file), np.load(own_file)
            if system.task == "rerank":
                entry["max_abs_score_diff"] = float(np.abs(ref - own).max())
            else:
                cos = np.sum(ref * own, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(own, axis=1))
                entry["min_cosine"], entry["mean_cosine"] = float(cos.min()), float(cos.mean())
                if corpus == "realistic" and len(ref) > 11:
                    entry["top10_changed"] = _top10_changes(ref, own)
        out_rows.append(entry)
    return {
        "rows": out_rows,
        "matmul_peak_gflops": peaks,
        "cpu": cpu_name(),
        "shapes": {k: SHAPE_LABELS.get(k, k) for k in configs},
    }


def _gflops(value: float | None) -> str:
    return "not native (not measured)" if value is None else f"{value:.0f} GFLOP/s"


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
        f"CPU: {report['cpu']} ({machine['cores']} cores, {machine.get('available_cpus')} available, "
        f"native bf16: {machine['native_bf16']}); "
        f"matmul peak fp32 {peak['fp32']:.0f} GFLOP/s / bf16 {_gflops(peak['bf16'])}",
        "",
        "| task | shape | corpus | machine | system | items/s | bge_core defaults ÷ this | quiet ÷ busy "
        "| peak RSS MB | MFU | accuracy vs fp32 |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    from report import accuracy_cell

    for row in report["rows"]:
        accuracy = accuracy_cell(row)
        ratio = f"{row['ours_over_this']:.2f}x" if row["ours_over_this"] else ""
        drop = f"{row['quiet_over_busy']:.2f}x" if row.get("quiet_over_busy") else ""
        mfu = f"{100 * row['mfu']:.0f}% ({row['mfu_peak']})"
        lines.append(
            f"| {row['task']} | {row.get('shape', 'minilm')} | {row['corpus']} | "
            f"{'1 core busy' if row.get('busy') else 'quiet'} | {row['label']} | {row['throughput']:.1f} | {ratio} | "
            f"{drop} | {row['peak_rss_mb']:.0f} | {mfu} | {accuracy} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""LLM reranker throughput: bge_core.Reranker against FlagEmbedding's FlagLLMReranker.

One model for both: bge-reranker-v2-gemma's shape (Gemma-2B widths: hidden 2048, FFN 16384,
8 heads of 256, one KV head, the 256000-token vocabulary) with only a few layers, random weights
saved in code (no hub). Each system runs in a fresh process per round; rounds are interleaved
(A B C D, A B C D, ...), so drift in the machine's speed hits every system alike. Loading and a
two-pair warm-up are not timed; the timed part is one ``score`` / ``compute_score`` call over
all pairs. Prints pairs per second per system and the ratios against FlagLLMReranker.

FlagLLMReranker is run with its defaults (batch_size=128; fp32 on CPU, where it turns
``use_fp16`` off) and at its best batch size (the fastest of ``--flag-batches``, measured once
beforehand). bge_core runs its defaults (``precision="auto"``: bf16 on CPUs with native bf16) and
``precision="fp32"`` (the exact-parity setting).

    python benchmarks/llm_rerank.py --layers 2 --pairs 16 --rounds 3
    python benchmarks/llm_rerank.py --layers 2 --pairs 8 --rounds 2 --flag-batches 2,4 \
        --out benchmarks/results/llm-rerank.json    # also write the results (date, CPU, versions)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("llm_rerank_bench")

SYSTEMS = ("bge_core", "bge_core-fp32", "flag-default", "flag-best")


def build_model(dest: Path, layers: int, seed: int = 7) -> Path:
    """Write a Gemma causal LM with Gemma-2B widths, ``layers`` layers and random weights."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GemmaConfig, GemmaForCausalLM, PreTrainedTokenizerFast

    from bge_rag.sample_data import python_docs_paragraphs

    dest.mkdir(parents=True, exist_ok=True)
    rust = Tokenizer(models.BPE(unk_token="<unk>"))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8000,
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rust.train_from_iterator(python_docs_paragraphs(), trainer)
    PreTrainedTokenizerFast(
        tokenizer_object=rust,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    ).save_pretrained(str(dest))
    config = GemmaConfig(
        vocab_size=256000,
        hidden_size=2048,
        intermediate_size=16384,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=1,
        head_dim=256,
        max_position_embeddings=8192,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    config.architectures = ["GemmaForCausalLM"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GemmaForCausalLM(config)
    model.save_pretrained(str(dest), safe_serialization=True)
    return dest


def make_pairs(n: int) -> list[tuple[str, str]]:
    from bge_rag.sample_data import python_docs_paragraphs

    paragraphs = [p for p in python_docs_paragraphs() if len(p) > 200]
    return [(paragraphs[(3 * i + 1) % len(paragraphs)][:120], paragraphs[i % len(paragraphs)][:600]) for i in range(n)]


def worker(system: str, folder: str, n_pairs: int, batch: int) -> dict:
    """Load one system, warm it up, time one call over all pairs (runs in its own process)."""
    pairs = make_pairs(n_pairs)
    if system.startswith("bge_core"):
        from bge_core import Reranker

        rr = Reranker(folder, precision="fp32" if system.endswith("fp32") else "auto")
        rr.score(pairs[:2])
        start = time.perf_counter()
        scores = rr.score(pairs)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import import_flag_embedding

        flag = import_flag_embedding()
        rr = flag.FlagLLMReranker(folder, use_fp16=False, devices="cpu", batch_size=batch)
        rr.compute_score(pairs[:2])
        start = time.perf_counter()
        scores = rr.compute_score(pairs)
    seconds = time.perf_counter() - start
    return {
        "system": system,
        "seconds": seconds,
        "pairs": len(scores),
        "batch": batch,
        "scores": [float(x) for x in scores],
    }


def run_worker(system: str, folder: Path, n_pairs: int, batch: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        system,
        "--folder",
        str(folder),
        "--pairs",
        str(n_pairs),
        "--batch",
        str(batch),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flag-batches", default="4,16", help="batch sizes tried for FlagLLMReranker's best")
    parser.add_argument("--folder", help="model folder (built here when missing)")
    parser.add_argument("--out", help="also write the results as JSON here (for benchmarks/report.py)")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.pairs, args.batch)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import load_average, provenance

    recorded = provenance("benchmarks/llm_rerank.py", argv, peers=("FlagEmbedding",)) if args.out else None
    tmp = None
    built = not (args.folder and (Path(args.folder) / "config.json").is_file())
    if not built:
        folder = Path(args.folder)
    else:
        tmp = tempfile.TemporaryDirectory()
        folder = build_model(Path(args.folder or tmp.name) / "gemma-2b-shape", args.layers)
    batches = [int(b) for b in args.flag_batches.split(",")]
    trial = {b: run_worker("flag-best", folder, args.pairs, b)["seconds"] for b in batches}
    best = min(trial, key=trial.get)
    logger.info(
        "FlagLLMReranker batch sizes tried: %s -> best %d", ", ".join(f"{b}: {s:.1f}s" for b, s in trial.items()), best
    )
    times: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    scores: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for system in SYSTEMS:
            batch = best if system == "flag-best" else 128
            result = run_worker(system, folder, args.pairs, batch)
            times[system].append(result["seconds"])
            scores[system] = result["scores"]
            logger.info("round %d %-14s %.2fs", r + 1, system, result["seconds"])
    rate = {s: args.pairs / statistics.median(t) for s, t in times.items()}
    print(f"\nGemma-2B widths, {args.layers} layers, vocab 256000; {args.pairs} pairs; median of {args.rounds} rounds")
    print(f"{'system':<16}{'pairs/s':>10}{'vs flag default':>18}{'vs flag best':>15}")
    for s in SYSTEMS:
        print(f"{s:<16}{rate[s]:>10.2f}{rate[s] / rate['flag-default']:>17.2f}x{rate[s] / rate['flag-best']:>14.2f}x")
    print(f"(flag-best = FlagLLMReranker batch_size={best}; flag-default = batch_size=128)")
    ref = scores["flag-default"]
    for s in ("bge_core-fp32", "bge_core"):
        dev = max(abs(a - b) for a, b in zip(scores[s], ref))
        print(
            f"max |{s} - FlagLLMReranker| over the {len(ref)} scores: {dev:.2e} "
            f"(score std {statistics.pstdev(ref):.3f})"
        )
    if recorded is not None:
        report = {
            **recorded,
            "load_average_at_end": load_average(),
            "model": f"the model in {folder}"
            if tmp is None and args.folder and not built
            else f"Gemma-2B widths (hidden 2048, FFN 16384, 8 heads, 1 KV head, vocabulary 256000), "
            f"{args.layers} layers, random weights",
            "pairs": args.pairs,
            "rounds": args.rounds,
            "flag_batches_tried": {str(b): s for b, s in trial.items()},
            "flag_best_batch": best,
            "rows": [
                {
                    "system": s,
                    "pairs_per_s": rate[s],
                    "runs_seconds": times[s],
                    "over_flag_default": rate[s] / rate["flag-default"],
                    "over_flag_best": rate[s] / rate["flag-best"],
                    "max_abs_diff_to_flag_fp32": max(abs(a - b) for a, b in zip(scores[s], ref)),
                }
                for s in SYSTEMS
            ],
            "score_std": statistics.pstdev(ref),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"written {args.out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

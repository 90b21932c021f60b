"""benchmarks/serve_load.py: the folder both servers get is read the same way by sentence-transformers
(what Infinity's torch engine loads) and by bge_core, so the comparison computes the same vectors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import serve_load  # noqa: E402

from bge_core import Embedder  # noqa: E402
from bge_rag.testing import build_dense_model  # noqa: E402


@pytest.mark.parity
@pytest.mark.slow
def test_the_benchmark_folder_means_cls_pooling_and_normalize_to_both_engines(tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = serve_load.add_st_layout(build_dense_model(tmp_path / "m"))
    texts = ["what is a generator", "The for statement iterates over the items of any sequence, in order."]
    ours = Embedder(str(folder), precision="fp32").encode_documents(texts)
    st = SentenceTransformer(str(folder), device="cpu")
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Normalize"]
    assert st[1].get_config_dict()["pooling_mode"] == "cls"
    theirs = st.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(theirs, ours, atol=2e-5)
    # without the layout sentence-transformers mean-pools: the vectors would differ (the earlier bug)
    plain = SentenceTransformer(str(build_dense_model(tmp_path / "plain")), device="cpu").encode(texts)
    assert np.min(np.sum(plain / np.linalg.norm(plain, axis=1, keepdims=True) * ours, axis=1)) < 0.99


@pytest.mark.slow
def test_the_load_generator_checks_answers_from_the_real_server(tmp_path):
    """serve_load's own HTTP client against our server: every answer read and checked (none wrong),
    and a wrong vector is counted."""
    import asyncio
    from types import SimpleNamespace

    from _server_support import serve_engines

    folder = serve_load.add_st_layout(build_dense_model(tmp_path / "m"))
    engine = Embedder(str(folder), precision="fp32")
    texts = ["what is a generator", "how do I sort a list", "The for statement iterates over a sequence."]
    expected = engine.encode_documents(texts)
    with serve_engines(engine) as url:
        server = SimpleNamespace(name="ours", url=url, path="/v1/embeddings")
        requests = [[0], [1], [2], [0, 1, 2], [2, 1]]
        result = asyncio.run(serve_load.load(server, requests, texts, 2, expected))
        assert (result["wrong"], result["requests"], result["texts"]) == (0, 5, 8)
        assert len(result["latencies"]) == 5 and result["client_cpu"] > 0
        shuffled = expected[[1, 2, 0]]  # every text checked against another text's vector
        assert asyncio.run(serve_load.load(server, [[0, 1, 2]], texts, 1, shuffled))["wrong"] == 3


def test_the_load_generator_reconnects_after_connection_close():
    import asyncio

    async def scenario() -> list[tuple[int, bytes]]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            await writer.drain()
            writer.close()

        tcp = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = tcp.sockets[0].getsockname()[1]
        async with tcp:
            http = await serve_load.Connection.open(f"http://127.0.0.1:{port}")
            got = [await http.post("/x", b"{}") for _ in range(3)]
            await http.close()
        return got

    assert asyncio.run(scenario()) == [(200, b"{}")] * 3

"""Use `bge-rag serve` from the clients apps already have: OpenAI's, LangChain's, a Cohere-style rerank call.

    bge-rag serve --model BAAI/bge-m3 --reranker BAAI/bge-reranker-v2-m3      # in another terminal
    python examples/server_client.py --url http://127.0.0.1:8000 [--api-key KEY]
    python examples/server_client.py --offline-fixture   # starts its own server on fixture models, no network

Needs `pip install "bge-rag[server]" openai langchain-openai`. The offline fixture has real
MiniLM weights but untrained M3 heads and reranker head: the numbers show the mechanics, not quality.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

import httpx
import openai
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import OpenAIEmbeddings

from bge_rag.sample_data import python_docs_paragraphs


@contextlib.contextmanager
def fixture_server() -> Iterator[str]:
    """A server in this process on fixture models built from the packaged MiniLM weights."""
    from bge_core import Embedder, Reranker
    from bge_rag.server import create_app, serve_in_thread
    from bge_rag.testing import add_m3_heads, build_dense_model, build_reranker_model

    with tempfile.TemporaryDirectory() as tmp:
        embedder = Embedder(add_m3_heads(build_dense_model(f"{tmp}/m3-fixture")), max_length=256)
        reranker = Reranker(build_reranker_model(f"{tmp}/reranker-fixture"), max_length=256)
        with serve_in_thread(create_app(embedder, reranker)) as url:
            yield url


def main() -> int:
    """Run the example; a missing server or model gets a one-line hint, not a traceback."""
    from bge_core.errors import BGEError

    try:
        run()
    except httpx.ConnectError as exc:
        print(
            f"No bge-rag server answers there ({exc}). Start one with `bge-rag serve --model BAAI/bge-m3 "
            f"--reranker BAAI/bge-reranker-v2-m3`, or run this example with --offline-fixture.",
            file=sys.stderr,
        )
        return 1
    except BGEError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(
            f"Could not load the model ({first}). Offline, only models already in the Hugging Face cache load; "
            f"run this example with --offline-fixture to use the packaged fixture models.",
            file=sys.stderr,
        )
        return 1
    return 0


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    parser.add_argument("--api-key", default=os.environ.get("BGE_RAG_API_KEY", "unused"))
    parser.add_argument("--offline-fixture", action="store_true", help="start a server on offline fixture models")
    parser.add_argument("--query", default="How do I handle an exception with try and except?")
    parser.add_argument("--docs", type=int, default=200)
    args = parser.parse_args()

    with fixture_server() if args.offline_fixture else contextlib.nullcontext(args.url) as url:
        docs = python_docs_paragraphs(limit=args.docs)
        headers = {"Authorization": f"Bearer {args.api_key}"}
        info = httpx.get(f"{url}/info", headers=headers).json()
        print(f"Server: {info['embedding_model']['id']} + reranker {(info['reranker'] or {}).get('id')}")

        # 1. The official OpenAI client: only the base URL changes.
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=args.api_key)
        response = client.embeddings.create(model="bge", input=docs[:3], dimensions=256)
        print(
            f"OpenAI client: {len(response.data)} vectors of {len(response.data[0].embedding)} dims "
            f"(dimensions=256), {response.usage.total_tokens} tokens"
        )

        # 2. LangChain: documents as they are, queries through the query alias (BGE's query instruction).
        common = {"model": "bge", "base_url": f"{url}/v1", "api_key": args.api_key, "check_embedding_ctx_length": False}
        store = InMemoryVectorStore(OpenAIEmbeddings(**common))
        store.add_documents([Document(page_content=d) for d in docs])
        # Queries get BGE's query instruction through the served query alias ("<model>-query"; a base URL
        # of .../query/v1 does the same), for clients that cannot send input_type.
        queries = OpenAIEmbeddings(**{**common, "model": f"{info['embedding_model']['id']}-query"})
        hits = store.similarity_search_by_vector(queries.embed_query(args.query), k=10)
        print(f"\nQ: {args.query}\nLangChain InMemoryVectorStore, top 10 of {len(docs)} by dense similarity")

        # 3. Rerank the candidates: Cohere / Jina request shape.
        if info["reranker"]:
            ranked = httpx.post(
                f"{url}/v1/rerank",
                headers=headers,
                json={
                    "query": args.query,
                    "documents": [h.page_content for h in hits],
                    "top_n": 3,
                },
            ).json()["results"]
            for rank, r in enumerate(ranked, 1):
                print(
                    f"  {rank}. rerank {r['relevance_score']:.3f} (dense #{r['index'] + 1:>2})  "
                    f"{hits[r['index']].page_content[:80]}..."
                )

        # 4. BGE-M3 extension: the query's heaviest sparse (lexical) tokens.
        if info["embedding_model"]["outputs"]["sparse"]:
            encoded = httpx.post(
                f"{url}/v1/encode",
                headers=headers,
                json={
                    "input": args.query,
                    "input_type": "query",
                    "dense": False,
                    "sparse": True,
                    "sparse_top_tokens": 5,
                },
            ).json()
            tokens = ", ".join(f"{t} {w:.2f}" for t, w in encoded["data"][0]["sparse"]["tokens"])
            print(f"\nSparse top tokens of the query: {tokens}")


if __name__ == "__main__":
    sys.exit(main())

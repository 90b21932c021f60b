"""The LlamaIndex adapter end to end: index, retrieve, rerank, ingest in worker processes, example."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import llama_index.core
import numpy as np
import pytest
from _llamaindex_support import QUESTIONS
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode
from llama_index.embeddings.bge import BGEEmbedding
from llama_index.postprocessor.bge_rerank import BGERerank

from bge_core import Embedder, Reranker

ROOT = Path(__file__).resolve().parents[3]
OPTIONS = {"precision": "fp32", "max_length": 64}


@pytest.fixture(scope="module")
def documents(paragraphs) -> list[Document]:
    return [Document(text=t, doc_id=f"doc-{i}") for i, t in enumerate(paragraphs[400:430])]


def test_index_retriever_and_reranking_query_engine(models, documents):
    embed = BGEEmbedding(str(models.dense), **OPTIONS)
    rerank = BGERerank(model=str(models.reranker), top_n=3, **OPTIONS)
    index = VectorStoreIndex.from_documents(documents, embed_model=embed)
    retriever = index.as_retriever(similarity_top_k=8)
    query = QUESTIONS[0]

    candidates = retriever.retrieve(query)
    texts = [c.node.get_content(metadata_mode=MetadataMode.EMBED) for c in candidates]
    dense = Embedder(models.dense, **OPTIONS)
    np.testing.assert_allclose(
        [c.score for c in candidates], dense.encode_documents(texts) @ dense.encode_queries(query), rtol=1e-5
    )

    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[rerank])
    response = engine.query(query)
    scores = Reranker(models.reranker, **OPTIONS).score([(query, t) for t in texts])
    best = sorted(range(len(texts)), key=lambda i: -scores[i])[:3]
    assert [n.node.node_id for n in response.source_nodes] == [candidates[i].node.node_id for i in best]
    assert [n.score for n in response.source_nodes] == [scores[i] for i in best]
    assert all(type(n.score) is float for n in response.source_nodes)


def run_with_deadline(fn, seconds: float):
    """``fn()`` in a thread: a multiprocessing.Pool whose worker died hangs forever instead of failing."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no result after {seconds} s: a worker process probably died"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.slow
def test_ingestion_pipeline_with_two_worker_processes(models, documents, monkeypatch):
    # SentenceSplitter pickles its tiktoken encoder, which a spawned worker fetches from the
    # internet unless TIKTOKEN_CACHE_DIR points at LlamaIndex's bundled copy (LlamaIndex sets it
    # only while building the splitter). Not our component's concern, but users meet it too.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"))
    embed = BGEEmbedding(str(models.dense), **OPTIONS)  # a folder: workers load it, never download
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=0), embed])
    nodes = run_with_deadline(lambda: pipeline.run(documents=documents[:12], num_workers=2), 300)
    assert len(nodes) >= 12 and len({n.ref_doc_id for n in nodes}) == 12
    expected = embed.get_text_embedding_batch([n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes])
    np.testing.assert_allclose([n.embedding for n in nodes], expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_example_runs_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}  # an empty cache: the fallback runs
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "llamaindex_rag.py"), "--docs", "40"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Hub unreachable") and lines[1].startswith("Indexed 40 paragraphs")
    ranked = [line for line in lines if line.lstrip()[:3] in ("1. ", "2. ", "3. ")]
    assert len(ranked) == 2 * 3 and all("score" in line and "dense" in line for line in ranked)  # 2 queries, top 3

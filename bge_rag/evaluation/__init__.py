"""bge_rag.evaluation: retrieval quality on your own data, equal to FlagEmbedding's evaluation.

Load a dataset (FlagEmbedding's custom layout or BEIR's), pick what to measure (BGE models in
dense, sparse, ColBERT or hybrid mode, with or without a reranker, or an application's own
LangChain / LlamaIndex retriever) and get FlagEmbedding's metrics side by side::

    from bge_core import Embedder, Reranker
    from bge_rag.evaluation import EmbedderRetriever, compare, load_dataset

    data = load_dataset("my_dataset")  # corpus.jsonl, test_queries.jsonl, test_qrels.jsonl
    m3 = Embedder("BAAI/bge-m3")
    report = compare(
        [EmbedderRetriever(m3, mode="dense"), EmbedderRetriever(m3, mode="hybrid")],
        data,
        rerankers=[None, Reranker("BAAI/bge-reranker-v2-m3")],
    )
    print(report.table())

The command line is ``bge-rag eval``, which takes ``python -m FlagEmbedding.evaluation.custom``'s
arguments. Metrics need ``pip install 'bge-rag[eval]'`` (pytrec_eval).
"""

from __future__ import annotations

from .data import LAYOUTS, Document, Lines, RetrievalDataset, Split, available_splits, detect_layout, load_dataset
from .metrics import DEFAULT_K_VALUES, METRICS, compute_metrics, default_metrics, metric_names
from .retrieval import (
    M3_WEIGHTS,
    MODES,
    AppRetriever,
    CorpusCache,
    EmbedderRetriever,
    Reranking,
    Retriever,
    model_label,
)
from .runner import DEFAULT_SHOWN, NO_RERANKER, Report, Run, compare, evaluate, side_by_side
from .search import dense_search, ranked, top_k_rows

__all__ = [
    "DEFAULT_K_VALUES",
    "DEFAULT_SHOWN",
    "LAYOUTS",
    "M3_WEIGHTS",
    "METRICS",
    "MODES",
    "NO_RERANKER",
    "AppRetriever",
    "CorpusCache",
    "Document",
    "EmbedderRetriever",
    "Lines",
    "Report",
    "Reranking",
    "RetrievalDataset",
    "Retriever",
    "Run",
    "Split",
    "available_splits",
    "compare",
    "compute_metrics",
    "default_metrics",
    "dense_search",
    "detect_layout",
    "evaluate",
    "load_dataset",
    "metric_names",
    "model_label",
    "ranked",
    "side_by_side",
    "top_k_rows",
]

"""An application's own LangChain / LlamaIndex retriever measured on the same queries as BGE.

The framework objects are built as users build them: a LangChain ``InMemoryVectorStore`` over
``BGEEmbeddings``, a LlamaIndex ``VectorStoreIndex`` over ``BGEEmbedding``, and a keyword
retriever that is no vector store. With the same model and settings, the vector stores' cosine
ranking equals :class:`EmbedderRetriever`'s exact inner product (normalized vectors), so the
metrics are equal for every cutoff up to the store's ``k``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import Document as LlamaDocument
from llama_index.core import VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever as LlamaBaseRetriever
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.embeddings.bge import BGEEmbedding

from bge_core import Embedder
from bge_core.errors import InputTypeError, InvalidInputError
from bge_rag.evaluation import (
    NO_RERANKER,
    AppRetriever,
    EmbedderRetriever,
    RetrievalDataset,
    compare,
    compute_metrics,
    evaluate,
    load_dataset,
)
from bge_rag.testing import FixtureModels
from langchain_bge import BGEEmbeddings

K_VALUES = [1, 5, 10]
#: The same engine settings for bge_core and both adapters: exact fp32, no query instruction.
SETTINGS = {"precision": "fp32", "pooling": "mean", "max_length": 128, "query_instruction": ""}


@pytest.fixture(scope="module")
def data(eval_dir: Path) -> RetrievalDataset:
    return load_dataset(eval_dir)


@pytest.fixture(scope="module")
def bge_results(models: FixtureModels, data: RetrievalDataset) -> dict[str, dict[str, float]]:
    """EmbedderRetriever's top 10 of each query (scores are inner products)."""
    embedder = Embedder(models.dense, **SETTINGS)  # type: ignore[arg-type]
    return EmbedderRetriever(embedder).retrieve(data, data.split("test").queries, 10)


@pytest.fixture(scope="module")
def langchain_retriever(models: FixtureModels, data: RetrievalDataset) -> BaseRetriever:
    store = InMemoryVectorStore(embedding=BGEEmbeddings(model_name=str(models.dense), **SETTINGS))
    store.add_documents([Document(page_content=d.full_text, metadata={"doc_id": i}) for i, d in data.corpus.items()])
    return store.as_retriever(search_kwargs={"k": 10})


class KeywordRetriever(BaseRetriever):
    """A LangChain retriever that is no vector store: documents ranked by shared words."""

    docs: list[Document]
    k: int = 10

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = set(_words(query))
        overlap = [
            (sum(c for w, c in Counter(_words(d.page_content)).items() if w in words), i)
            for i, d in enumerate(self.docs)
        ]
        best = sorted(overlap, key=lambda item: (-item[0], item[1]))[: self.k]
        # A distance-like score that grows down the list: only the order may count.
        return [
            self.docs[i].model_copy(update={"metadata": {**self.docs[i].metadata, "score": rank}})
            for rank, (_, i) in enumerate(best)
        ]


class FixedRetriever(BaseRetriever):
    """A LangChain retriever returning the same documents for every query."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return list(self.docs)


class FixedLlamaRetriever(LlamaBaseRetriever):
    """A LlamaIndex retriever returning fixed nodes, scored as distances (lower is better)."""

    def __init__(self, metadata: list[dict]) -> None:
        super().__init__()
        self.nodes = [
            NodeWithScore(node=TextNode(text="x", metadata=m), score=float(i)) for i, m in enumerate(metadata)
        ]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return list(self.nodes)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z_]+", text.lower())


def _keyword(data: RetrievalDataset) -> KeywordRetriever:
    return KeywordRetriever(
        docs=[Document(page_content=d.full_text, metadata={"doc_id": i}) for i, d in data.corpus.items()]
    )


def _ranked(results: dict[str, float]) -> list[str]:
    return [d for d, _ in sorted(results.items(), key=lambda item: -item[1])]


def _assert_same_ranking(bge: dict[str, dict[str, float]], app: dict[str, dict[str, float]]) -> None:
    """The app's order equals BGE's, except between documents whose BGE scores tie (to 1e-6)."""
    assert bge.keys() == app.keys()
    for qid, scores in bge.items():
        expected, got = _ranked(scores), _ranked(app[qid])
        assert len(got) == len(expected)
        for a, b in zip(expected, got):
            assert a == b or abs(scores[a] - scores.get(b, float("-inf"))) < 1e-6, (qid, expected, got)


def _assert_same_metrics(report_a, report_b, name_a: str, name_b: str) -> None:  # noqa: ANN001
    a, b = report_a.metrics(name_a), report_b.metrics(name_b)
    assert a.keys() == b.keys()
    assert a == pytest.approx(b, abs=1e-4)


@pytest.mark.slow
def test_langchain_vector_store_equals_embedder_retriever(
    models: FixtureModels, data: RetrievalDataset, bge_results, langchain_retriever: BaseRetriever
) -> None:
    app = evaluate(langchain_retriever, data, id_field="doc_id", k_values=K_VALUES)
    embedder = Embedder(models.dense, **SETTINGS)  # type: ignore[arg-type]
    bge = evaluate(EmbedderRetriever(embedder), data, k_values=K_VALUES)
    _assert_same_metrics(bge, app, "dense-minilm", "VectorStoreRetriever")
    _assert_same_ranking(bge_results, app.runs[0].results)
    # The order alone is kept: strictly decreasing scores, the store's k documents per query.
    for ranked in app.runs[0].results.values():
        assert sorted(ranked.values(), reverse=True) == [float(10 - i) for i in range(10)]


@pytest.mark.slow
def test_llamaindex_vector_index_equals_embedder_retriever(
    models: FixtureModels, data: RetrievalDataset, bge_results
) -> None:
    embed_model = BGEEmbedding(str(models.dense), **SETTINGS)
    # One node per corpus document; the id is metadata, kept out of the embedded text.
    nodes = [
        TextNode(text=d.full_text, metadata={"doc_id": i}, excluded_embed_metadata_keys=["doc_id"])
        for i, d in data.corpus.items()
    ]
    retriever = VectorStoreIndex(nodes, embed_model=embed_model).as_retriever(similarity_top_k=10)
    app = evaluate(retriever, data, id_field="doc_id", k_values=K_VALUES)
    bge = evaluate(EmbedderRetriever(embed_model.engine), data, k_values=K_VALUES)
    _assert_same_metrics(bge, app, "dense-minilm", "VectorIndexRetriever")
    _assert_same_ranking(bge_results, app.runs[0].results)


@pytest.mark.slow
def test_llamaindex_chunks_of_one_document_count_once_at_best_rank(
    models: FixtureModels, data: RetrievalDataset
) -> None:
    """Documents split into several nodes: each corpus id once, where its best chunk ranks."""
    embed_model = BGEEmbedding(str(models.dense), **SETTINGS)
    docs = [
        LlamaDocument(text=d.full_text, metadata={"doc_id": i}, excluded_embed_metadata_keys=["doc_id"])
        for i, d in data.corpus.items()
    ]
    index = VectorStoreIndex.from_documents(
        docs, embed_model=embed_model, transformations=[SentenceSplitter(chunk_size=48, chunk_overlap=0)]
    )
    retriever = index.as_retriever(similarity_top_k=12)
    queries = data.split("test").queries
    app = AppRetriever(retriever, id_field="doc_id").retrieve(data, queries, 1000)
    split_any = False
    for qid, text in queries.items():
        ids = [n.node.metadata["doc_id"] for n in retriever.retrieve(text)]
        split_any |= len(set(ids)) < len(ids)
        assert _ranked(app[qid]) == list(dict.fromkeys(ids))
    assert split_any  # some query got two chunks of one document


def test_langchain_keyword_retriever_uses_order_only(data: RetrievalDataset) -> None:
    retriever = _keyword(data)
    queries = data.split("test").queries
    report = evaluate(retriever, data, id_field="doc_id", k_values=K_VALUES)
    expected = {
        qid: {doc.metadata["doc_id"]: 10.0 - rank for rank, doc in enumerate(retriever.invoke(text))}
        for qid, text in queries.items()
    }
    assert report.runs[0].results == expected
    assert report.metrics("KeywordRetriever") == compute_metrics(data.split("test").qrels, expected, K_VALUES)
    # top_k cuts a longer list; the retriever's own "score" (a rank, growing) is ignored.
    cut = evaluate(retriever, data, id_field="doc_id", k_values=[1], top_k=3).runs[0].results
    assert all(_ranked(cut[q]) == _ranked(expected[q])[:3] for q in queries)


def test_duplicate_documents_count_once_at_best_rank(data: RetrievalDataset) -> None:
    docs = [
        Document(page_content="chunk", metadata={"doc_id": d}) for d in ("doc-3", "doc-5", "doc-3", "doc-7", "doc-5")
    ]
    results = AppRetriever(FixedRetriever(docs=docs), id_field="doc_id").retrieve(data, {"q-3": "anything"}, 10)
    assert results == {"q-3": {"doc-3": 3.0, "doc-5": 2.0, "doc-7": 1.0}}


def test_integer_ids_in_metadata_match_string_corpus_ids(tmp_path: Path) -> None:
    from _eval_support import write_jsonl

    write_jsonl(tmp_path / "corpus.jsonl", [{"id": str(i), "text": f"text {i}"} for i in range(3)])
    write_jsonl(tmp_path / "test_queries.jsonl", [{"id": "q", "text": "text 2"}])
    write_jsonl(tmp_path / "test_qrels.jsonl", [{"qid": "q", "docid": "2", "relevance": 1}])
    data = load_dataset(tmp_path)
    docs = [Document(page_content="x", metadata={"id": i}) for i in (2, 0)]
    report = evaluate(FixedRetriever(docs=docs), data, k_values=[1])
    assert report.runs[0].results == {"q": {"2": 2.0, "0": 1.0}}
    assert report.metrics("FixedRetriever")["ndcg_at_1"] == 1.0


def test_document_without_id_field_names_field_and_keys(data: RetrievalDataset) -> None:
    docs = [Document(page_content="x", metadata={"source": "wiki", "page": 3})]
    with pytest.raises(InvalidInputError, match=r"metadata\['doc_id'\].*\['page', 'source'\]"):
        evaluate(FixedRetriever(docs=docs), data, id_field="doc_id")


@pytest.mark.slow
def test_wrong_id_field_on_a_real_store(data: RetrievalDataset, langchain_retriever: BaseRetriever) -> None:
    with pytest.raises(InvalidInputError, match=r"metadata\['id'\].*\['doc_id'\]"):
        evaluate(langchain_retriever, data)  # id_field defaults to "id"


def test_llamaindex_nodes_map_through_metadata_in_their_order(data: RetrievalDataset) -> None:
    retriever = FixedLlamaRetriever([{"doc_id": "doc-9"}, {"doc_id": "doc-2", "page": 1}, {"doc_id": "doc-9"}])
    report = evaluate(retriever, data, id_field="doc_id", k_values=[1])
    assert report.runs[0].results["q-9"] == {"doc-9": 2.0, "doc-2": 1.0}  # its order, not its distances
    with pytest.raises(InvalidInputError, match=r"FixedLlamaRetriever.*metadata\['id'\].*\['doc_id'\]"):
        evaluate(retriever, data)
    with pytest.raises(InvalidInputError, match=r"'doc-999'.*not in the corpus"):
        evaluate(FixedLlamaRetriever([{"doc_id": "doc-2"}, {"doc_id": "doc-999"}]), data, id_field="doc_id")


def test_id_not_in_corpus(data: RetrievalDataset) -> None:
    docs = [
        Document(page_content="x", metadata={"doc_id": "doc-0"}),
        Document(page_content="y", metadata={"doc_id": "nope"}),
    ]
    with pytest.raises(InvalidInputError, match=r"'nope'.*not in the corpus"):
        evaluate(FixedRetriever(docs=docs), data, id_field="doc_id")


@pytest.mark.parametrize("obj", [object(), "a retriever", 42, {"invoke": None}])
def test_not_a_retriever(data: RetrievalDataset, obj: object) -> None:
    with pytest.raises(InputTypeError, match="is not a retriever"):
        evaluate(obj, data)


def test_vector_store_itself_points_to_as_retriever(models: FixtureModels, data: RetrievalDataset) -> None:
    store = InMemoryVectorStore(embedding=BGEEmbeddings(model_name=str(models.dense), **SETTINGS))
    with pytest.raises(InputTypeError, match=r"as_retriever\(\)"):
        evaluate(store, data, id_field="doc_id")


@pytest.mark.slow
def test_compare_side_by_side_with_langchain(
    models: FixtureModels, data: RetrievalDataset, langchain_retriever: BaseRetriever
) -> None:
    embedder = Embedder(models.dense, **SETTINGS)  # type: ignore[arg-type]
    keyword = AppRetriever(_keyword(data), id_field="doc_id", name="keywords")
    report = compare(
        [EmbedderRetriever(embedder, name="bge"), langchain_retriever, keyword],
        data,
        id_field="doc_id",
        k_values=K_VALUES,
    )
    assert [(r.retriever, r.reranker) for r in report.runs] == [
        ("bge", NO_RERANKER),
        ("VectorStoreRetriever", NO_RERANKER),
        ("keywords", NO_RERANKER),
    ]
    assert report.metrics("bge") == pytest.approx(report.metrics("VectorStoreRetriever"), abs=1e-4)
    metrics = ["ndcg_at_10", "recall_at_1", "mrr_at_10"]
    lines = report.table(metrics).splitlines()
    assert lines[0] == "| Retriever | Reranker | ndcg_at_10 | recall_at_1 | mrr_at_10 |"
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[2:] for line in lines[2:]}
    assert rows.keys() == {"bge", "VectorStoreRetriever", "keywords"}
    for column, metric in enumerate(metrics):
        values = {name: report.metrics(name)[metric] for name in rows}
        best = max(values.values())
        for name, cells in rows.items():
            cell = cells[column].rstrip(" |")
            assert cell == (f"**{values[name] * 100:.3f}**" if values[name] == best else f"{values[name] * 100:.3f}")
    assert any("**" not in cell for cell in rows["keywords"])  # BGE beats keywords somewhere


def test_progress_bar_names_each_stage(capsys: pytest.CaptureFixture) -> None:
    from bge_rag.evaluation import Document, RetrievalDataset, Split

    class Fixed:
        def invoke(self, query: str) -> list:
            return [type("Doc", (), {"metadata": {"id": "b"}})(), type("Doc", (), {"metadata": {"id": "a"}})()]

    data = RetrievalDataset(
        "tiny", {"a": Document("", "x"), "b": Document("", "y")}, {"test": Split({"q": "?"}, {"q": {"a": 1}})}
    )
    report = compare([Fixed()], data, k_values=[1, 2], show_progress=True)
    assert report.metrics("Fixed")["mrr_at_2"] == 0.5
    err = capsys.readouterr().err
    assert "Fixed: retrieve" in err and "1/1" in err
    compare([Fixed()], data, k_values=[1], show_progress=False)
    assert "Evaluating" not in capsys.readouterr().err

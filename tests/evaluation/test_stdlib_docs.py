"""bge_rag.evaluation.stdlib_docs: the standard-library docstring retrieval set."""

from __future__ import annotations

import json
import sys

import pytest
from _eval_support import run_flagembedding

from bge_rag.evaluation.stdlib_docs import (
    MODULES,
    build_stdlib_docs,
    main,
    read_custom_dataset,
    write_custom_dataset,
)
from bge_rag.sample_data import python_docs_paragraphs


@pytest.fixture(scope="module")
def full() -> tuple[dict, dict, dict]:
    return build_stdlib_docs()


def test_two_builds_are_equal_and_sorted(full):
    again = build_stdlib_docs()
    assert again == full
    corpus, queries, qrels = full
    assert list(again[0]) == list(corpus) == sorted(corpus)
    assert list(queries) == sorted(queries) == list(qrels)


def test_size_and_shape(full):
    corpus, queries, qrels = full
    assert 300 <= len(queries) <= 1000
    assert len(queries) < len(corpus) <= 2 * len(queries)  # the distractors are a minority
    assert all(doc["title"] == "" for doc in corpus.values())
    assert all(len(doc["text"].split()) >= 15 for doc in corpus.values())
    assert all(len(q.split()) >= 4 for q in queries.values())
    assert {key.split(".")[0] for key in queries} >= {"json", "logging", "statistics", "difflib"}
    assert all(any(key.startswith(m + ".") for m in MODULES) for key in corpus)


def test_every_query_has_its_one_document(full):
    corpus, queries, qrels = full
    assert set(qrels) == set(queries)
    assert all(qrels[q] == {q: 1} and q in corpus for q in queries)


def test_texts_are_unique_clean_and_not_string_matches(full):
    corpus, queries, _ = full
    bodies = [doc["text"] for doc in corpus.values()]
    assert len(set(bodies)) == len(bodies)
    assert len(set(queries.values())) == len(queries)
    texts = [*bodies, *queries.values()]
    assert all(text == " ".join(text.split()) for text in texts)  # whitespace collapsed
    assert not any(">>>" in text for text in texts)  # doctests removed
    assert not any(query in corpus[key]["text"] for key, query in queries.items())


def test_known_entry():
    corpus, queries, qrels = build_stdlib_docs(modules=("statistics",))
    assert queries["statistics.median_high"] == "Return the high median of data."
    assert "larger of the two middle values" in corpus["statistics.median_high"]["text"]
    assert "Return the high median" not in corpus["statistics.median_high"]["text"]


def test_no_paragraph_of_the_shipped_sample_data(full):
    corpus, queries, _ = full
    shipped = set(python_docs_paragraphs(min_words=1))
    assert not shipped & {doc["text"] for doc in corpus.values()}
    assert not shipped & set(queries.values())


def test_limit_keeps_an_even_subset_and_its_documents(full):
    corpus, queries, qrels = build_stdlib_docs(limit=50, distractors=False)
    assert len(queries) == 50 and set(corpus) == set(queries) == set(qrels)
    assert all(full[1][key] == text for key, text in queries.items())
    assert list(queries)[0] == list(full[1])[0]
    assert list(queries)[-1].split(".")[0] != list(full[1])[0].split(".")[0]  # spread, not a prefix
    with pytest.raises(ValueError, match="limit"):
        build_stdlib_docs(limit=0)


def test_written_folder_round_trips(tmp_path, full):
    folder = write_custom_dataset(tmp_path / "set", *full, info={"note": "x"})
    assert sorted(p.name for p in folder.iterdir()) == [
        "_info.json",
        "corpus.jsonl",
        "test_qrels.jsonl",
        "test_queries.jsonl",
    ]
    assert read_custom_dataset(folder) == full
    info = json.loads((folder / "_info.json").read_text())
    assert info["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert (info["corpus"], info["queries"], info["note"]) == (len(full[0]), len(full[1]), "x")
    first = json.loads((folder / "test_qrels.jsonl").read_text().splitlines()[0])
    assert first == {"qid": next(iter(full[2])), "docid": next(iter(full[2])), "relevance": 1}


def test_entry_point_writes_the_folder(tmp_path, capsys):
    assert main([str(tmp_path / "out"), "--limit", "20", "--no-distractors"]) == 0
    corpus, queries, qrels = read_custom_dataset(tmp_path / "out")
    assert len(queries) == len(corpus) == 20
    assert "20 queries, 20 documents" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parity
def test_flag_embeddings_runner_reads_the_folder(tmp_path, models):
    dataset = write_custom_dataset(tmp_path / "stdlib", *build_stdlib_docs(limit=50, distractors=False))
    out = tmp_path / "out"
    run_flagembedding(
        *("--eval_name", "stdlib", "--dataset_dir", str(dataset), "--splits", "test"),
        *("--output_dir", str(out), "--eval_output_method", "json", "--eval_output_path", str(out / "r.json")),
        *("--embedder_name_or_path", str(models.dense), "--embedder_model_class", "encoder-only-base"),
        *("--pooling_method", "cls", "--k_values", "1", "10", "--embedder_batch_size", "64", "--devices", "cpu"),
        cwd=tmp_path,
    )
    report = json.loads((out / "r.json").read_text())
    found = _find(report, "ndcg_at_10")
    assert found and all(0 < value <= 1 for value in found), report


def _find(node: object, key: str) -> list[float]:
    """Every value of ``key`` anywhere in a nested JSON report."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in _find(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _find(v, key)]
    return []

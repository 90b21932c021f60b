"""mine-negatives and score-pairs on real weights, checked against FlagEmbedding computed in the test."""

from __future__ import annotations

import numpy as np
import pytest
from _mining_support import read_lines, training_lines, write_lines

from bge_core import Embedder, Reranker
from bge_rag.mining import add_reranker_scores, mine_hard_negatives
from bge_rag.mining.negatives import build_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lines(paragraphs: list[str]) -> list[dict]:
    return training_lines(paragraphs)


@pytest.fixture(scope="module")
def embedder(models) -> Embedder:
    # hn_mine on the CPU: fp32, CLS pooling, no query instruction unless one is given.
    return Embedder(models.dense, device="cpu", precision="fp32", pooling="cls", query_instruction="")


@pytest.fixture(scope="module")
def flag_ranking(flag, models, lines) -> tuple[list[str], np.ndarray]:
    """The corpus and each query's ranking of it, as hn_mine's FlagModel and flat index give them."""
    model = flag.FlagModel(
        str(models.dense), use_fp16=False, devices="cpu", batch_size=8, pooling_method="cls", normalize_embeddings=True
    )
    corpus = build_corpus(lines)
    p = np.asarray(model.encode(corpus), np.float32)
    q = np.asarray(model.encode_queries([line["query"] for line in lines]), np.float32)
    return corpus, np.argsort(-(q @ p.T), axis=1, kind="stable")


def allowed(line: dict, corpus: list[str], order: np.ndarray, start: int, stop: int) -> list[str]:
    texts = [corpus[j] for j in order[start:stop]]
    return [t for t in texts if t not in line["pos"] and t != line["query"]]


@pytest.mark.parity
def test_ranks_match_flag_embedding_brute_force(tmp_path, lines, embedder, flag_ranking) -> None:
    corpus, order = flag_ranking
    source = write_lines(tmp_path / "train.jsonl", lines)
    # negative_number above the range: every candidate kept, in rank order, then the random fill.
    mine_hard_negatives(source, tmp_path / "all.jsonl", embedder, range_for_sampling="3-13", negative_number=12)
    for line, out, rank in zip(lines, read_lines(tmp_path / "all.jsonl"), order):
        expected = allowed(line, corpus, rank, 3, 13)
        assert out["neg"][: len(expected)] == expected
        assert len(out["neg"]) == 12 == len(set(out["neg"]))
        assert not set(out["neg"]) & {*line["pos"], line["query"]}
    # negative_number below the range: a draw of that many from the candidates.
    mine_hard_negatives(source, tmp_path / "some.jsonl", embedder, range_for_sampling="2-20", negative_number=4)
    for line, out, rank in zip(lines, read_lines(tmp_path / "some.jsonl"), order):
        assert len(out["neg"]) == 4 == len(set(out["neg"]))
        assert set(out["neg"]) <= set(allowed(line, corpus, rank, 2, 20))


def test_other_fields_kept(tmp_path, lines, embedder) -> None:
    source = write_lines(tmp_path / "train.jsonl", lines)
    mine_hard_negatives(source, tmp_path / "out.jsonl", embedder, range_for_sampling="0-10", negative_number=3)
    for line, out in zip(lines, read_lines(tmp_path / "out.jsonl")):
        assert {k: v for k, v in out.items() if k != "neg"} == {k: v for k, v in line.items() if k != "neg"}


def test_same_seed_same_file_other_seed_differs(tmp_path, lines, embedder) -> None:
    source = write_lines(tmp_path / "train.jsonl", lines)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        mine_hard_negatives(
            source, tmp_path / f"{name}.jsonl", embedder, range_for_sampling="1-30", negative_number=5, seed=seed
        )
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()


def test_candidate_pool_instead_of_pos_and_neg(tmp_path, lines, embedder, paragraphs) -> None:
    pool = [p for p in paragraphs[200:260] if p.strip()]
    write_lines(tmp_path / "pool.jsonl", [{"text": t} for t in pool])
    source = write_lines(tmp_path / "train.jsonl", lines)
    summary = mine_hard_negatives(
        source,
        tmp_path / "out.jsonl",
        embedder,
        candidate_pool=tmp_path / "pool.jsonl",
        negative_number=5,
        range_for_sampling="0-40",
    )
    assert summary.corpus_size == len(set(pool))
    pool_set = set(pool)
    for out in read_lines(tmp_path / "out.jsonl"):
        assert len(out["neg"]) == 5 and set(out["neg"]) <= pool_set


@pytest.mark.parametrize("option", ["relative_margin", "max_score"])
def test_guard_on_real_scores(tmp_path, lines, embedder, option) -> None:
    source = write_lines(tmp_path / "train.jsonl", lines)
    value = 0.02 if option == "relative_margin" else 0.5
    mine_hard_negatives(
        source, tmp_path / "out.jsonl", embedder, range_for_sampling="0-40", negative_number=10, **{option: value}
    )
    plain = tmp_path / "plain.jsonl"
    mine_hard_negatives(source, plain, embedder, range_for_sampling="0-40", negative_number=10)
    dropped_any = False
    for line, out, unguarded in zip(lines, read_lines(tmp_path / "out.jsonl"), read_lines(plain)):
        q = embedder.encode_queries(line["query"])
        pos = float(np.min(embedder.encode_documents(line["pos"]) @ q))
        limit = pos - abs(pos) * value if option == "relative_margin" else value
        scores = embedder.encode_documents(out["neg"]) @ q if out["neg"] else np.zeros(0)
        assert (scores <= limit + 1e-5).all()
        plain_scores = embedder.encode_documents(unguarded["neg"]) @ q
        dropped_any |= bool((plain_scores > limit + 1e-5).any())
    assert dropped_any  # the setting was strict enough to matter


@pytest.mark.parity
@pytest.mark.parametrize("normalize", [False, True])
def test_reranker_scores_equal_flag_reranker(tmp_path, flag, models, lines, normalize) -> None:
    lines = [*lines[:6], {"query": "no negatives here", "pos": [lines[7]["pos"][0]]}]
    source = write_lines(tmp_path / "train.jsonl", lines)
    reranker = Reranker(models.reranker, device="cpu", precision="fp32", normalize=normalize)
    summary = add_reranker_scores(source, tmp_path / "out.jsonl", reranker)
    reference = flag.FlagReranker(
        str(models.reranker), use_fp16=False, devices="cpu", batch_size=8, normalize=normalize
    )
    out = read_lines(tmp_path / "out.jsonl")
    assert summary.pairs == sum(len(line["pos"]) + len(line.get("neg", [])) for line in lines)
    for line, scored in zip(lines, out):
        expected_pos = reference.compute_score([(line["query"], p) for p in line["pos"]])
        assert scored["pos_scores"] == pytest.approx(np.atleast_1d(expected_pos).tolist(), abs=1e-5)
        if line.get("neg"):
            expected_neg = reference.compute_score([(line["query"], p) for p in line["neg"]])
            assert scored["neg_scores"] == pytest.approx(np.atleast_1d(expected_neg).tolist(), abs=1e-5)
        else:
            assert scored["neg_scores"] == []
        assert {k: v for k, v in scored.items() if not k.endswith("_scores")} == line


@pytest.mark.parity
def test_reranker_instructions_equal_flag_reranker(tmp_path, flag, models, lines) -> None:
    source = write_lines(tmp_path / "train.jsonl", lines[:4])
    reranker = Reranker(models.reranker, device="cpu", precision="fp32")
    options = {"query_instruction_format": "Q: {}\\n{}", "passage_instruction_format": "{}{}"}
    add_reranker_scores(
        source, tmp_path / "out.jsonl", reranker, query_instruction="Find it", passage_instruction="Doc: ", **options
    )
    reference = flag.FlagReranker(
        str(models.reranker),
        use_fp16=False,
        devices="cpu",
        batch_size=8,
        query_instruction_for_rerank="Find it",
        query_instruction_format="Q: {}\\n{}",
        passage_instruction_for_rerank="Doc: ",
        passage_instruction_format="{}{}",
    )
    for line, scored in zip(lines[:4], read_lines(tmp_path / "out.jsonl")):
        pairs = [(line["query"], p) for p in (*line["pos"], *line["neg"])]
        expected = np.atleast_1d(reference.compute_score(pairs)).tolist()
        assert scored["pos_scores"] + scored["neg_scores"] == pytest.approx(expected, abs=1e-5)

"""Reranker scores equal FlagEmbedding's FlagReranker; ranking and input handling."""

from __future__ import annotations

import math

import pytest

from bge_core import InputTypeError, ModelLoadError, Ranked, Reranker
from bge_core.checks import transformers_version

ATOL = 1e-4
TRANSFORMERS_MAJOR = transformers_version()[0]


@pytest.fixture(scope="module")
def reranker(models):
    return Reranker(models.reranker, precision="fp32")


@pytest.fixture(scope="module")
def pairs(paragraphs):
    long_query = " ".join(paragraphs[60:75])  # far over 3/4 of 512 tokens: exercises the query cap
    return [
        *[(paragraphs[i], paragraphs[i + 1]) for i in range(0, 24, 2)],
        (long_query, paragraphs[3]),
        (long_query, " ".join(paragraphs[80:100])),  # both over-long
        ("what is a context manager?", " ".join(paragraphs[120:150])),  # passage cut to fit
        ("", paragraphs[5]),
        ("Grüße 北京 🙂", "naïve café"),
    ]


def flag_reranker(flag, folder, **kwargs):
    return flag.FlagReranker(str(folder), use_fp16=False, devices="cpu", batch_size=8, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("normalize", [False, True])
def test_scores_match_flagreranker(flag, models, reranker, pairs, normalize):
    expected = flag_reranker(flag, models.reranker).compute_score(pairs, normalize=normalize)
    got = reranker.score(pairs, normalize=normalize)
    assert all(type(s) is float for s in got)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, abs=ATOL)
    if normalize:
        assert all(0.0 < s < 1.0 for s in got)


@pytest.mark.slow
@pytest.mark.parametrize(("max_length", "query_max_length"), [(64, None), (128, 20)])
def test_short_limits_match_flagreranker(flag, models, pairs, max_length, query_max_length):
    ref = flag_reranker(flag, models.reranker, max_length=max_length, query_max_length=query_max_length)
    ours = Reranker(models.reranker, precision="fp32", max_length=max_length, query_max_length=query_max_length)
    expected = ref.compute_score(pairs)
    got = ours.score(pairs)
    assert got == pytest.approx(expected, abs=ATOL)


def test_pair_lengths_respect_limits(reranker, pairs):
    ids, types = reranker._scorer.pairs.encode(pairs)
    assert max(len(row) for row in ids) == reranker.max_length == 512
    assert types is not None and all(len(t) == len(i) for t, i in zip(types, ids))
    # BERT pair template: [CLS] query [SEP] passage [SEP], the passage marked with type 1
    cls_id, sep_id = reranker._backbone.tokenizer.cls_token_id, reranker._backbone.tokenizer.sep_token_id
    long_pair_ids, long_pair_types = ids[12], types[12]
    assert long_pair_ids[0] == cls_id and long_pair_ids[-1] == sep_id
    query_len = long_pair_ids.index(sep_id) - 1
    assert query_len == reranker.query_max_length == 384
    assert sum(long_pair_types) == len(long_pair_ids) - query_len - 2


@pytest.mark.parity
def test_empty_passage_keeps_the_pair_template(reranker, flag, models, paragraphs):
    """An empty passage still gets the pair template ([CLS] q [SEP] [SEP]), as FlagReranker's
    prepare_for_model built it under transformers 4: there (.venv-tf4) the scores are equal.
    FlagEmbedding 1.4.2's transformers-5 path decodes ids to text and re-tokenizes, and an empty
    second text there silently becomes a single-sequence input ([CLS] q [SEP]); that is the one
    pair shape where we differ from it under transformers 5."""
    tok = reranker._backbone.tokenizer
    ids, types = reranker._scorer.pairs.encode([(paragraphs[5], "")])
    query_ids = tok(paragraphs[5], add_special_tokens=False)["input_ids"]
    assert ids[0] == [tok.cls_token_id, *query_ids, tok.sep_token_id, tok.sep_token_id]
    assert types is not None and types[0] == [0] * (len(query_ids) + 2) + [1]
    score = reranker.score((paragraphs[5], ""))
    reference = flag_reranker(flag, models.reranker).compute_score([(paragraphs[5], "")])[0]
    if TRANSFORMERS_MAJOR < 5:
        assert abs(score - reference) <= ATOL
    else:
        assert abs(score - reference) > 1e-4  # documents the difference; flip if FlagEmbedding changes


def test_single_pair_gives_float(reranker, pairs):
    single = reranker.score(pairs[0])
    assert type(single) is float
    assert single == reranker.score([pairs[0]])[0]
    assert reranker.score(list(pairs[0])) == single


def test_normalize_is_sigmoid_of_raw(models, pairs):
    raw = Reranker(models.reranker, precision="fp32").score(pairs[:5])
    norm = Reranker(models.reranker, precision="fp32", normalize=True).score(pairs[:5])
    assert norm == pytest.approx([1 / (1 + math.exp(-s)) for s in raw], abs=1e-12)


@pytest.mark.slow
def test_rerank_orders_best_first(reranker, paragraphs):
    query = "How does the with statement use a context manager?"
    docs = paragraphs[100:130]
    scores = reranker.score([(query, d) for d in docs])
    ranked = reranker.rerank(query, docs)
    assert [r.index for r in ranked] == sorted(range(len(docs)), key=lambda i: -scores[i])
    assert all(isinstance(r, Ranked) and r.text == docs[r.index] and r.score == scores[r.index] for r in ranked)
    top = reranker.rerank(query, docs, top_k=3)
    assert top == ranked[:3]


def test_rerank_ties_keep_input_order(reranker, monkeypatch):
    # on the class: a Reranker's attributes are read-only
    monkeypatch.setattr(Reranker, "score", lambda self, pairs, **options: [1.0, 0.5, 1.0, 2.0])
    ranked = reranker.rerank("q", ["a", "b", "c", "d"])
    assert [r.index for r in ranked] == [3, 0, 2, 1]


def test_empty_inputs(reranker):
    assert reranker.score([]) == []
    assert reranker.rerank("query", []) == []


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (None, "got None"),
        ("just a string", "got str"),
        ([("q", "p"), ("q", None)], "pairs[1]"),
        ([("q", "p", "extra")], "pairs[0]"),
        ([["q", 3]], "pairs[0]"),
        ([42], "pairs[0]"),
    ],
)
def test_bad_pairs_raise(reranker, bad, fragment):
    with pytest.raises(InputTypeError, match=fragment.replace("[", r"\[")):
        reranker.score(bad)


def test_rerank_bad_inputs(reranker):
    with pytest.raises(InputTypeError, match="query"):
        reranker.rerank(None, ["a"])
    with pytest.raises(InputTypeError, match=r"documents\[1\]"):
        reranker.rerank("q", ["a", None])
    with pytest.raises(ValueError, match="top_k"):
        reranker.rerank("q", ["a"], top_k=0)


def test_model_without_classifier_head_is_refused(models):
    """A plain encoder would get a random classifier from transformers: refuse instead."""
    with pytest.raises(ModelLoadError, match="classifier"):
        Reranker(models.dense)


@pytest.mark.slow
@pytest.mark.parametrize("max_length", [512, 40])
def test_xlmr_reranker_matches_flagreranker(flag, models, pairs, max_length):
    """XLM-R pair template (<s> q </s></s> p </s>) and SentencePiece tokenization."""
    ours = Reranker(models.xlmr_reranker, precision="fp32", max_length=max_length)
    expected = flag_reranker(flag, models.xlmr_reranker, max_length=max_length).compute_score(pairs)
    assert ours.score(pairs) == pytest.approx(expected, abs=ATOL)
    ids, types = ours._scorer.pairs.encode([("a b", "c d")])
    assert types is None  # XLM-R takes no token type ids
    assert ids[0][0] == 0 and ids[0][-1] == 2 and ids[0].count(2) == 3


def test_rerank_per_call_batch_size(reranker, paragraphs):
    docs = paragraphs[:12]
    small, default = reranker.rerank("query", docs, batch_size=3), reranker.rerank("query", docs)
    assert [r.score for r in small] == pytest.approx([r.score for r in default], abs=1e-5)
    assert sorted(r.index for r in small) == list(range(12))


@pytest.mark.parity
def test_truncation_warns_once_and_can_refuse(models, pairs, caplog):
    """Truncated pairs are cut as FlagReranker cuts them, with one warning per Reranker naming the count."""
    from bge_core import TextTooLongError

    rr = Reranker(models.reranker, precision="fp32", max_length=64)
    with caplog.at_level("WARNING", logger="bge_core.truncation"):
        rr.score(pairs)
        rr.score(pairs)
    warnings = [r for r in caplog.records if r.name == "bge_core.truncation"]
    assert len(warnings) == 1
    assert "pairs were longer than max_length=64" in warnings[0].getMessage()
    strict = Reranker(models.reranker, precision="fp32", max_length=64, truncation=False)
    with pytest.raises(TextTooLongError, match="truncation=False"):
        strict.score(pairs)
    assert strict.score(("short query", "short passage")) == pytest.approx(rr.score(("short query", "short passage")))


@pytest.mark.parametrize("name", ["normalize", "show_progress", "batch_size", "max_length", "truncation", "llm_kind"])
def test_settings_are_read_only(reranker, name):
    """A Reranker may be shared, so its settings are fixed at construction; per-call arguments vary them."""
    from bge_core import ReadOnlySettingError

    before = getattr(reranker, name)
    with pytest.raises(ReadOnlySettingError, match=rf"Reranker\.{name} is read-only: a Reranker may"):
        setattr(reranker, name, before)
    with pytest.raises(AttributeError):  # ReadOnlySettingError is an AttributeError
        del reranker.normalize
    assert getattr(reranker, name) == before
    with pytest.raises(ReadOnlySettingError):  # the scorer the Reranker delegates to is frozen as well
        reranker._scorer.model = None


def test_cross_encoder_kind_is_picked_at_load(reranker):
    from bge_core.rerank import SCORERS
    from bge_core.rerank.cross_encoder import CrossEncoderScorer

    assert type(reranker._scorer) is CrossEncoderScorer is SCORERS["cross-encoder"]
    assert reranker.llm_kind is None and reranker._scorer.n_outputs == 1

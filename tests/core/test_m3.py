"""BGE-M3 outputs (dense, sparse, ColBERT) and compute_score equal FlagEmbedding's BGEM3FlagModel.

Two fixtures: the MiniLM (BERT) backbone with deterministic heads, and a tiny random XLM-R with
a trained SentencePiece tokenizer (XLM-R special ids <s>=0, <pad>=1, </s>=2, <unk>=3).
"""

from __future__ import annotations

import numpy as np
import pytest

from bge_core import Embedder, MissingHeadError, SparseVector
from bge_core.scoring import colbert_scores

ATOL = 1e-5
M3_FIXTURES = ["m3", "xlmr_m3"]


@pytest.fixture(scope="module")
def m3_texts(paragraphs):
    return [
        *paragraphs[:12],
        "the the the cat cat sat on the the mat",  # repeated words: max per token id
        "",
        "bge",
        "北京欢迎你。Grüße aus Köln, naïve café",
        " ".join(paragraphs[20:60]),  # longer than max_length
        paragraphs[3] + " " + paragraphs[3],
    ]


def _flag_m3(flag, folder, **kwargs):
    return flag.BGEM3FlagModel(str(folder), use_fp16=False, devices="cpu", batch_size=8, **kwargs)


def _flag_sparse(weights):
    return {int(k): float(v) for k, v in weights.items()}


def assert_same_outputs(expected, got, atol=ATOL):
    np.testing.assert_allclose(got.dense, expected["dense_vecs"], atol=atol, rtol=0)
    assert len(got.sparse) == len(expected["lexical_weights"])
    for ref, ours in zip(expected["lexical_weights"], got.sparse):
        ref = _flag_sparse(ref)
        assert isinstance(ours, SparseVector)
        assert ours.indices.dtype == np.int64 and ours.values.dtype == np.float32
        assert set(ref) == set(ours.indices.tolist())
        np.testing.assert_allclose(ours.values, [ref[i] for i in ours.indices.tolist()], atol=atol, rtol=0)
    assert len(got.colbert) == len(expected["colbert_vecs"])
    for ref, ours in zip(expected["colbert_vecs"], got.colbert):
        assert ours.shape == ref.shape and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=atol, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", M3_FIXTURES)
def test_all_outputs_match_bgem3flagmodel(flag, models, m3_texts, fixture):
    folder = getattr(models, fixture)
    expected = _flag_m3(flag, folder).encode(m3_texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    got = Embedder(folder, precision="fp32").encode(m3_texts, dense=True, sparse=True, colbert=True)
    assert_same_outputs(expected, got)
    assert sum(len(v) for v in got.sparse) > 3 * len(m3_texts)  # the heads really produce weights


@pytest.mark.slow
@pytest.mark.parametrize("fixture", M3_FIXTURES)
def test_query_side_and_short_max_length_match(flag, models, m3_texts, fixture):
    folder = getattr(models, fixture)
    expected = _flag_m3(flag, folder, query_max_length=24).encode_queries(
        m3_texts, return_dense=True, return_sparse=True, return_colbert_vecs=True
    )
    got = Embedder(folder, precision="fp32", max_length=24).encode(
        m3_texts, kind="query", dense=True, sparse=True, colbert=True
    )
    assert_same_outputs(expected, got)
    assert max(len(c) for c in got.colbert) == 23  # len(input_ids) - 1 at the cap


@pytest.mark.slow
@pytest.mark.parametrize("fixture", M3_FIXTURES)
def test_single_string(flag, models, paragraphs, fixture):
    folder = getattr(models, fixture)
    expected = _flag_m3(flag, folder).encode(
        paragraphs[1], return_dense=True, return_sparse=True, return_colbert_vecs=True
    )
    got = Embedder(folder, precision="fp32").encode(paragraphs[1], dense=True, sparse=True, colbert=True)
    assert got.dense.shape == expected["dense_vecs"].shape and got.dense.ndim == 1
    assert isinstance(got.sparse, SparseVector)
    assert got.sparse.to_dict().keys() == _flag_sparse(expected["lexical_weights"]).keys()
    np.testing.assert_allclose(got.colbert, expected["colbert_vecs"], atol=ATOL, rtol=0)


def test_special_tokens_rule(models):
    """BERT: [CLS]/[PAD]/[UNK] dropped, [SEP] kept (no eos token). XLM-R: <s>, </s>, <pad>, <unk> dropped."""
    bert = Embedder(models.m3, precision="fp32")
    tok = bert.tokenizer
    weights = bert.encode([f"word {i} " * 3 + "end." for i in range(30)], dense=False, sparse=True).sparse
    ids = set(np.concatenate([v.indices for v in weights]).tolist())
    assert tok.cls_token_id not in ids and tok.pad_token_id not in ids
    assert tok.sep_token_id in ids
    xlmr = Embedder(models.xlmr_m3, precision="fp32")
    weights = xlmr.encode(["a b c", "some more words here"] * 10, dense=False, sparse=True).sparse
    ids = set(np.concatenate([v.indices for v in weights]).tolist())
    assert not ids & {0, 1, 2, 3}


@pytest.mark.parametrize("fixture", M3_FIXTURES)
def test_empty_list(models, fixture):
    out = Embedder(getattr(models, fixture), precision="fp32").encode([], dense=True, sparse=True, colbert=True)
    assert out.dense.shape[0] == 0 and out.sparse == [] and out.colbert == []


@pytest.mark.slow
def test_compute_score_matches_flag_on_xlmr(flag, models, m3_texts):
    pairs = [(m3_texts[i], m3_texts[j]) for i, j in [(0, 1), (0, 0), (12, 17), (15, 16), (2, 13), (4, 3), (17, 16)]]
    weights = [0.4, 0.2, 0.4]
    ref = _flag_m3(flag, models.xlmr_m3)
    ours = Embedder(models.xlmr_m3, precision="fp32")
    for w in (None, weights):
        expected = ref.compute_score(pairs, weights_for_different_modes=w)
        got = ours.compute_score(pairs, weights=w)
        assert set(got) == {"colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"}
        for key in got:
            assert all(type(v) is float for v in got[key])
            np.testing.assert_allclose(got[key], expected[key], atol=1e-4, rtol=0, err_msg=key)
    single = ours.compute_score(pairs[0], weights=weights)
    assert single == {k: v[0] for k, v in ours.compute_score(pairs[:1], weights=weights).items()}


@pytest.mark.parity
@pytest.mark.slow
def test_compute_score_matches_flag_scoring_on_bert(flag, models, m3_texts):
    """FlagEmbedding's compute_score crashes on BERT tokenizers (it indexes with the missing eos
    id), so the BERT fixture is checked against FlagEmbedding's own scoring functions."""
    ref = _flag_m3(flag, models.m3)
    pairs = [(m3_texts[i], m3_texts[j]) for i, j in [(0, 1), (12, 12), (17, 3), (15, 16), (2, 13)]]
    got = Embedder(models.m3, precision="fp32").compute_score(pairs, weights=[1, 0.3, 1])
    for k, (q, p) in enumerate(pairs):
        qo = ref.encode(q, return_dense=True, return_sparse=True, return_colbert_vecs=True)
        po = ref.encode(p, return_dense=True, return_sparse=True, return_colbert_vecs=True)
        dense = float(qo["dense_vecs"] @ po["dense_vecs"])
        sparse = float(ref.compute_lexical_matching_score(qo["lexical_weights"], po["lexical_weights"]))
        colbert = float(ref.colbert_score(qo["colbert_vecs"], po["colbert_vecs"]))
        assert got["dense"][k] == pytest.approx(dense, abs=1e-4)
        assert got["sparse"][k] == pytest.approx(sparse, abs=1e-4)
        assert got["colbert"][k] == pytest.approx(colbert, abs=1e-4)
        assert got["colbert+sparse+dense"][k] == pytest.approx((dense + 0.3 * sparse + colbert) / 2.3, abs=1e-4)
        assert got["sparse+dense"][k] == pytest.approx((dense + 0.3 * sparse) / 1.3, abs=1e-4)
    assert got["sparse"][1] > 0  # identical texts share tokens


@pytest.mark.parity
@pytest.mark.slow
def test_scoring_functions_match_flag(flag, models, m3_texts):
    ref = _flag_m3(flag, models.xlmr_m3)
    out = ref.encode(m3_texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    ours = Embedder(models.xlmr_m3, precision="fp32").encode(m3_texts, dense=True, sparse=True, colbert=True)
    from bge_core import lexical_scores

    lex = lexical_scores(ours.sparse, ours.sparse)
    # FlagEmbedding sums in float32, bge_core in float64: allow float32 rounding on large scores
    np.testing.assert_allclose(
        lex, ref.compute_lexical_matching_score(out["lexical_weights"], out["lexical_weights"]), atol=1e-4, rtol=1e-6
    )
    col = colbert_scores(ours.colbert, ours.colbert)
    for i in range(len(m3_texts)):
        for j in range(len(m3_texts)):
            if len(out["colbert_vecs"][i]) and len(out["colbert_vecs"][j]):
                expected = float(ref.colbert_score(out["colbert_vecs"][i], out["colbert_vecs"][j]))
                assert col[i, j] == pytest.approx(expected, abs=1e-4)


def test_missing_head_files_raise_and_dense_still_works(tmp_path, models, paragraphs):
    import shutil

    folder = tmp_path / "m3-no-colbert"
    shutil.copytree(models.m3, folder)
    (folder / "colbert_linear.pt").unlink()
    emb = Embedder(folder, precision="fp32")
    with pytest.raises(MissingHeadError, match="colbert_linear.pt"):
        emb.encode(paragraphs[:2], colbert=True)
    assert emb.encode(paragraphs[:2], dense=False, sparse=True).sparse[0].indices.size > 0
    with pytest.raises(MissingHeadError, match="sparse_linear.pt"):
        Embedder(models.dense, precision="fp32").encode(paragraphs[:2], sparse=True)
    with pytest.raises(MissingHeadError):
        Embedder(models.dense, precision="fp32").compute_score([("a", "b")])
    full = Embedder(models.m3, precision="fp32")
    np.testing.assert_array_equal(emb.encode_documents(paragraphs[:2]), full.encode_documents(paragraphs[:2]))


def test_corrupt_head_file_is_a_load_error(tmp_path, models):
    import shutil

    import torch

    from bge_core import ModelLoadError

    folder = tmp_path / "m3-bad-head"
    shutil.copytree(models.m3, folder)
    torch.save({"weight": torch.zeros(3, 7)}, folder / "sparse_linear.pt")
    with pytest.raises(ModelLoadError, match="not a Linear"):
        Embedder(folder, precision="fp32").encode(["x"], sparse=True)


def test_decode_sparse_gives_token_strings(models):
    emb = Embedder(models.m3, precision="fp32")
    vec = emb.encode("the cat sat on the mat", dense=False, sparse=True).sparse
    view = emb.decode_sparse(vec)
    assert len(view) == len(vec)
    assert [w for _, w in view] == sorted(vec.values.tolist(), reverse=True)
    assert {t for t, _ in view} <= {"the", "cat", "sat", "on", "mat", "[SEP]"}
    assert len(emb.decode_sparse(vec, top_k=2)) == 2


@pytest.mark.slow
def test_truncate_dim_applies_to_colbert_like_flag(flag, models, paragraphs):
    expected = _flag_m3(flag, models.m3, truncate_dim=64).encode(
        paragraphs[:5], return_dense=True, return_colbert_vecs=True
    )
    got = Embedder(models.m3, precision="fp32", truncate_dim=64).encode(paragraphs[:5], colbert=True)
    np.testing.assert_allclose(got.dense, expected["dense_vecs"], atol=ATOL, rtol=0)
    for a, b in zip(got.colbert, expected["colbert_vecs"]):
        assert a.shape[1] == 64
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


def test_has_head_and_require_heads(tmp_path, models):
    import shutil

    folder = tmp_path / "m3-sparse-only"
    shutil.copytree(models.m3, folder)
    (folder / "colbert_linear.pt").unlink()
    emb = Embedder(folder, precision="fp32")
    assert emb.has_head("sparse") and not emb.has_head("colbert")
    emb.require_heads(sparse=True)
    with pytest.raises(MissingHeadError, match="colbert_linear.pt"):
        emb.require_heads(sparse=True, colbert=True)
    from bge_core import ConfigError

    with pytest.raises(ConfigError, match="Valid heads"):
        emb.has_head("dense")  # type: ignore[arg-type]


@pytest.mark.parity
def test_compute_score_with_only_colbert_weight(models, m3_texts):
    emb = Embedder(models.xlmr_m3, precision="fp32")
    pairs = [(m3_texts[0], m3_texts[1]), (m3_texts[2], m3_texts[3])]
    got = emb.compute_score(pairs, weights=[0, 0, 1])
    assert all(np.isnan(v) for v in got["sparse+dense"])  # 0 / 0, as in FlagEmbedding
    assert got["colbert+sparse+dense"] == pytest.approx(got["colbert"], abs=1e-6)

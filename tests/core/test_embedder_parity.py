"""Dense embeddings equal FlagEmbedding's FlagModel (and sentence-transformers) on real weights."""

from __future__ import annotations

import numpy as np
import pytest

from bge_core import Embedder
from bge_core.registry import EN_INSTRUCTION
from bge_rag.testing import minilm_folder

ATOL = 1e-5


def flag_model(flag, folder, **kwargs):
    # A small batch keeps FlagModel from padding every text to the longest one (test time only).
    return flag.FlagModel(str(folder), use_fp16=False, devices="cpu", batch_size=8, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_dense_matches_flagmodel(flag, models, mixed_texts, pooling):
    ref = flag_model(flag, models.dense, pooling_method=pooling, query_instruction_for_retrieval=EN_INSTRUCTION)
    ours = Embedder(models.dense, precision="fp32", pooling=pooling, query_instruction=EN_INSTRUCTION)

    expected_docs = ref.encode_corpus(mixed_texts)
    expected_queries = ref.encode_queries(mixed_texts)
    got_docs = ours.encode_documents(mixed_texts)
    got_queries = ours.encode_queries(mixed_texts)

    assert got_docs.dtype == np.float32 and got_docs.shape == expected_docs.shape
    np.testing.assert_allclose(got_docs, expected_docs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(got_queries, expected_queries, atol=ATOL, rtol=0)
    assert np.abs(got_queries - got_docs).max() > 1e-3  # the instruction really changed the queries


@pytest.mark.slow
def test_no_instruction_queries_equal_documents(models, paragraphs):
    ours = Embedder(models.dense, precision="fp32", query_instruction="")
    assert ours.query_instruction is None
    np.testing.assert_array_equal(ours.encode_queries(paragraphs[:8]), ours.encode_documents(paragraphs[:8]))


@pytest.mark.slow
def test_single_string_gives_1d_vector(flag, models, paragraphs):
    ref = flag_model(flag, models.dense, query_instruction_for_retrieval=EN_INSTRUCTION)
    ours = Embedder(models.dense, precision="fp32", query_instruction=EN_INSTRUCTION)
    text = paragraphs[7]
    got = ours.encode_queries(text)
    assert got.shape == (ours.dimension,)
    np.testing.assert_allclose(got, ref.encode_queries(text), atol=ATOL, rtol=0)
    np.testing.assert_allclose(ours.encode_documents(text), ref.encode_corpus(text), atol=ATOL, rtol=0)


def test_token_counts_are_what_the_model_read(models, paragraphs):
    ours = Embedder(models.dense, precision="fp32", max_length=32, query_instruction=EN_INSTRUCTION)
    texts = ["", "short", *paragraphs[200:210]]
    tokenizer = ours.tokenizer
    as_documents = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=32)["input_ids"]]
    as_queries = [
        len(ids) for ids in tokenizer([EN_INSTRUCTION + t for t in texts], truncation=True, max_length=32)["input_ids"]
    ]
    assert ours.encode(texts).token_counts == as_documents
    assert max(as_documents) == 32 and min(as_documents) == 2  # truncated texts and the empty one
    assert ours.encode(texts, kind="query").token_counts == as_queries
    assert ours.encode(texts[3], kind="query").token_counts == as_queries[3]
    assert ours.encode([]).token_counts == []


@pytest.mark.slow
@pytest.mark.parametrize("max_length", [16, 77])
def test_truncation_to_max_length_matches(flag, models, paragraphs, max_length):
    ref = flag_model(flag, models.dense, passage_max_length=max_length)
    ours = Embedder(models.dense, precision="fp32", max_length=max_length)
    texts = paragraphs[200:230]
    np.testing.assert_allclose(ours.encode_documents(texts), ref.encode_corpus(texts), atol=ATOL, rtol=0)


@pytest.mark.slow
def test_truncate_dim_matches(flag, models, paragraphs):
    ref = flag_model(flag, models.dense, truncate_dim=128)
    ours = Embedder(models.dense, precision="fp32", truncate_dim=128)
    got = ours.encode_documents(paragraphs[:20])
    assert got.shape == (20, 128)
    np.testing.assert_allclose(got, ref.encode_corpus(paragraphs[:20]), atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


@pytest.mark.slow
def test_unnormalized_matches(flag, models, paragraphs):
    ref = flag_model(flag, models.dense, normalize_embeddings=False, pooling_method="mean")
    ours = Embedder(models.dense, precision="fp32", normalize=False, pooling="mean")
    got = ours.encode_documents(paragraphs[:20])
    assert np.abs(np.linalg.norm(got, axis=1) - 1).max() > 1e-2
    np.testing.assert_allclose(got, ref.encode_corpus(paragraphs[:20]), atol=ATOL, rtol=0)


@pytest.mark.parity
@pytest.mark.slow
def test_last_token_pooling_matches_flag_llm_model(flag, models, paragraphs):
    """last_token pooling (LLM embedders) on the BERT fixture, against FlagLLMModel's pooling."""
    ref = flag.FlagLLMModel(str(models.dense), use_fp16=False, devices="cpu", pooling_method="last_token", batch_size=8)
    ours = Embedder(models.dense, precision="fp32", pooling="last_token")
    texts = paragraphs[300:330]
    np.testing.assert_allclose(ours.encode_documents(texts), ref.encode_corpus(texts), atol=ATOL, rtol=0)


@pytest.mark.parity
@pytest.mark.slow
def test_sentence_transformers_parity_on_original_minilm(paragraphs):
    """The untouched MiniLM folder: mean pooling and 256-token limit read from its ST config."""
    from sentence_transformers import SentenceTransformer

    texts = [*paragraphs[:30], " ".join(paragraphs[50:80]), ""]
    st = SentenceTransformer(str(minilm_folder()), device="cpu")
    ours = Embedder(minilm_folder(), precision="fp32")
    assert ours.pooling == "mean" and ours.max_length == st.max_seq_length == 256
    expected = st.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    np.testing.assert_allclose(ours.encode_documents(texts), expected, atol=ATOL, rtol=0)

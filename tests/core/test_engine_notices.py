"""What the engine says and does not say: one truncation warning per engine, quiet loads, no
transformers noise before our own errors, and the small input rules (empty, unordered)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from bge_core import Embedder
from bge_core.errors import InputTypeError, ModelLoadError, TextTooLongError
from bge_core.truncation import TruncationWarner

SCORE_KEYS = {"colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"}


def _truncation_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bge_core.truncation"]


def test_truncation_warns_once_per_engine_with_count_and_fix(models, paragraphs, caplog):
    long_texts = [" ".join(paragraphs[i : i + 5]) for i in range(0, 15, 5)]
    texts = ["short", *long_texts, "also short"]
    with caplog.at_level(logging.WARNING, logger="bge_core.truncation"):
        emb = Embedder(models.dense, precision="fp32", max_length=32)
        emb.encode_documents(["nothing long here"])
        assert _truncation_messages(caplog) == []
        emb.encode_documents(texts)
        emb.encode_queries(texts)
        emb.encode_documents(long_texts)
        messages = _truncation_messages(caplog)
        assert len(messages) == 1
        assert "3 of 5 texts" in messages[0] and "max_length=32" in messages[0]
        assert "max_length=..." in messages[0] and "truncation=False" in messages[0]
        Embedder(models.dense, precision="fp32", max_length=32).encode_documents(long_texts)
        assert len(_truncation_messages(caplog)) == 2  # a new engine warns again


def test_text_of_exactly_max_length_is_not_counted(models, caplog):
    emb = Embedder(models.dense, precision="fp32", max_length=16)
    words = [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
    ]
    exact = " ".join(words[:14])
    assert len(emb.tokenizer(exact)["input_ids"]) == 16
    with caplog.at_level(logging.WARNING, logger="bge_core.truncation"):
        emb.encode_documents([exact])
        assert _truncation_messages(caplog) == []
        emb.encode_documents([exact + " fifteen"])
        assert len(_truncation_messages(caplog)) == 1


def test_truncation_warner_alone(caplog):
    warner = TruncationWarner("Reranker", unit="pairs")
    with caplog.at_level(logging.WARNING, logger="bge_core.truncation"):
        warner.report(truncated=0, total=4, max_length=512)
        assert not warner.warned
        warner.report(truncated=2, total=4, max_length=512, limit=8192)
        warner.report(truncated=4, total=4, max_length=512, limit=8192)
    (message,) = _truncation_messages(caplog)
    assert message.startswith("Reranker: 2 of 4 pairs") and "up to 8192" in message


def test_loading_is_quiet_and_leaves_transformers_settings_alone(models, capfd):
    from transformers.utils import logging as hf_logging

    level = logging.getLogger("transformers.modeling_utils").level
    assert hf_logging.is_progress_bar_enabled()
    capfd.readouterr()
    Embedder(models.minilm, precision="fp32", device="cpu", max_length=64)  # a fresh load (new key)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err
    assert hf_logging.is_progress_bar_enabled()
    assert logging.getLogger("transformers.modeling_utils").level == level


def test_missing_weights_raise_without_transformers_tables(models, tmp_path, capfd, caplog):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "incomplete-minilm"
    shutil.copytree(models.dense, folder)
    state = load_file(str(folder / "model.safetensors"))
    dropped = [k for k in state if "layer.0.attention.self.query" in k]
    assert dropped
    save_file({k: v for k, v in state.items() if k not in dropped}, str(folder / "model.safetensors"))
    capfd.readouterr()
    with caplog.at_level(logging.INFO), pytest.raises(ModelLoadError, match="randomly initialized"):
        Embedder(folder, precision="fp32")
    text = capfd.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    for noise in ("newly initialized", "MISSING", "LOAD REPORT", "Loading weights"):
        assert noise not in text


_LENGTH_WARNING_KEY = "sequence-length-is-longer-than-the-specified-maximum"


@pytest.mark.slow
def test_no_sequence_length_warning_before_text_too_long(models, paragraphs, capfd, caplog):
    strict = Embedder(models.dense, precision="fp32", truncation=False)
    long_text = " ".join(paragraphs[:40])
    capfd.readouterr()
    with caplog.at_level(logging.WARNING):
        # transformers warns once per tokenizer; forget an earlier warning so this check can fail.
        strict.tokenizer.deprecation_warnings.pop(_LENGTH_WARNING_KEY, None)
        with pytest.raises(TextTooLongError):
            strict.encode_documents([long_text])
        strict.tokenizer.deprecation_warnings.pop(_LENGTH_WARNING_KEY, None)
        assert len(strict.encode_chunked([long_text], max_tokens=128).chunks) > 1
        strict.tokenizer.deprecation_warnings.pop(_LENGTH_WARNING_KEY, None)
        Embedder(models.dense, precision="fp32", max_length=64).encode_documents([long_text])  # counts truncation
    text = capfd.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    assert "Token indices sequence length" not in text
    strict.tokenizer(long_text)  # the check above can fail: transformers does warn here
    assert "Token indices sequence length" in capfd.readouterr().err + caplog.text


def test_compute_score_of_no_pairs(models):
    got = Embedder(models.xlmr_m3, precision="fp32").compute_score([])
    assert got == {key: [] for key in SCORE_KEYS}


@pytest.mark.parity
def test_compute_score_ignores_the_query_instruction_as_bgem3flagmodel(flag, models, paragraphs):
    pairs = [(paragraphs[0], paragraphs[1]), (paragraphs[2], paragraphs[2]), ("a question", paragraphs[3])]
    instruction = "Represent this query: "
    ref = flag.BGEM3FlagModel(
        str(models.xlmr_m3), use_fp16=False, devices="cpu", batch_size=8, query_instruction_for_retrieval=instruction
    )
    ours = Embedder(models.xlmr_m3, precision="fp32", query_instruction=instruction)
    expected = ref.compute_score(pairs)
    got = ours.compute_score(pairs)
    for key in SCORE_KEYS:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-4, rtol=0, err_msg=key)
    # encode_queries does apply it, so the scores above really ignored it.
    plain = Embedder(models.xlmr_m3, precision="fp32")
    assert np.abs(ours.encode_queries(pairs[0][0]) - plain.encode_queries(pairs[0][0])).max() > 1e-4


@pytest.mark.parametrize(
    "unordered",
    [{"b", "a"}, frozenset({"b", "a"}), {"a": 1, "b": 2}.keys(), {1: "a", 2: "b"}.values(), {"a": "b"}.items()],
    ids=["set", "frozenset", "keys", "values", "items"],
)
def test_unordered_collections_are_refused(models, unordered):
    emb = Embedder(models.xlmr_m3, precision="fp32")
    with pytest.raises(InputTypeError, match="order is arbitrary"):
        emb.encode_documents(unordered)
    with pytest.raises(InputTypeError, match="order is arbitrary"):
        emb.compute_score(unordered)


def test_iterators_keep_their_order(models):
    emb = Embedder(models.xlmr_m3, precision="fp32")
    texts = ["one", "two words", "three words here"]
    expected = emb.encode_documents(texts)
    np.testing.assert_array_equal(emb.encode_documents(iter(texts)), expected)
    np.testing.assert_array_equal(emb.encode_documents(np.array(texts)), expected)

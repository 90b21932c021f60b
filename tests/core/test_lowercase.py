"""sentence-transformers folders whose sentence_bert_config.json says ``do_lower_case: true``: the engine
lowercases inputs exactly as sentence-transformers does (computed here), on a cased tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bge_core import Embedder
from bge_core.errors import UnsupportedModelError
from bge_core.loading import lowercase_tokenizer
from bge_rag.testing import build_xlmr_model

ATOL = 1e-5
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

TEXTS = [
    "The QUICK brown Fox",
    "ΟΔΟΣ ΚΑΙ ΣΟΦΙΑ",
    "İstanbul IST",
    "Grüße aus KÖLN",
    "HTTP/2 SERVER-SENT EVENTS",
    "already lower case",
    "",
    "PYTHON " * 40,
]


def _st_folder(source: Path, dest: Path, lowercase: bool) -> Path:
    """A Transformer -> Pooling(mean) folder as sentence-transformers 5.x and BAAI's folders write it:
    ``do_lower_case`` in sentence_bert_config.json and a tokenizer.json without a Lowercase step
    (sentence-transformers 6 loads such a folder by adding the step; the engine must do the same)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(str(source))
    SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")], device="cpu"
    ).save(str(dest))
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, dest / name)
    config_path = dest / "sentence_bert_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "max_seq_length": 128, "do_lower_case": lowercase}))
    return dest


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[bool, Path]:
    root = tmp_path_factory.mktemp("lowercase")
    source = build_xlmr_model(root / "xlmr-cased")
    return {flag: _st_folder(source, root / f"st-lower-{flag}", flag) for flag in (True, False)}


def _st_vectors(folder: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    return st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


@pytest.mark.parametrize("lowercase", [True, False])
def test_lowercased_folders_match_sentence_transformers(folders, lowercase):
    engine = Embedder(folders[lowercase], precision="fp32", device="cpu")
    assert engine.spec.lowercase is lowercase
    got = engine.encode(TEXTS).dense
    np.testing.assert_allclose(got, _st_vectors(folders[lowercase], TEXTS), atol=ATOL, rtol=0)


@pytest.mark.parity
def test_sentence_transformers_lowercases_such_a_folder(folders):
    """The reference really lowercases (else the parity above would prove nothing)."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folders[True]), device="cpu")
    assert st.tokenizer("The QUICK brown Fox")["input_ids"] == st.tokenizer("the quick brown fox")["input_ids"]


def test_lowercasing_changes_what_a_cased_tokenizer_reads(folders):
    """The fixture is cased: without lowercasing the upper-case texts give other tokens and vectors
    (so the test above can fail), and lowercased they equal their lower-case spelling."""
    lower = Embedder(folders[True], precision="fp32", device="cpu")
    cased = Embedder(folders[False], precision="fp32", device="cpu")
    ids_lower = lower.tokenizer("The QUICK brown Fox")["input_ids"]
    assert ids_lower == cased.tokenizer("the quick brown fox")["input_ids"]
    assert ids_lower != cased.tokenizer("The QUICK brown Fox")["input_ids"]
    a, b = lower.encode(TEXTS[:2]).dense, cased.encode(TEXTS[:2]).dense
    assert np.abs(a - b).max() > 1e-3
    # The default precision too (what most users get): the same tokens, so the same lowercasing.
    default = Embedder(folders[True], device="cpu")
    assert default.encode(["The QUICK brown Fox"]).token_counts == [len(ids_lower)]


def test_chunk_offsets_point_into_the_original_text(folders):
    engine = Embedder(folders[True], precision="fp32", device="cpu")
    text = " ".join(["The QUICK Brown FOX jumps"] * 30)
    out = engine.encode_chunked([text], max_tokens=32, overlap=4)
    assert len(out.chunks) > 1
    for chunk in out.chunks:
        piece = text[chunk.start : chunk.end]
        assert piece.strip() and piece != piece.lower()  # the original's capitals, not the lowered copy
    whole = (
        Embedder(folders[True], precision="fp32", device="cpu")
        .encode([text[out.chunks[0].start : out.chunks[0].end]])
        .dense
    )
    assert np.abs(out.encoded.dense[0] - whole[0]).max() < 1e-4


def test_server_tokenizer_copy_lowercases_too(folders):
    from bge_rag.server.work import ServerTokenizer

    engine = Embedder(folders[True], precision="fp32", device="cpu")
    copy = ServerTokenizer.for_engine(engine.tokenizer)
    tokens = copy.tokenize(["The QUICK Fox"], add_special_tokens=True)[0]
    assert [t["id"] for t in tokens] == engine.tokenizer("the quick fox")["input_ids"]


def test_export_keeps_lowercasing(folders, tmp_path):
    from sentence_transformers_bge import export

    out = export(folders[True], tmp_path / "exported", "dense")
    assert json.loads((out / "sentence_bert_config.json").read_text())["do_lower_case"] is True
    engine = Embedder(folders[True], precision="fp32", device="cpu")
    np.testing.assert_allclose(_st_vectors(out, TEXTS), engine.encode(TEXTS).dense, atol=ATOL, rtol=0)


def test_slow_tokenizer_is_refused(tmp_path):
    with pytest.raises(UnsupportedModelError, match="do_lower_case"):
        lowercase_tokenizer(object(), tmp_path)


def test_lowercase_and_plain_engines_never_share_a_tokenizer(folders):
    """The backbone cache is keyed by lowercasing too: the same files loaded with and without it
    give two tokenizers, and only one of them lowercases."""
    import torch

    from bge_core.loading import load_backbone

    options = {"task": "embedding", "device": torch.device("cpu"), "dtype": torch.float32}
    plain = load_backbone(folders[True], lowercase=False, **options)
    lower = load_backbone(folders[True], lowercase=True, **options)
    assert plain is not lower and plain.tokenizer is not lower.tokenizer
    assert lower.tokenizer("ABC")["input_ids"] == lower.tokenizer("abc")["input_ids"]
    assert plain.tokenizer("ABC")["input_ids"] != plain.tokenizer("abc")["input_ids"]
    assert load_backbone(folders[True], lowercase=True, **options) is lower  # still shared among equals

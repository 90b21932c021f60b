"""Exported sentence-transformers folders give bge_core's (= FlagEmbedding's) outputs.

Each export is built once per module from the fixture models, saved, and loaded back the way a
user would: ``SentenceTransformer(dir)``, ``MultiVectorEncoder(dir)``, ``SparseEncoder(dir,
trust_remote_code=True)``, ``CrossEncoder(dir)``. The BERT fixtures have no eos token, the XLM-R
ones do, so the special-token rules are checked on both.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _st_support import (
    ATOL,
    MINILM_MAX_LENGTH,
    QUERIES,
    SCORE_ATOL,
    ST_BATCH,
    assert_same_colbert,
    assert_same_sparse,
    length_options,
    reference,
    registry_named,
    sparse_rows,
)
from sentence_transformers import CrossEncoder, MultiVectorEncoder, SentenceTransformer, SparseEncoder
from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder

from bge_core import Reranker, colbert_scores
from bge_core.registry import EN_INSTRUCTION
from sentence_transformers_bge import (
    M3LexicalWeights,
    build_sentence_transformer,
    build_sparse_encoder,
    export,
    load_sparse_encoder,
)
from sentence_transformers_bge import m3_lexical_weights as lexical_module

M3_FIXTURES = ["m3", "xlmr_m3"]


@pytest.fixture(scope="module")
def st_texts(paragraphs: list[str]) -> list[str]:
    """Real paragraphs plus edge cases: empty, one word, repeated tokens, non-ASCII, over-long."""
    return [
        *paragraphs[:6],
        "",
        "bge",
        "the the the cat cat sat on the the mat",
        "Grüße aus Köln — naïve café, 北京欢迎你",
        " ".join(paragraphs[100:140]),  # longer than max_length: truncated by both
    ]


@pytest.fixture(scope="module")
def m3_reference(models, st_texts):
    """bge_core's sparse and ColBERT outputs of each M3 fixture: (documents, queries), computed once."""
    cache = {}

    def outputs(folder: Path):
        if folder not in cache:
            ref = reference(folder, **length_options(models, folder))
            cache[folder] = (
                ref.encode(st_texts, sparse=True, colbert=True, dense=False),
                ref.encode(QUERIES, kind="query", sparse=True, colbert=True, dense=False),
            )
        return cache[folder]

    return outputs


def _types(folder: Path) -> list[str]:
    return [entry["type"] for entry in json.loads((folder / "modules.json").read_text())]


# ---------------------------------------------------------------------------------------- dense
@pytest.fixture(scope="module")
def registry_dense(models, tmp_path_factory) -> Path:
    """The dense fixture under a registered name: CLS pooling and the English query instruction."""
    return registry_named(models, tmp_path_factory, "bge-small-en-v1.5", "dense")


@pytest.fixture(scope="module")
def dense_export(registry_dense, tmp_path_factory) -> Path:
    return export(registry_dense, tmp_path_factory.mktemp("st") / "dense", kind="dense", max_length=MINILM_MAX_LENGTH)


@pytest.mark.parity
def test_dense_folder_layout_prompts_and_similarity(dense_export):
    # the module names and config keys sentence-transformers 5.x reads (6.x maps them to its modules)
    assert _types(dense_export) == [
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
        "sentence_transformers.models.Normalize",
    ]
    model = SentenceTransformer(str(dense_export), device="cpu")
    assert model.prompts == {"query": EN_INSTRUCTION, "document": ""}
    assert model.similarity_fn_name == "cosine"
    assert model.max_seq_length == MINILM_MAX_LENGTH
    assert model[1].pooling_mode == "cls"
    pooling = json.loads((dense_export / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_cls_token"] is True and pooling["pooling_mode_mean_tokens"] is False
    assert json.loads((dense_export / "sentence_bert_config.json").read_text())["max_seq_length"] == MINILM_MAX_LENGTH


@pytest.mark.parity
def test_dense_encode_query_and_document_match_embedder(dense_export, registry_dense, st_texts):
    model = SentenceTransformer(str(dense_export), device="cpu")
    ref = reference(registry_dense, max_length=MINILM_MAX_LENGTH)
    assert ref.query_instruction == EN_INSTRUCTION and ref.pooling == "cls"  # the registry's
    np.testing.assert_allclose(model.encode_query(QUERIES), ref.encode_queries(QUERIES), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        model.encode_document(st_texts, batch_size=ST_BATCH), ref.encode_documents(st_texts), atol=ATOL, rtol=0
    )
    # and the instruction matters: without it the query vectors differ
    assert not np.allclose(model.encode_query(QUERIES[:1]), ref.encode_documents(QUERIES[:1]), atol=1e-3)


def test_dense_export_reads_back_into_bge_core(dense_export, registry_dense, st_texts):
    """bge_core reads the export's pooling config and query prompt: a round trip keeps the outputs."""
    again = reference(dense_export)
    assert again.pooling == "cls" and again.query_instruction == EN_INSTRUCTION
    assert again.max_length == MINILM_MAX_LENGTH
    expected = reference(registry_dense, max_length=MINILM_MAX_LENGTH).encode_queries(QUERIES)
    np.testing.assert_allclose(again.encode_queries(QUERIES), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("fixture", "options"),
    [
        (
            "dense",
            {
                "pooling": "mean",
                "query_instruction": "query: ",
                "document_instruction": "passage: ",
                "max_length": MINILM_MAX_LENGTH,
            },
        ),
        ("dense", {"pooling": "last_token", "normalize": False, "max_length": 64}),
        ("xlmr_m3", {"query_instruction": "Represent this query: "}),
    ],
    ids=["mean+instructions", "last_token-unnormalized", "xlmr"],
)
def test_dense_overrides_match_embedder(models, st_texts, fixture, options):
    folder = getattr(models, fixture)
    model = build_sentence_transformer(folder, device="cpu", **options)
    ref = reference(folder, **options)
    assert model.prompts == {
        "query": options.get("query_instruction", ""),
        "document": options.get("document_instruction", ""),
    }
    np.testing.assert_allclose(model.encode_query(QUERIES), ref.encode_queries(QUERIES), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        model.encode_document(st_texts, batch_size=ST_BATCH), ref.encode_documents(st_texts), atol=ATOL, rtol=0
    )


# -------------------------------------------------------------------------------------- ColBERT
@pytest.fixture(scope="module", params=M3_FIXTURES)
def colbert_export(request, models, tmp_path_factory) -> tuple[Path, Path]:
    folder = getattr(models, request.param)
    out = tmp_path_factory.mktemp("st") / f"colbert-{request.param}"
    return folder, export(folder, out, kind="colbert", **length_options(models, folder))


def test_colbert_folder_uses_only_built_in_modules(colbert_export):
    folder, out = colbert_export
    types = _types(out)
    assert all(t.startswith("sentence_transformers.") for t in types)
    assert [t.rsplit(".", 1)[-1] for t in types] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    dense = json.loads((out / "1_Dense" / "config.json").read_text())
    assert dense["bias"] is True and dense["activation_function"] == "torch.nn.modules.linear.Identity"
    assert dense["module_input_name"] == "token_embeddings"
    mask = json.loads((out / "2_MultiVectorMask" / "config.json").read_text())
    assert mask["skiplist_tasks"] == ["query", "document"]  # ST's default skips documents only
    assert not (out / "colbert_linear.pt").exists()  # the head lives in 1_Dense


@pytest.mark.parity
def test_colbert_vectors_and_scores_match_embedder(colbert_export, m3_reference, models, st_texts):
    folder, out = colbert_export
    model = MultiVectorEncoder(str(out), device="cpu")  # no trust_remote_code needed
    assert model.similarity_fn_name == "meanmaxsim"
    assert model.max_seq_length == length_options(models, folder).get("max_length", 512)
    docs, queries = (encoded.colbert for encoded in m3_reference(folder))
    got_docs = model.encode_document(st_texts, batch_size=ST_BATCH)
    got_queries = model.encode_query(QUERIES)
    assert_same_colbert(got_docs, docs)  # CLS dropped, final EOS kept, normalized
    assert_same_colbert(got_queries, queries)  # queries drop the CLS too
    scores = model.similarity(got_queries, got_docs).cpu().numpy()
    np.testing.assert_allclose(scores, colbert_scores(queries, docs), atol=SCORE_ATOL, rtol=0)


@pytest.mark.parity
def test_colbert_mask_drops_literal_cls_text(models, tmp_path_factory):
    """Documented difference: the id-based mask also drops a CLS token typed into the text."""
    out = export(models.m3, tmp_path_factory.mktemp("st") / "colbert-literal", kind="colbert", max_length=32)
    model = MultiVectorEncoder(str(out), device="cpu")
    text = "before [CLS] after"
    ours = model.encode_document(text)
    ref = reference(models.m3, max_length=32).encode(text, colbert=True, dense=False).colbert
    assert ours.shape[0] == ref.shape[0] - 1


# --------------------------------------------------------------------------------------- sparse
@pytest.fixture(scope="module", params=M3_FIXTURES)
def sparse_export(request, models, tmp_path_factory) -> tuple[Path, Path]:
    folder = getattr(models, request.param)
    out = tmp_path_factory.mktemp("st") / f"sparse-{request.param}"
    return folder, export(folder, out, kind="sparse", **length_options(models, folder))


@pytest.mark.parity
def test_sparse_folder_needs_trust_remote_code(sparse_export):
    _, out = sparse_export
    assert _types(out)[1] == "m3_lexical_weights.M3LexicalWeights"
    assert (out / "m3_lexical_weights.py").read_text() == Path(lexical_module.__file__).read_text()
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        SparseEncoder(str(out), device="cpu")
    card = (out / "README.md").read_text()
    assert f'SparseEncoder("{out.name}", trust_remote_code=True)' in card and "load_sparse_encoder" in card


def test_sparse_unused_ids_follow_flagembedding(sparse_export, models):
    folder, out = sparse_export
    config = json.loads((out / "1_M3LexicalWeights" / "config.json").read_text())
    tok = reference(folder).tokenizer
    expected = {tok.cls_token_id, tok.pad_token_id, tok.unk_token_id}
    if tok.eos_token is not None:  # XLM-R: </s> dropped; BERT has no eos, so [SEP] keeps its weight
        expected.add(tok.eos_token_id)
    assert set(config["unused_token_ids"]) == expected
    assert (tok.sep_token_id in expected) == (folder == models.xlmr_m3)


@pytest.mark.parity
@pytest.mark.parametrize("loader", ["trust_remote_code", "load_sparse_encoder"])
def test_sparse_weights_match_embedder(sparse_export, m3_reference, st_texts, loader):
    folder, out = sparse_export
    if loader == "trust_remote_code":
        model = SparseEncoder(str(out), device="cpu", trust_remote_code=True)  # the folder's own module file
    else:
        model = load_sparse_encoder(out, device="cpu")  # bge-rag's class, no flag
        assert isinstance(model[1], M3LexicalWeights)
    assert model.similarity_fn_name == "dot"
    docs, queries = (encoded.sparse for encoded in m3_reference(folder))
    got_docs = model.encode_document(st_texts, batch_size=ST_BATCH)
    got_queries = model.encode_query(QUERIES)
    assert got_docs.shape == (len(st_texts), model.get_embedding_dimension())
    assert_same_sparse(sparse_rows(got_docs), docs)
    assert_same_sparse(sparse_rows(got_queries), queries)
    lexical = np.array([[q.dot(d) for d in docs] for q in queries], dtype=np.float32)
    np.testing.assert_allclose(model.similarity(got_queries, got_docs).cpu().numpy(), lexical, atol=SCORE_ATOL, rtol=0)


@pytest.mark.parity
def test_naive_sparse_encoder_on_m3_folder_is_wrong_and_ours_is_right(models, st_texts):
    """The pitfall: SparseEncoder on a plain BGE-M3 folder attaches a random head instead of M3's."""
    texts = st_texts[:4]
    expected = reference(models.m3).encode(texts, sparse=True, dense=False).sparse
    naive = SparseEncoder(str(models.m3), device="cpu")
    assert any(isinstance(module, SparseAutoEncoder) for module in naive)  # randomly initialized
    naive_out = naive.encode_document(texts, convert_to_sparse_tensor=False).cpu().numpy()
    vocab = len(reference(models.m3).tokenizer)
    assert naive_out.shape != (len(texts), vocab)  # not even token ids
    ours = build_sparse_encoder(models.m3, device="cpu")
    assert_same_sparse(sparse_rows(ours.encode_document(texts)), expected)


@pytest.mark.parity
def test_naive_multi_vector_encoder_on_m3_folder_is_wrong(models):
    """The same pitfall for ColBERT: a random 128-dim projection instead of colbert_linear.pt."""
    naive = MultiVectorEncoder(str(models.m3), device="cpu")
    got = naive.encode_document("the global statement")
    ref = reference(models.m3).encode("the global statement", colbert=True, dense=False).colbert
    assert got.shape != ref.shape


def test_lexical_module_file_is_self_contained():
    """The copy in a sparse folder must load without bge-rag: it imports only torch and ST."""
    tree = ast.parse(Path(lexical_module.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots <= {"__future__", "typing", "pathlib", "shutil", "torch", "sentence_transformers"}


def test_lexical_module_keeps_max_weight_per_token_id():
    module = M3LexicalWeights(hidden_size=2, vocab_size=6, unused_token_ids=[0])
    with torch.no_grad():
        module.linear.weight.copy_(torch.tensor([[1.0, 0.0]]))
        module.linear.bias.zero_()
    features = {
        "input_ids": torch.tensor([[0, 3, 3, 5, 1]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0]]),
        "token_embeddings": torch.tensor([[[9.0, 0], [0.5, 0], [2.0, 0], [-1.0, 0], [7.0, 0]]]),
    }
    out = module(features)["sentence_embedding"]
    # id 0 unused, id 3 keeps max(0.5, 2.0), id 5 negative -> 0, id 1 is padding
    assert out.tolist() == [[0.0, 0.0, 0.0, 2.0, 0.0, 0.0]]


# ------------------------------------------------------------------------------------- reranker
@pytest.fixture(
    scope="module",
    params=[("reranker", "identity"), ("reranker", "sigmoid"), ("xlmr_reranker", None)],
    ids=["identity", "sigmoid", "xlmr-default"],
)
def reranker_export(request, models, tmp_path_factory) -> tuple[Path, Path, str]:
    fixture, activation = request.param
    folder = getattr(models, fixture)
    out = export(
        folder,
        tmp_path_factory.mktemp("st") / f"reranker-{fixture}-{activation}",
        kind="reranker",
        activation=activation,
        **length_options(models, folder),
    )
    return folder, out, activation or "identity"


@pytest.mark.parity
def test_reranker_activation_is_explicit(reranker_export):
    _, out, activation = reranker_export
    expected = {"identity": "torch.nn.modules.linear.Identity", "sigmoid": "torch.nn.modules.activation.Sigmoid"}
    config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert config["model_type"] == "CrossEncoder" and config["activation_fn"] == expected[activation]
    # also where sentence-transformers 4 and 5 look for it
    hf_config = json.loads((out / "config.json").read_text())
    assert hf_config["sentence_transformers"]["activation_fn"] == expected[activation]
    model = CrossEncoder(str(out), device="cpu")
    assert type(model.activation_fn).__name__ == {"identity": "Identity", "sigmoid": "Sigmoid"}[activation]


@pytest.mark.parity
@pytest.mark.slow
def test_reranker_scores_match_reranker(reranker_export, models, st_texts):
    folder, out, activation = reranker_export
    pairs = [(q, d) for q in QUERIES[:2] for d in st_texts] + [("q", ""), ("", "passage")]
    model = CrossEncoder(str(out), device="cpu")
    got = model.predict(pairs, batch_size=ST_BATCH)
    expected = Reranker(
        folder, precision="fp32", device="cpu", normalize=activation == "sigmoid", **length_options(models, folder)
    ).score(pairs)
    np.testing.assert_allclose(got, expected, atol=SCORE_ATOL, rtol=0)
    if activation == "identity":
        assert (np.asarray(expected) < 0).any() or (np.asarray(expected) > 1).any()  # raw logits, not 0..1


@pytest.mark.parity
def test_dense_export_of_an_st_folder_keeps_its_normalize(models, tmp_path, st_texts):
    """An unregistered ST folder whose modules.json ends in Normalize: bge_core normalizes, so does the export."""
    out = export(models.minilm, tmp_path / "minilm", kind="dense", normalize=False, max_length=MINILM_MAX_LENGTH)
    model = SentenceTransformer(str(out), device="cpu")
    ref = reference(models.minilm, normalize=False, max_length=MINILM_MAX_LENGTH)
    assert ref.pooling == "mean"  # read from the folder's own pooling config
    got = model.encode_document(st_texts, batch_size=ST_BATCH)
    np.testing.assert_allclose(got, ref.encode_documents(st_texts), atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

"""``bge-rag export-st`` and the export's typed errors."""

from __future__ import annotations

import json
import sys

import pytest
from _st_support import QUERIES, assert_same_colbert, reference
from sentence_transformers import MultiVectorEncoder

from bge_core import ConfigError, MissingExtraError, MissingHeadError, ModelLoadError, UnsupportedModelError
from bge_rag.cli import main
from sentence_transformers_bge import export, load_sparse_encoder


@pytest.mark.parity
def test_cli_exports_colbert_folder(models, tmp_path, capsys):
    out = tmp_path / "colbert"
    assert main(["export-st", str(models.xlmr_m3), str(out), "--kind", "colbert", "--max-length", "64"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    # only the command's own lines: no transformers weight-loading / shard-writing bars or reports
    assert "Loading weights" not in captured.err and "Writing model shards" not in captured.err
    assert "not sharded" not in captured.err and len(printed.splitlines()) == 3
    assert "Modules: Transformer -> Dense -> MultiVectorMask -> Normalize" in printed
    assert f"Load it with: MultiVectorEncoder('{out}')" in printed
    model = MultiVectorEncoder(str(out), device="cpu")
    assert model.max_seq_length == 64
    expected = reference(models.xlmr_m3, max_length=64).encode(QUERIES, kind="query", colbert=True, dense=False)
    assert_same_colbert(model.encode_query(QUERIES), expected.colbert)


def test_cli_errors_are_reported_not_raised(models, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export-st", str(models.dense), str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err
    argv = ["export-st", str(models.reranker), str(tmp_path / "x"), "--kind", "reranker", "--pooling", "mean"]
    assert main(argv) == 2
    assert "pooling does not apply to kind='reranker'" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_without_sentence_transformers_names_the_extra(monkeypatch, capsys, tmp_path, models):
    for name in [m for m in sys.modules if m.split(".")[0] == "sentence_transformers_bge"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes `import sentence_transformers` fail
    assert main(["export-st", str(models.dense), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'bge-rag[sentence-transformers]'" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(MissingExtraError):
        __import__("sentence_transformers_bge")


def test_unreachable_hub_id_is_a_clear_error(tmp_path, capsys):
    assert main(["export-st", "BAAI/bge-m3", str(tmp_path / "m3"), "--kind", "sparse"]) == 2
    assert "pass the path of a local model folder" in capsys.readouterr().err
    assert not (tmp_path / "m3").exists()


def test_unknown_kind_and_misplaced_options(models, tmp_path):
    with pytest.raises(ConfigError, match="Valid kinds are: dense, sparse, colbert, reranker"):
        export(models.dense, tmp_path / "a", kind="splade")
    with pytest.raises(ConfigError, match="activation does not apply to kind='dense'"):
        export(models.dense, tmp_path / "a", kind="dense", activation="sigmoid")
    with pytest.raises(ConfigError, match="Invalid activation"):
        export(models.reranker, tmp_path / "a", kind="reranker", activation="softmax")
    with pytest.raises(ConfigError, match="Valid pooling modes"):
        export(models.dense, tmp_path / "a", kind="dense", pooling="max")
    with pytest.raises(ConfigError, match="puts text after the query"):
        export(models.dense, tmp_path / "a", query_instruction="Find: ", query_instruction_format="{1} ({0})")


def test_missing_heads_and_wrong_model_kinds_are_errors(models, tmp_path):
    with pytest.raises(MissingHeadError, match="sparse_linear.pt"):
        export(models.dense, tmp_path / "s", kind="sparse")
    with pytest.raises(MissingHeadError, match="colbert_linear.pt"):
        export(models.dense, tmp_path / "c", kind="colbert")
    with pytest.raises(ModelLoadError):  # an embedding model has no classifier head
        export(models.dense, tmp_path / "r", kind="reranker")
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_out_dir_rules(models, tmp_path):
    out = export(models.xlmr_m3, tmp_path / "d", kind="dense")
    with pytest.raises(ConfigError, match="not empty"):
        export(models.xlmr_m3, out, kind="colbert")
    export(models.xlmr_m3, out, kind="colbert", overwrite=True)  # replaces the earlier export entirely
    assert not (out / "1_Pooling").exists() and (out / "1_Dense").is_dir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="refusing to replace"):
        export(models.xlmr_m3, foreign, overwrite=True)
    with pytest.raises(ConfigError, match="holds the source model"):
        export(models.xlmr_m3, models.xlmr_m3, overwrite=True)
    with pytest.raises(ConfigError, match="is a file"):
        export(models.xlmr_m3, foreign / "data.bin")


def test_load_sparse_encoder_rejects_other_folders(models, tmp_path):
    out = export(models.xlmr_m3, tmp_path / "dense", kind="dense")
    with pytest.raises(ModelLoadError, match="not a BGE-M3 sparse export"):
        load_sparse_encoder(out)
    assert json.loads((out / "config_sentence_transformers.json").read_text())["model_type"] == "SentenceTransformer"


@pytest.mark.parity
def test_dense_export_refuses_a_folder_with_dense_modules(models, tmp_path):
    """bge_core applies an ST folder's Dense modules; an export that dropped them would give other vectors."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(str(models.dense), max_seq_length=64)
    source = tmp_path / "with-dense"
    SentenceTransformer(modules=[transformer, Pooling(384, pooling_mode="mean"), Dense(384, 32)], device="cpu").save(
        str(source)
    )
    with pytest.raises(UnsupportedModelError, match="Dense modules after Pooling"):
        export(source, tmp_path / "out", kind="dense")
    assert not (tmp_path / "out").exists()

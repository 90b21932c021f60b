"""bge-rag mine-negatives / score-pairs: hn_mine.py and add_reranker_score.py command lines, unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _mining_support import read_lines, training_lines, write_lines

from bge_rag.cli import main


def _mine_args(source: Path, output: Path, model: Path, *extra: str) -> list[str]:
    return [
        "mine-negatives",
        "--input_file", str(source),
        "--output_file", str(output),
        "--embedder_name_or_path", str(model),
        "--use_fp16", "False",
        "--devices", "cpu",
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("command", ["mine-negatives", "score-pairs"])
def test_help_lists_the_script_options(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    names = (
        ["--range_for_sampling", "--candidate_pool", "--use_gpu_for_searching", "--no_normalize_embeddings", "--seed"]
        if command == "mine-negatives"
        else ["--reranker_name_or_path", "--reranker_max_length", "--normalize", "--cutoff_layers"]
    )
    for name in names:
        assert name in text


def test_top_level_help_lists_both(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "mine-negatives" in text and "score-pairs" in text


def test_unknown_option_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["mine-negatives", "--input_file", "a", "--output_file", "b", "--embedder_name_or_path", "m", "--nope"])
    assert exit_info.value.code == 2
    assert "--nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--range_for_sampling", "10"], "range_for_sampling"),
        (["--devices", "cpu", "cpu"], "one device"),
        (["--examples_for_task", "x"], "--examples_for_task is not supported"),
    ],
)
def test_bad_options_are_typed_errors(tmp_path, models, capsys, extra, message) -> None:
    source = write_lines(tmp_path / "train.jsonl", [{"query": "q", "pos": ["a"]}])
    args = _mine_args(source, tmp_path / "out.jsonl", models.dense)
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bge-rag: error: ") and message in err


def test_bad_json_line_exit_2_names_file_and_line(tmp_path, models, capsys) -> None:
    source = tmp_path / "train.jsonl"
    source.write_text('{"query": "q", "pos": ["a"]}\n{"query": oops}\n', encoding="utf-8")
    assert main(_mine_args(source, tmp_path / "out.jsonl", models.dense)) == 2
    assert f"{source}:2: not valid JSON" in capsys.readouterr().err


def test_missing_input_exit_2(tmp_path, models, capsys) -> None:
    assert main(_mine_args(tmp_path / "nope.jsonl", tmp_path / "out.jsonl", models.dense)) == 2
    assert "nope.jsonl" in capsys.readouterr().err


@pytest.mark.slow
def test_mine_negatives_hn_mine_command_line(tmp_path, models, paragraphs, capsys) -> None:
    lines = training_lines(paragraphs)
    source = write_lines(tmp_path / "train.jsonl", lines)
    extra = ["--range_for_sampling", "2-20", "--negative_number", "5", "--use_gpu_for_searching", "--batch_size", "16"]
    assert main(_mine_args(source, tmp_path / "a.jsonl", models.dense, *extra)) == 0
    printed = capsys.readouterr().out
    assert "--use_gpu_for_searching is not needed" in printed and "Mined negatives for 24 lines" in printed
    assert main(_mine_args(source, tmp_path / "b.jsonl", models.dense, *extra)) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    out = read_lines(tmp_path / "a.jsonl")
    assert [len(line["neg"]) for line in out] == [5] * len(lines)
    assert main(_mine_args(source, tmp_path / "c.jsonl", models.dense, *extra, "--seed", "1")) == 0
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()


@pytest.mark.slow
@pytest.mark.parity
def test_score_pairs_command_line(tmp_path, flag, models, paragraphs) -> None:
    lines = training_lines(paragraphs)[:5]
    source = write_lines(tmp_path / "train.jsonl", lines)
    args = [
        "score-pairs",
        "--input_file", str(source),
        "--output_file", str(tmp_path / "out.jsonl"),
        "--reranker_name_or_path", str(models.reranker),
        "--use_fp16", "False",
        "--devices", "cpu",
        "--reranker_batch_size", "4",
        "--normalize",
    ]  # fmt: skip
    assert main(args) == 0
    reference = flag.FlagReranker(str(models.reranker), use_fp16=False, devices="cpu", batch_size=8, normalize=True)
    pairs = [(line["query"], p) for line in lines for p in (*line["pos"], *line["neg"])]
    expected = reference.compute_score(pairs)
    got = [s for line in read_lines(tmp_path / "out.jsonl") for s in (*line["pos_scores"], *line["neg_scores"])]
    assert got == pytest.approx(expected, abs=1e-5)


def test_score_pairs_refuses_peft(tmp_path, capsys) -> None:
    source = write_lines(tmp_path / "train.jsonl", [{"query": "q", "pos": ["a"], "neg": []}])
    args = ["score-pairs", "--input_file", str(source), "--output_file", str(tmp_path / "o.jsonl")]
    assert main([*args, "--reranker_name_or_path", "x", "--reranker_peft_path", "p"]) == 2
    assert "--reranker_peft_path is not supported" in capsys.readouterr().err
    assert main(args) == 2
    assert "--reranker_name_or_path is required" in capsys.readouterr().err
    json.loads(source.read_text())  # the input is untouched


def test_build_embedders_as_hn_mine_loads_its_model(tmp_path, models, caplog) -> None:
    from bge_rag.mining.arguments import EmbedderArgs
    from bge_rag.mining.command import build_embedders

    # A folder named like a registered model gets its registry settings (instruction, pooling).
    folder = tmp_path / "bge-small-en-v1.5"
    folder.symlink_to(models.dense, target_is_directory=True)
    with caplog.at_level("WARNING", logger="bge_rag.mining.command"):
        embedder, query_embedder = build_embedders(EmbedderArgs(embedder_name_or_path=str(folder), devices=["cpu"]))
    assert embedder.query_instruction is None  # hn_mine: none unless given
    assert "Represent this sentence" in caplog.text
    assert str(embedder.dtype) == "torch.float32"  # use_fp16 defaults on; the CPU computes fp32
    assert embedder.pooling == "cls" and embedder.max_length == 512
    assert query_embedder is None

    given = EmbedderArgs(
        embedder_name_or_path=str(folder),
        devices=["cpu"],
        query_instruction_for_retrieval="Find: ",
        query_instruction_format_for_retrieval="{}\\n{}",
        embedder_query_max_length=64,
        pooling_method="mean",
    )
    embedder, query_embedder = build_embedders(given)
    assert query_embedder is not None and query_embedder.max_length == 64
    assert query_embedder.query_instruction == "Find: " and query_embedder.query_instruction_format == "{}\n{}"
    assert embedder.pooling == "mean"

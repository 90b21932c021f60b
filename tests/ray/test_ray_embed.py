"""bge_rag.ray.embed_dataset on a local Ray runtime (2 CPUs): same vectors as Embedder, ids and order kept."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import ray.data
from _streaming_support import assert_close, assert_identical, corpus

from bge_core import ConfigError, Embedder, InputTypeError, InvalidInputError
from bge_rag.corpus import arrow_columns, encoded_from_arrow
from bge_rag.ray import BGEEmbedActor, embed_dataset

OPTIONS = {"precision": "fp32", "max_length": 32}
_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report to Anyscale
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module, with 2 CPUs, no dashboard, stopped afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in _RAY_ENV.items():
            patch.setenv(name, value)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": dict(_RAY_ENV)},
        )
        context = ray.data.DataContext.get_current()
        preserve, progress = context.execution_options.preserve_order, context.enable_progress_bars
        context.execution_options.preserve_order = True  # the dataset's global order, for the comparison
        context.enable_progress_bars = False
        try:
            yield
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = preserve, progress
            ray.shutdown()


@pytest.mark.slow
def test_two_actors_give_embedder_vectors_with_ids_in_order(ray_runtime, models, paragraphs, tmp_path):
    texts = corpus(paragraphs, 96)
    ids = [f"doc-{i}" for i in range(len(texts))]
    source = tmp_path / "corpus"
    source.mkdir()
    for k in range(2):
        rows = slice(48 * k, 48 * (k + 1))
        pq.write_table(pa.table({"id": ids[rows], "text": texts[rows]}), source / f"part-{k}.parquet")

    # Small files are read as one block; four blocks give both actors work.
    ds = ray.data.read_parquet(str(source)).repartition(4)
    # Two actors with half a CPU each leave a CPU for the read tasks (a pool that reserves every
    # CPU starves them).
    embedded = embed_dataset(
        ds,
        model=str(models.xlmr_m3),
        outputs=["dense", "sparse", "colbert"],
        concurrency=2,
        num_cpus_per_actor=0.5,
        batch_size=16,
        embedder_options=OPTIONS,
    ).materialize()

    table = pa.concat_tables(ray.get(embedded.to_arrow_refs()))
    assert table.column_names == ["id", "text", "dense", "sparse", "colbert"]
    assert table.column("id").to_pylist() == ids
    assert table.column("text").to_pylist() == texts
    want = Embedder(models.xlmr_m3, **OPTIONS).encode(texts, dense=True, sparse=True, colbert=True)
    assert_close(encoded_from_arrow(table), want)

    embedded.drop_columns(["text"]).write_parquet(str(tmp_path / "embeddings"))
    written = pq.read_table(tmp_path / "embeddings").sort_by("id")
    assert written.column_names == ["id", "dense", "sparse", "colbert"]
    assert written.equals(table.drop_columns(["text"]).sort_by("id"))


def test_the_actor_appends_columns_in_row_order(models, paragraphs):
    texts = corpus(paragraphs, 10)
    actor = BGEEmbedActor(str(models.m3), OPTIONS, "body", ("sparse", "dense"), "query")
    batch = pa.table({"key": list(range(10)), "body": texts})
    out = actor(batch)
    assert out.column_names == ["key", "body", "dense", "sparse"]
    assert out.column("key").to_pylist() == list(range(10))
    want = Embedder(models.m3, **OPTIONS).encode(texts, kind="query", sparse=True)
    assert_identical(encoded_from_arrow(out), want)
    assert out.schema.field("dense").type == pa.table(arrow_columns(want)).schema.field("dense").type

    empty = actor(batch.slice(0, 0))
    assert empty.num_rows == 0 and empty.column_names == out.column_names


def test_the_actor_reports_bad_batches(models):
    actor = BGEEmbedActor(str(models.m3), OPTIONS, "text", ("dense",), "document")
    with pytest.raises(InvalidInputError, match="no column 'text'"):
        actor(pa.table({"body": ["a"]}))
    with pytest.raises(InvalidInputError, match="already has column"):
        actor(pa.table({"text": ["a"], "dense": [1.0]}))
    with pytest.raises(InputTypeError, match=r"column 'text': texts\[1\] is None"):
        actor(pa.table({"text": ["a", None]}))


@pytest.mark.slow
def test_settings_are_checked_before_any_actor_starts(ray_runtime, models):
    ds = ray.data.from_items([{"text": "a"}])
    for kwargs, message in [
        ({"outputs": "dense,lexical"}, "Valid outputs are"),
        ({"kind": "passage"}, "Valid kinds are"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": (3, 2)}, "concurrency"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_gpus_per_actor": -1}, "num_gpus_per_actor"),
        ({"embedder_options": {"precison": "fp32"}}, "precison"),
        ({"embedder_options": {"model": "x"}}, "model"),
    ]:
        with pytest.raises(ConfigError, match=message):
            embed_dataset(ds, model=str(models.m3), **kwargs)
    with pytest.raises(InputTypeError, match="ray.data.Dataset"):
        embed_dataset([{"text": "a"}], model=str(models.m3))  # type: ignore[arg-type]

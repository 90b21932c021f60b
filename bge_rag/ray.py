"""Corpus-scale embedding on Ray Data: one call, one model per actor.

Import this module explicitly (``from bge_rag.ray import embed_dataset``); ``import bge_core``
never imports Ray. Install with ``pip install 'bge-rag[ray]'``.

Example:
    >>> import ray
    >>> from bge_rag.ray import embed_dataset
    >>> ds = ray.data.read_parquet("s3://bucket/corpus/")  # columns: id, text  # doctest: +SKIP
    >>> ds = embed_dataset(ds, model="BAAI/bge-m3", outputs=["dense", "sparse"],  # doctest: +SKIP
    ...                    concurrency=8, num_gpus_per_actor=1, batch_size=512)
    >>> ds.drop_columns(["text"]).write_parquet("s3://bucket/embeddings/")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from bge_core.errors import ConfigError, InputTypeError, InvalidInputError, MissingExtraError

try:
    import pyarrow as pa
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(f"bge_rag.ray needs Ray Data ({exc}): pip install 'bge-rag[ray]'") from exc

from bge_core.embedder import Embedder, Kind

from .corpus import OUTPUTS, arrow_columns, check_outputs, colbert_dimension

#: Rows handed to one actor call (one ``Embedder.encode``) unless the caller says otherwise.
DEFAULT_BATCH_SIZE = 256


class BGEEmbedActor:
    """The Ray Data callable class behind :func:`embed_dataset`: loads the model once per actor.

    Each call encodes one batch (a ``pyarrow.Table``) with one ``Embedder.encode`` call and
    returns it with the output columns appended: ``dense`` (``fixed_size_list<float32>[dim]``),
    ``sparse`` (``struct<indices: list<int64>, values: list<float32>>``), ``colbert``
    (``list<fixed_size_list<float32>[dim]>``). Rows keep their order and every input column.
    """

    def __init__(
        self, model: str, embedder_options: Mapping[str, Any], text_column: str, outputs: Sequence[str], kind: Kind
    ) -> None:
        self._embedder = Embedder(model, **dict(embedder_options))
        self._text_column = text_column
        self._outputs = tuple(outputs)
        self._kind = kind
        self._embedder.require_heads(sparse="sparse" in self._outputs, colbert="colbert" in self._outputs)
        self._colbert_dim = colbert_dimension(self._embedder) if "colbert" in self._outputs else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Encode one batch and return it with the output columns appended.

        Args:
            batch: Rows with the text column (and any others, passed through).

        Returns:
            ``batch`` with the ``dense`` / ``sparse`` / ``colbert`` columns asked for.

        Raises:
            InvalidInputError: the text column is missing, or an output column exists already.
            InputTypeError: a text is not a string.
        """
        names = batch.column_names
        if self._text_column not in names:
            raise InvalidInputError(
                f"The dataset has no column {self._text_column!r} (columns: {', '.join(names)}); pass text_column=."
            )
        clash = [name for name in self._outputs if name in names]
        if clash:
            raise InvalidInputError(
                f"The dataset already has column(s) {', '.join(clash)}; rename or drop them before embedding."
            )
        texts = batch.column(self._text_column).to_pylist()
        try:
            encoded = self._embedder.encode(
                texts,
                kind=self._kind,
                show_progress=False,
                **{name: name in self._outputs for name in OUTPUTS},
            )
        except InputTypeError as exc:
            raise InputTypeError(f"column {self._text_column!r}: {exc}") from exc
        for name, array in arrow_columns(encoded, self._colbert_dim).items():
            batch = batch.append_column(name, array)
        return batch


def _compute(concurrency: int | tuple[int, int] | None) -> ray.data.ActorPoolStrategy | None:
    if concurrency is None:
        return None
    if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1:
        return ray.data.ActorPoolStrategy(size=concurrency)
    if (
        isinstance(concurrency, tuple)
        and len(concurrency) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in concurrency)
        and 1 <= concurrency[0] <= concurrency[1]
    ):
        return ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    raise ConfigError(f"concurrency must be a positive int (actors) or a (min, max) tuple, got {concurrency!r}")


def _check_resource(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{name} must be a non-negative number, got {value!r}")
    return value


def embed_dataset(
    ds: ray.data.Dataset,
    *,
    model: str,
    text_column: str = "text",
    outputs: str | Sequence[str] = ("dense",),
    kind: str = "document",
    concurrency: int | tuple[int, int] | None = None,
    num_gpus_per_actor: float = 0,
    num_cpus_per_actor: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    embedder_options: Mapping[str, Any] | None = None,
) -> ray.data.Dataset:
    """Add embedding columns to a Ray dataset, with a pool of actors that each load the model once.

    Lazy, like every Ray Data transform: nothing runs until the dataset is consumed
    (``write_parquet``, ``iter_batches``, ``take``...). Works unchanged on a laptop's
    ``ray.init()`` and on a cluster; every node needs bge-rag installed and access to ``model``.

    Args:
        ds: The dataset; ``text_column`` holds the texts, other columns (ids) are passed through.
        model: Hub id or folder, loaded by each actor as ``Embedder(model, **embedder_options)``.
        text_column: The column of texts.
        outputs: Any of ``"dense"``, ``"sparse"``, ``"colbert"`` (a list or ``"dense,sparse"``).
        kind: ``"document"`` (default) or ``"query"`` (applies the query instruction).
        concurrency: Actors: an int for a fixed pool, ``(min, max)`` for an autoscaling one, ``None``
            for Ray Data's default (autoscaling from 1).
        num_gpus_per_actor: GPUs reserved per actor (``1`` for one model per GPU, ``0.5`` for two).
            With GPUs, each actor uses the GPU Ray assigns to it.
        num_cpus_per_actor: CPUs reserved per actor (Ray's default when ``None``); Ray limits each
            actor's torch threads to it.
        batch_size: Rows per actor call, encoded by one ``Embedder.encode`` call (which sorts them
            by length and batches by tokens inside). A batch's outputs are held in memory: lower it
            for ColBERT on long texts.
        embedder_options: Other :class:`~bge_core.Embedder` arguments (``precision``, ``max_length``,
            ``batch_size``, ...), checked here before any actor starts.

    Returns:
        The dataset with ``dense`` (``fixed_size_list<float32>[dim]``), ``sparse``
        (``struct<indices: list<int64>, values: list<float32>>``) and / or ``colbert``
        (``list<fixed_size_list<float32>[dim]>``) columns appended, rows in their input order
        within each block. For the dataset's global order, set
        ``ray.data.DataContext.get_current().execution_options.preserve_order = True`` before
        creating ``ds``; the ids travel with their vectors either way.

    Raises:
        ConfigError: invalid settings or unknown ``embedder_options``.
    """
    if not isinstance(ds, ray.data.Dataset):
        raise InputTypeError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    wanted = check_outputs(outputs)
    if kind not in ("document", "query"):
        raise ConfigError(f"Invalid kind {kind!r}. Valid kinds are: document, query.")
    if not isinstance(text_column, str) or not text_column:
        raise ConfigError(f"text_column must be a non-empty string, got {text_column!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    options = dict(embedder_options or {})
    try:
        inspect.signature(Embedder).bind(str(model), **options)
    except TypeError as exc:
        raise ConfigError(f"embedder_options: {exc}. They are Embedder's arguments other than model.") from exc
    gpus = _check_resource("num_gpus_per_actor", num_gpus_per_actor)
    cpus = _check_resource("num_cpus_per_actor", num_cpus_per_actor)
    return ds.map_batches(
        BGEEmbedActor,
        fn_constructor_kwargs={
            "model": str(model),
            "embedder_options": options,
            "text_column": text_column,
            "outputs": wanted,
            "kind": kind,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=_compute(concurrency),
        num_cpus=cpus,  # None: Ray's default
        num_gpus=gpus or None,  # None (as for 0): no GPU reserved
    )


__all__ = ["BGEEmbedActor", "DEFAULT_BATCH_SIZE", "embed_dataset"]

"""Streaming encoding of corpora larger than memory: chunks in, Parquet parts out, resumable.

:func:`embed_corpus` reads texts from a JSONL or Parquet file (or any iterable) one chunk at a
time, encodes each chunk with one :meth:`~bge_core.Embedder.encode` call and writes it as one
Parquet file, so memory holds one chunk whatever the corpus size. The output folder::

    OUTPUT/
      _bge_rag.json          the job's settings; "complete": true once every row is written
      part-000000.parquet    rows 0 .. chunk_size-1, in input order (one row group)
      part-000001.parquet    ...
      _dense.npy             only with dense_format="npy": float32 (rows, dim), np.load(mmap_mode="r")

Columns (pyarrow types; every Parquet reader sees nested lists):

- ``id``: the input's id field (int64 or string), else the row number.
- ``dense``: ``fixed_size_list<float32>[dim]``.
- ``sparse``: ``struct<indices: list<int64>, values: list<float32>>``: Qdrant's ``SparseVector``
  shape, and the struct Milvus' Parquet bulk import reads for ``SPARSE_FLOAT_VECTOR``.
- ``colbert``: ``list<fixed_size_list<float32>[dim]>``, one vector per token (Qdrant multivectors).

A part is written under a temporary name and renamed once complete, so a part that exists is
whole. An interrupted job continues where it stopped when run again with the same settings:
parts already written are kept (after checking that their input rows are unchanged, by a
SHA-256 of ids and texts stored in each part) and the result is byte-identical to an
uninterrupted run. Files whose names start with ``_`` are skipped by Parquet dataset readers,
so ``pandas.read_parquet(OUTPUT)`` and ``pyarrow.dataset.dataset(OUTPUT)`` read the parts only.

pyarrow is imported only when used (``pip install 'bge-rag[parquet]'``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bge_core.errors import ConfigError, InputTypeError, InvalidInputError, MissingExtraError
from bge_core.types import Encoded, SparseVector
from bge_rag.jsonl import read_objects

if TYPE_CHECKING:
    from bge_core.embedder import Embedder

logger = logging.getLogger(__name__)

#: Outputs an embedding job can write, in column order.
OUTPUTS = ("dense", "sparse", "colbert")
#: Where dense vectors go: a Parquet column, or one ``.npy`` file for ``np.load(mmap_mode="r")``.
DENSE_FORMATS = ("parquet", "npy")
#: Texts per chunk (one encode call and one Parquet part) unless the caller says otherwise.
DEFAULT_CHUNK_SIZE = 1024
MANIFEST = "_bge_rag.json"
DENSE_NPY = "_dense.npy"
FORMAT = "bge-rag-embeddings"
FORMAT_VERSION = 1
_PART = "part-{:06d}.parquet"
_CHUNK_KEY = b"bge_rag.chunk"
_MISSING = object()
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _arrow() -> tuple[Any, Any]:
    """Pyarrow and pyarrow.parquet, or an error naming the extra."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingExtraError(
            f"Writing embeddings to Parquet needs pyarrow ({exc}): pip install 'bge-rag[parquet]'"
        ) from exc
    return pa, pq


@dataclass(frozen=True)
class EmbedSummary:
    """What :func:`embed_corpus` did.

    Attributes:
        output: The output folder.
        rows: Rows in the output (the whole input).
        encoded: Rows encoded by this call.
        skipped: Rows found already written by an earlier, interrupted call.
        parts: Parquet part files in the output.
        seconds: Wall time of this call.
    """

    output: Path
    rows: int
    encoded: int
    skipped: int
    parts: int
    seconds: float


# ---------------------------------------------------------------------------------- columns
def check_outputs(outputs: str | Iterable[str]) -> tuple[str, ...]:
    """``"dense,sparse"`` or ``["dense", "sparse"]`` as a tuple in column order.

    Raises:
        ConfigError: an unknown output, or none.
    """
    items = [o.strip() for o in outputs.split(",")] if isinstance(outputs, str) else list(outputs)
    items = [o for o in items if o]
    bad = [o for o in items if o not in OUTPUTS]
    if bad or not items:
        raise ConfigError(f"Invalid outputs {bad or items!r}. Valid outputs are: {', '.join(OUTPUTS)}.")
    return tuple(o for o in OUTPUTS if o in items)


def _list_offsets(lengths: Sequence[int]) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise InvalidInputError("A chunk holds more than 2**31 list items; use a smaller chunk_size.")
    return offsets.astype(np.int32)


def arrow_columns(encoded: Encoded, colbert_dim: int | None = None) -> dict[str, Any]:
    """The outputs of one ``Embedder.encode`` call (a list input) as pyarrow arrays.

    ``dense`` is ``fixed_size_list<float32>[dim]``, ``sparse`` a struct of ``indices``
    (``list<int64>``) and ``values`` (``list<float32>``), ``colbert`` a list of
    ``fixed_size_list<float32>[dim]``; outputs that are ``None`` are left out. ``colbert_dim``
    gives the ColBERT column its type when there are no rows to read it from.
    """
    pa, _ = _arrow()
    columns: dict[str, Any] = {}
    if encoded.dense is not None:
        dense = np.ascontiguousarray(encoded.dense, dtype=np.float32)
        if dense.ndim != 2:
            raise InvalidInputError("arrow_columns needs the outputs of a list input (2-D dense).")
        columns["dense"] = pa.FixedSizeListArray.from_arrays(pa.array(dense.reshape(-1)), dense.shape[1])
    if encoded.sparse is not None:
        vectors: list[SparseVector] = list(encoded.sparse)  # type: ignore[arg-type]
        offsets = pa.array(_list_offsets([len(v) for v in vectors]))
        indices = np.concatenate([v.indices for v in vectors]) if vectors else np.empty(0, np.int64)
        values = np.concatenate([v.values for v in vectors]) if vectors else np.empty(0, np.float32)
        columns["sparse"] = pa.StructArray.from_arrays(
            [
                pa.ListArray.from_arrays(offsets, pa.array(indices, pa.int64())),
                pa.ListArray.from_arrays(offsets, pa.array(values, pa.float32())),
            ],
            names=["indices", "values"],
        )
    if encoded.colbert is not None:
        matrices: list[np.ndarray] = list(encoded.colbert)
        dim = matrices[0].shape[1] if matrices else colbert_dim
        if not dim:
            raise InvalidInputError("arrow_columns needs colbert_dim for an empty ColBERT output.")
        flat = np.concatenate([m.reshape(-1) for m in matrices]) if matrices else np.empty(0, np.float32)
        tokens = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)
        offsets = pa.array(_list_offsets([len(m) for m in matrices]))
        columns["colbert"] = pa.ListArray.from_arrays(offsets, tokens)
    return columns


def _flat_values(array: Any) -> np.ndarray:
    """The float32 values under a (fixed-size) list array, respecting slicing offsets."""
    return np.asarray(array.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)


def _matrix(vectors: Any) -> np.ndarray:
    """A ``(n, dim)`` float32 matrix from a list or fixed-size-list array of equal-length vectors."""
    pa, _ = _arrow()
    flat = _flat_values(vectors)
    if pa.types.is_fixed_size_list(vectors.type):
        dim = vectors.type.list_size
    else:
        dim = flat.size // len(vectors) if len(vectors) else 0
    return flat.reshape(len(vectors), dim)


def encoded_from_arrow(table: Any, dense: np.ndarray | None = None) -> Encoded:
    """The inverse of :func:`arrow_columns`: an :class:`~bge_core.Encoded` from a table's columns.

    Args:
        table: A pyarrow table with any of the ``dense``, ``sparse``, ``colbert`` columns.
        dense: Dense vectors kept outside the table (``dense_format="npy"``).
    """
    names = table.column_names
    if dense is None and "dense" in names:
        dense = _matrix(table.column("dense").combine_chunks())
    sparse = colbert = None
    if "sparse" in names:
        column = table.column("sparse").combine_chunks()
        indices, values = column.flatten()
        offsets = indices.offsets.to_numpy()
        flat_i = indices.flatten().to_numpy(zero_copy_only=False)
        flat_v = values.flatten().to_numpy(zero_copy_only=False)
        bounds = offsets - offsets[0]
        sparse = [SparseVector(flat_i[a:b], flat_v[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    if "colbert" in names:
        column = table.column("colbert").combine_chunks()
        tokens = _matrix(column.flatten())
        bounds = column.offsets.to_numpy() - column.offsets[0].as_py()
        colbert = [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return Encoded(dense=dense, sparse=sparse, colbert=colbert)


# ---------------------------------------------------------------------------------- input
class _Source:
    """Rows ``(where, id or _MISSING, text)`` of a file or an iterable, in input order."""

    def __init__(self, source: Any, text_field: str, id_field: str | None) -> None:
        self.text_field, self.id_field = text_field, id_field
        if isinstance(source, (str, os.PathLike)):
            self.path: Path | None = Path(source)
            self.kind = self._file_kind(self.path)
            self.items: Any = None
        elif isinstance(source, (bytes, bytearray, Mapping)) or not isinstance(source, Iterable):
            raise InputTypeError(
                f"source must be a path (JSONL or Parquet) or an iterable of texts or records, "
                f"got {type(source).__name__}"
            )
        else:
            self.path, self.kind, self.items = None, "iterable", source

    @staticmethod
    def _file_kind(path: Path) -> str:
        if path.is_dir():
            return "parquet"
        if not path.is_file():
            raise InvalidInputError(f"Input {path} does not exist.")
        suffixes = [s.lower() for s in path.suffixes[-2:]]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] in _JSONL_SUFFIXES:
            return "jsonl"
        if suffixes and suffixes[-1] in _PARQUET_SUFFIXES:
            return "parquet"
        raise ConfigError(
            f"Cannot tell the format of {path}: use .jsonl / .ndjson (optionally .gz), .parquet, "
            f"or a folder of .parquet files."
        )

    def known_rows(self) -> int | None:
        """The row count when it is known without reading the rows."""
        if self.kind == "parquet":
            _, pq = _arrow()
            return sum(pq.ParquetFile(f).metadata.num_rows for f in self._parquet_files())
        if self.kind == "iterable" and isinstance(self.items, Sequence):
            return len(self.items)
        return None

    def count(self) -> int:
        """The row count, reading the input if needed."""
        known = self.known_rows()
        return known if known is not None else sum(1 for _ in self._raw())

    def rows(self) -> Iterator[tuple[Any, str]]:
        """``(id, text)`` pairs, validated: the first row decides whether ids come from the input."""
        from_input: bool | None = None
        id_type: type | None = None
        for position, (where, id_, text) in enumerate(self._raw()):
            if not isinstance(text, str):
                raise InputTypeError(f"{where}: the text is {_type_name(text)}, expected str")
            has_id = id_ is not _MISSING
            if from_input is None:
                from_input = has_id
            elif has_id != from_input:
                state = "has" if has_id else "lacks"
                raise InvalidInputError(
                    f"{where} {state} the id field {self.id_field!r} but the first row does not agree; "
                    f"give every row an id, or none (ids are then row numbers)."
                )
            if not from_input:
                yield position, text
                continue
            if isinstance(id_, numbers.Integral) and not isinstance(id_, bool):
                id_ = int(id_)
            elif not isinstance(id_, str):
                raise InputTypeError(f"{where}: id {id_!r} is {_type_name(id_)}; ids must be integers or strings")
            if id_type is None:
                id_type = type(id_)
            elif type(id_) is not id_type:
                raise InputTypeError(
                    f"{where}: id {id_!r} is a {type(id_).__name__}, earlier ids are {id_type.__name__}"
                )
            yield id_, text

    def _raw(self) -> Iterator[tuple[str, Any, Any]]:
        if self.kind == "jsonl":
            return self._jsonl()
        if self.kind == "parquet":
            return self._parquet()
        return self._iterable()

    def _record(self, record: Any, where: str) -> tuple[str, Any, Any]:
        if not isinstance(record, Mapping):
            raise InputTypeError(
                f"{where}: expected an object with a {self.text_field!r} field, got {_type_name(record)}"
            )
        if self.text_field not in record:
            raise InvalidInputError(f"{where} has no {self.text_field!r} field (fields: {', '.join(map(str, record))})")
        id_ = record.get(self.id_field, _MISSING) if self.id_field else _MISSING
        return where, id_, record[self.text_field]

    def _jsonl(self) -> Iterator[tuple[str, Any, Any]]:
        assert self.path is not None
        for where, record in read_objects(self.path, "source", objects_only=False):
            yield self._record(record, where)

    def _parquet_files(self) -> list[Path]:
        assert self.path is not None
        if not self.path.is_dir():
            return [self.path]
        files = sorted(p for p in self.path.rglob("*.parquet") if not p.name.startswith(("_", ".")))
        if not files:
            raise InvalidInputError(f"{self.path} holds no .parquet files.")
        return files

    def _parquet(self) -> Iterator[tuple[str, Any, Any]]:
        _, pq = _arrow()
        for file in self._parquet_files():
            reader = pq.ParquetFile(file)
            names = reader.schema_arrow.names
            if self.text_field not in names:
                raise InvalidInputError(f"{file} has no column {self.text_field!r} (columns: {', '.join(names)})")
            with_id = bool(self.id_field) and self.id_field in names
            columns = [self.text_field, self.id_field] if with_id else [self.text_field]
            row = 0
            for batch in reader.iter_batches(batch_size=4096, columns=columns):
                texts = batch.column(0).to_pylist()
                ids = batch.column(1).to_pylist() if with_id else [_MISSING] * len(texts)
                for id_, text in zip(ids, texts):
                    yield f"{file} row {row}", id_, text
                    row += 1

    def _iterable(self) -> Iterator[tuple[str, Any, Any]]:
        for i, item in enumerate(self.items):
            where = f"source[{i}]"
            if isinstance(item, Mapping):
                yield self._record(item, where)
            else:
                yield where, _MISSING, item  # a text (anything else is reported by rows())


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _chunks(rows: Iterator[tuple[Any, str]], size: int) -> Iterator[tuple[list[Any], list[str]]]:
    while True:
        chunk = list(islice(rows, size))
        if not chunk:
            return
        ids, texts = zip(*chunk)
        yield list(ids), list(texts)


def _digest(ids: list[Any], texts: list[str]) -> str:
    h = hashlib.sha256()
    for id_, text in zip(ids, texts):
        h.update(json.dumps([id_, text]).encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()


# ---------------------------------------------------------------------------------- output
def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(file)`` to a temporary name, fsync, then rename into place."""
    tmp = path.with_name(f"_{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_atomic(path, lambda f: f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")))


class _DenseNpy:
    """A ``.npy`` file of float32 ``(rows, dim)`` written slice by slice (no mapping kept open)."""

    def __init__(self, path: Path, rows: int, dim: int, create: bool) -> None:
        self.path, self.dim = path, dim
        if create or not path.is_file():
            header = {
                "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                "fortran_order": False,
                "shape": (rows, dim),
            }
            with open(path, "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                f.truncate(f.tell() + rows * dim * 4)  # zeros until written; sparse on most file systems
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            self.offset = f.tell()
        if shape != (rows, dim) or fortran or dtype != np.dtype("<f4"):
            raise ConfigError(f"{path} holds {shape} {dtype} vectors, expected ({rows}, {dim}) float32.")

    def write(self, start: int, vectors: np.ndarray) -> None:
        data = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
        with open(self.path, "r+b") as f:
            f.seek(self.offset + start * self.dim * 4)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _job_settings(
    embedder: Embedder,
    outputs: tuple[str, ...],
    kind: str,
    chunk_size: int,
    dense_format: str,
    text_field: str,
    id_field: str | None,
) -> dict[str, Any]:
    """What must match for an earlier output folder to be continued."""
    return {
        "model": embedder.model_name,
        "precision": str(embedder.dtype).replace("torch.", ""),
        "dimension": embedder.dimension,
        "max_length": embedder.max_length,
        "pooling": embedder.pooling,
        "normalize": embedder.normalize,
        "truncate_dim": embedder.truncate_dim,
        "query_instruction": embedder.query_instruction if kind == "query" else None,
        "query_instruction_format": embedder.query_instruction_format if kind == "query" else None,
        "document_instruction": embedder.document_instruction if kind == "document" else None,
        "kind": kind,
        "outputs": list(outputs),
        "chunk_size": chunk_size,
        "dense_format": dense_format,
        "text_field": text_field,
        "id_field": id_field,
    }


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{folder} holds no {MANIFEST}: not an output of bge-rag embed.") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON ({exc.msg}).") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise InvalidInputError(f"{path} is not a version {FORMAT_VERSION} {FORMAT} manifest.")
    return manifest


def _our_files(folder: Path) -> list[Path]:
    ours = ("part-", "_part-", "_" + MANIFEST, "_" + DENSE_NPY)  # parts, and temporary files
    return [p for p in folder.iterdir() if p.name in (MANIFEST, DENSE_NPY) or p.name.startswith(ours)]


def _committed_parts(folder: Path) -> int:
    count = 0
    while (folder / _PART.format(count)).is_file():
        count += 1
    return count


def _prepare(folder: Path, settings: dict[str, Any], rows: int | None, overwrite: bool) -> int:
    """Create or check the output folder; return how many parts an earlier run committed."""
    if (folder / MANIFEST).is_file():
        manifest = _read_manifest(folder)
        if overwrite:
            for path in _our_files(folder):
                path.unlink()
        else:
            earlier = manifest.get("settings", {})
            changed = [f"{k}: {earlier.get(k)!r} -> {v!r}" for k, v in settings.items() if earlier.get(k) != v]
            if changed:
                raise ConfigError(
                    f"{folder} holds embeddings made with other settings ({'; '.join(changed)}). "
                    f"Use the same settings to continue it, another output folder, or overwrite=True (--overwrite)."
                )
            if settings["dense_format"] == "npy" and manifest.get("rows") != rows:
                raise InvalidInputError(
                    f"The input has {rows} rows, {folder} was started for {manifest.get('rows')}: the input changed."
                )
            for path in folder.glob("_*.tmp"):
                path.unlink()
            return _committed_parts(folder)
    elif folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} exists and is not an output of bge-rag embed; choose a new or empty folder.")
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(
        folder / MANIFEST,
        {"format": FORMAT, "version": FORMAT_VERSION, "complete": False, "rows": rows, "settings": settings},
    )
    return 0


def _check_part(path: Path, meta: dict[str, Any]) -> None:
    _, pq = _arrow()
    stored = (pq.read_metadata(path).metadata or {}).get(_CHUNK_KEY)
    if stored is None or json.loads(stored) != meta:
        first, last = meta["start"], meta["start"] + meta["rows"] - 1
        raise InvalidInputError(
            f"Input rows {first}-{last} differ from those {path.name} was made from: the input changed since "
            f"the earlier run. Restore it, or start again with overwrite=True (--overwrite)."
        )


# ---------------------------------------------------------------------------------- job
def embed_corpus(
    source: str | os.PathLike | Iterable[Any],
    output: str | os.PathLike,
    embedder: Embedder | str | os.PathLike,
    *,
    outputs: str | Sequence[str] = ("dense",),
    kind: str = "document",
    text_field: str = "text",
    id_field: str | None = "id",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dense_format: str = "parquet",
    overwrite: bool = False,
    show_progress: bool | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> EmbedSummary:
    """Encode a corpus chunk by chunk into a folder of Parquet parts, in bounded memory.

    Running it again on an interrupted output continues where it stopped (see the module
    docs); on a complete output it checks the input and writes nothing.

    Args:
        source: A ``.jsonl`` / ``.ndjson`` file (``.gz`` too) of objects, a ``.parquet`` file or a
            folder of them, or an iterable of strings or of mappings.
        output: The output folder: new, empty, or an earlier output of the same job.
        embedder: An :class:`~bge_core.Embedder`, or a model name / folder to load with defaults.
        outputs: Any of ``"dense"``, ``"sparse"``, ``"colbert"`` (a list or ``"dense,sparse"``).
        kind: ``"document"`` (default) or ``"query"`` (applies the query instruction).
        text_field: The field or column holding the text.
        id_field: The field or column holding ids (int or str), kept in the ``id`` column. When
            the first row has no such field (or ``None``), ids are row numbers.
        chunk_size: Texts per encode call and per Parquet part. Memory holds one chunk of outputs:
            mind ColBERT (tokens x dim floats per text) on long texts.
        dense_format: ``"parquet"`` (a ``dense`` column) or ``"npy"`` (``OUTPUT/_dense.npy``,
            float32 ``(rows, dim)``; the row count must be known, so a JSONL file is read twice).
        overwrite: Replace an earlier output in ``output`` (only the files this function writes).
        show_progress: A progress bar over rows; ``None`` shows it on a terminal.
        on_chunk: Called as ``on_chunk(part_index, rows_done)`` after each part is committed.

    Returns:
        An :class:`EmbedSummary`.

    Raises:
        ConfigError: invalid settings, or ``output`` holds something else.
        InvalidInputError / InputTypeError: an unreadable row (the message names file and line),
            or an input that changed since the interrupted run.
        MissingExtraError: pyarrow is not installed.
    """
    started = time.perf_counter()
    _arrow()  # fail before any work when pyarrow is missing
    from tqdm.auto import tqdm

    wanted = _check_job(outputs, kind, chunk_size, dense_format, text_field)
    embedder = _as_embedder(embedder, wanted)
    src = _Source(source, text_field, id_field)
    folder = Path(output)
    settings = _job_settings(embedder, wanted, kind, chunk_size, dense_format, text_field, id_field)
    rows_total = src.count() if dense_format == "npy" else src.known_rows()
    committed = _prepare(folder, settings, rows_total, overwrite)
    if committed:
        logger.info("%s: %d parts already written; continuing after them", folder, committed)
    npy = None
    if dense_format == "npy":
        npy = _DenseNpy(folder / DENSE_NPY, rows_total or 0, embedder.dimension, create=committed == 0)
    flags = {name: name in wanted for name in OUTPUTS}

    start = encoded_rows = skipped = parts = 0
    with tqdm(
        total=rows_total,
        disable=None if show_progress is None else not show_progress,
        unit="text",
        desc="Embedding",
        dynamic_ncols=True,
    ) as progress:
        for index, (ids, texts) in enumerate(_chunks(src.rows(), chunk_size)):
            meta = {"index": index, "start": start, "rows": len(texts), "sha256": _digest(ids, texts)}
            path = folder / _PART.format(index)
            if index < committed:
                _check_part(path, meta)
                skipped += len(texts)
            else:
                encoded = embedder.encode(texts, kind=kind, show_progress=False, **flags)  # type: ignore[arg-type]
                if npy is not None:
                    npy.write(start, encoded.dense)  # type: ignore[arg-type]
                    encoded = Encoded(sparse=encoded.sparse, colbert=encoded.colbert)
                _write_part(path, ids, encoded, meta)
                encoded_rows += len(texts)
                if on_chunk is not None:
                    on_chunk(index, start + len(texts))
            start += len(texts)
            parts = index + 1
            progress.update(len(texts))
    if parts < committed:
        raise InvalidInputError(
            f"The input has {start} rows, fewer than {folder} already holds: the input changed since the earlier run."
        )
    if parts == 0:  # an empty input still gets one (empty) part, so that readers find the columns
        empty = embedder.encode([], **flags)  # type: ignore[arg-type]
        if npy is not None:
            empty = Encoded(sparse=empty.sparse, colbert=empty.colbert)
        meta = {"index": 0, "start": 0, "rows": 0, "sha256": _digest([], [])}
        colbert_dim = colbert_dimension(embedder) if flags["colbert"] else None
        _write_part(folder / _PART.format(0), [], empty, meta, colbert_dim)
        parts = 1
    _finish(folder, settings, start, parts, npy is not None)
    return EmbedSummary(folder, start, encoded_rows, skipped, parts, time.perf_counter() - started)


def _check_job(
    outputs: str | Sequence[str], kind: str, chunk_size: int, dense_format: str, text_field: str
) -> tuple[str, ...]:
    wanted = check_outputs(outputs)
    if kind not in ("document", "query"):
        raise ConfigError(f"Invalid kind {kind!r}. Valid kinds are: document, query.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if dense_format not in DENSE_FORMATS:
        raise ConfigError(f"Invalid dense_format {dense_format!r}. Valid formats are: {', '.join(DENSE_FORMATS)}.")
    if dense_format == "npy" and "dense" not in wanted:
        raise ConfigError('dense_format="npy" needs "dense" among the outputs.')
    if not isinstance(text_field, str) or not text_field:
        raise ConfigError(f"text_field must be a non-empty string, got {text_field!r}")
    return wanted


def _as_embedder(embedder: Any, wanted: tuple[str, ...]) -> Embedder:
    """The caller's Embedder (or one loaded from a name), its M3 heads loaded if needed."""
    from bge_core.embedder import Embedder

    if isinstance(embedder, (str, os.PathLike)):
        embedder = Embedder(embedder if isinstance(embedder, str) else Path(embedder))
    elif not isinstance(embedder, Embedder):
        raise InputTypeError(f"embedder must be an Embedder or a model name, got {type(embedder).__name__}")
    embedder.require_heads(sparse="sparse" in wanted, colbert="colbert" in wanted)
    return embedder


def _finish(folder: Path, settings: dict[str, Any], rows: int, parts: int, npy: bool) -> None:
    """Mark the output complete, with its row count and column types."""
    _, pq = _arrow()
    schema = pq.read_schema(folder / _PART.format(parts - 1))
    _write_json(
        folder / MANIFEST,
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "complete": True,
            "rows": rows,
            "parts": parts,
            "settings": settings,
            "dense_npy": DENSE_NPY if npy else None,
            "columns": {field.name: str(field.type) for field in schema},
        },
    )


def colbert_dimension(embedder: Embedder) -> int | None:
    """The length of the embedder's ColBERT vectors, or ``None`` without a ColBERT head."""
    if not embedder.has_head("colbert"):
        return None
    return int(embedder.encode([""], dense=False, colbert=True, show_progress=False).colbert[0].shape[1])  # type: ignore[index]


def _write_part(
    path: Path, ids: list[Any], encoded: Encoded, meta: dict[str, Any], colbert_dim: int | None = None
) -> None:
    """Write one chunk as one Parquet file (one row group), atomically."""
    pa, pq = _arrow()
    id_type = pa.string() if ids and isinstance(ids[0], str) else pa.int64()
    columns = {"id": pa.array(ids, id_type), **arrow_columns(encoded, colbert_dim)}
    table = pa.table(columns).replace_schema_metadata({_CHUNK_KEY: json.dumps(meta, sort_keys=True).encode()})
    _write_atomic(path, lambda f: pq.write_table(table, f, row_group_size=max(len(ids), 1)))


# ---------------------------------------------------------------------------------- reading
def iter_embeddings(output: str | os.PathLike) -> Iterator[tuple[list[Any], Encoded]]:
    """Read a complete output back, one part at a time: ``(ids, Encoded)`` in input order.

    Raises:
        InvalidInputError: ``output`` is not a complete output of :func:`embed_corpus`.
    """
    _, pq = _arrow()
    folder = Path(output)
    manifest = _read_manifest(folder)
    if not manifest.get("complete"):
        raise InvalidInputError(f"{folder} is incomplete: run the same embed job again to finish it.")
    dense = np.load(folder / DENSE_NPY, mmap_mode="r") if manifest.get("dense_npy") else None
    start = 0
    for index in range(manifest["parts"]):
        table = pq.read_table(folder / _PART.format(index))
        rows = table.num_rows
        part_dense = None if dense is None else np.array(dense[start : start + rows])
        yield table.column("id").to_pylist(), encoded_from_arrow(table, part_dense)
        start += rows


def read_embeddings(output: str | os.PathLike) -> tuple[list[Any], Encoded]:
    """Read a complete output into memory: ids and one :class:`~bge_core.Encoded` in input order."""
    ids: list[Any] = []
    dense: list[np.ndarray] = []
    sparse: list[SparseVector] | None = None
    colbert: list[np.ndarray] | None = None
    for part_ids, part in iter_embeddings(output):
        ids.extend(part_ids)
        if part.dense is not None:
            dense.append(part.dense)
        if part.sparse is not None:
            sparse = sparse if sparse is not None else []
            sparse.extend(part.sparse)  # type: ignore[arg-type]
        if part.colbert is not None:
            colbert = colbert if colbert is not None else []
            colbert.extend(part.colbert)
    return ids, Encoded(dense=np.concatenate(dense) if dense else None, sparse=sparse, colbert=colbert)


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DENSE_FORMATS",
    "OUTPUTS",
    "EmbedSummary",
    "arrow_columns",
    "check_outputs",
    "colbert_dimension",
    "embed_corpus",
    "encoded_from_arrow",
    "iter_embeddings",
    "read_embeddings",
]

"""What gets evaluated: BGE retrieval modes, a reranking stage, and an application's own retriever.

Every retriever answers ``retrieve(dataset, queries, top_k)`` with ``{qid: {docid: score}}``
(higher is better), the shape FlagEmbedding's evaluation and trec_eval use:

- :class:`EmbedderRetriever`: exact search over the whole corpus with a :class:`bge_core.Embedder`
  in one of :data:`MODES` (dense inner product as FlagEmbedding's flat faiss index; BGE-M3
  lexical, ColBERT, and their weighted sums with FlagEmbedding's definitions from
  :mod:`bge_core.scoring`). Corpus outputs can be cached on disk (:class:`CorpusCache`).
- :class:`Reranking`: a :class:`bge_core.Reranker` rescoring each query's top candidates, as
  FlagEmbedding's ``EvalReranker``.
- :class:`AppRetriever`: a LangChain retriever (``invoke``) or a LlamaIndex retriever
  (``retrieve``), its documents mapped to corpus ids through a metadata field; imported from
  neither framework (duck-typed), so evaluating needs only the app's own packages.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import sys
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bge_core.errors import ConfigError, InputTypeError, InvalidInputError
from bge_core.scoring import check_weights, colbert_scores, hybrid_scores, lexical_scores
from bge_core.types import Encoded
from bge_rag.flag_cli import with_instruction

from .data import RetrievalDataset
from .search import dense_search, ranked, search

if TYPE_CHECKING:
    from bge_core.embedder import Embedder
    from bge_core.rerank import Reranker

logger = logging.getLogger(__name__)

Results = dict[str, dict[str, float]]

#: Retrieval modes of an :class:`EmbedderRetriever` and the outputs each one needs.
MODES: dict[str, tuple[str, ...]] = {
    "dense": ("dense",),
    "sparse": ("sparse",),
    "colbert": ("colbert",),
    "dense+sparse": ("dense", "sparse"),
    "hybrid": ("dense", "sparse", "colbert"),
}
#: FlagEmbedding's weights of BGE-M3's modes ``[dense, sparse, colbert]`` (its README and MLDR runs).
M3_WEIGHTS = (0.4, 0.2, 0.4)
#: Queries scored against the whole corpus per block in the sparse and ColBERT modes.
_BLOCK_QUERIES = 64


class Retriever(Protocol):
    """Anything :func:`~bge_rag.evaluation.evaluate` can measure."""

    name: str

    def retrieve(self, dataset: RetrievalDataset, queries: Mapping[str, str], top_k: int) -> Results:
        """Top ``top_k`` documents of each query: ``{qid: {docid: score}}``."""
        ...


def model_label(embedder: Any) -> str:
    """The short name results use for an engine: its folder or hub name's last part, as FlagEmbedding."""
    name = str(getattr(embedder, "model_name", embedder)).rstrip("/\\")
    return os.path.basename(name) or name


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name) or "model"


class CorpusCache:
    """Corpus outputs, encoded once per (engine, corpus, outputs), optionally kept on disk.

    On disk, each entry is a :func:`bge_rag.corpus.embed_corpus` output folder (Parquet parts,
    resumable after an interruption) under ``root/<model>/<key>``, where the key hashes the
    engine's settings, its model files (names, sizes, modification times), the outputs and the
    corpus content: a changed corpus, model or setting gets a new entry, never stale vectors.

    Args:
        root: The cache folder; ``None`` keeps encodings in memory for this process only.
        overwrite: Encode again even when a complete entry exists.
        show_progress: Progress bars while encoding (``None``: on a terminal).
        chunk_size: Documents per encode call and per Parquet part of a new entry: the most work
            an interruption loses (``None``: :data:`bge_rag.corpus.DEFAULT_CHUNK_SIZE`). An entry
            started with another chunk size is continued and reused with its own.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        overwrite: bool = False,
        show_progress: bool | None = None,
        chunk_size: int | None = None,
    ):
        from bge_rag.corpus.encoder import DEFAULT_CHUNK_SIZE

        chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.root = None if root is None else Path(root)
        self.overwrite = overwrite
        self.show_progress = show_progress
        self.chunk_size = chunk_size
        # Per engine object, held weakly: an id() could be reused by another engine once this one is freed.
        self._memo: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, tuple[str, ...]], Encoded]] = (
            weakref.WeakKeyDictionary()
        )

    def key(self, embedder: Embedder, dataset: RetrievalDataset, outputs: tuple[str, ...]) -> str:
        """The hex key of an entry: settings, model files, outputs and corpus content."""
        settings = {
            "model": str(embedder.model_name),
            "model_files": self._model_files(embedder),
            "dtype": str(embedder.dtype),
            "max_length": embedder.max_length,
            "pooling": embedder.pooling,
            "normalize": embedder.normalize,
            "truncate_dim": embedder.truncate_dim,
            "document_instruction": embedder.document_instruction,
            "outputs": list(outputs),
            "corpus": dataset.corpus_digest(),
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]

    @staticmethod
    def _model_files(embedder: Embedder) -> list[tuple[str, int, int]]:
        """Name, size and modification time of the model's files: its folder's, and its modules'.

        Retrained weights saved over the same folder get a new key; a hub snapshot's folder names
        its commit. Other subfolders (checkpoints, ONNX exports) are not the model that runs.
        """
        folder = getattr(embedder, "folder", None)
        if folder is None:
            return []
        folder = Path(folder)
        folders = [folder]
        if (folder / "modules.json").is_file():  # sentence-transformers modules (Dense, ...)
            modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
            folders += [folder / str(m["path"]) for m in modules if isinstance(m, dict) and m.get("path")]
        files = []
        for path in sorted({p for f in folders if f.is_dir() for p in f.iterdir()}):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                files.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
        return files

    def corpus(self, embedder: Embedder, dataset: RetrievalDataset, outputs: tuple[str, ...]) -> Encoded:
        """The corpus outputs of ``dataset`` in corpus order."""
        memo = self._memo.setdefault(embedder, {})
        memo_key = (dataset.corpus_digest(), "document", outputs)
        if memo_key in memo:
            return memo[memo_key]
        texts = [doc.full_text for doc in dataset.corpus.values()]
        if self.root is None:
            encoded = _encode(embedder, texts, "document", outputs, self.show_progress)
        else:
            from bge_rag.corpus import embed_corpus, read_embeddings

            folder = self.root / _safe(model_label(embedder)) / self.key(embedder, dataset, outputs)
            rows = ({"id": i, "text": t} for i, t in enumerate(texts))
            embed_corpus(
                rows,
                folder,
                embedder,
                outputs=outputs,
                chunk_size=self._entry_chunk_size(folder),
                overwrite=self.overwrite,
                show_progress=self.show_progress,
            )
            ids, encoded = read_embeddings(folder)
            if ids != list(range(len(texts))):
                raise InvalidInputError(f"The cached corpus in {folder} does not match the dataset; delete the folder.")
        memo[memo_key] = encoded
        return encoded

    def _entry_chunk_size(self, folder: Path) -> int:
        """An existing entry's own chunk size (to continue or check it), else this cache's."""
        from bge_rag.corpus.encoder import MANIFEST

        manifest = folder / MANIFEST
        if self.overwrite or not manifest.is_file():
            return self.chunk_size
        try:
            size = json.loads(manifest.read_text(encoding="utf-8"))["settings"]["chunk_size"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return self.chunk_size  # embed_corpus reports what is wrong with the folder
        return size if isinstance(size, int) and size > 0 else self.chunk_size

    def queries(self, embedder: Embedder, texts: list[str], outputs: tuple[str, ...]) -> Encoded:
        """Query outputs (instruction applied), memoized for this process."""
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
        memo = self._memo.setdefault(embedder, {})
        memo_key = (digest, "query", outputs)
        if memo_key not in memo:
            memo[memo_key] = _encode(embedder, texts, "query", outputs, self.show_progress)
        return memo[memo_key]


def _encode(
    embedder: Embedder, texts: list[str], kind: str, outputs: tuple[str, ...], progress: bool | None
) -> Encoded:
    return embedder.encode(
        texts,
        kind=kind,  # type: ignore[arg-type]
        dense="dense" in outputs,
        sparse="sparse" in outputs,
        colbert="colbert" in outputs,
        show_progress=progress,
    )


@dataclass
class EmbedderRetriever:
    """Exact retrieval over the whole corpus with a BGE embedder.

    Args:
        embedder: Encodes the documents (and the queries unless ``query_embedder`` is given).
        mode: One of :data:`MODES`: ``"dense"``, ``"sparse"``, ``"colbert"``, ``"dense+sparse"``
            or ``"hybrid"`` (all three). The last three need a BGE-M3 model with its heads.
        weights: ``[dense, sparse, colbert]`` weights of the combined modes (default
            FlagEmbedding's :data:`M3_WEIGHTS`); the modes not combined are left out.
        query_embedder: Encodes the queries, e.g. the same model with another ``max_length``
            (FlagEmbedding's ``--embedder_query_max_length``).
        cache: Where corpus outputs are kept (default: in memory).
        name: The name in results (default: the model's, with ``-MODE`` for modes other than dense).
        outputs: The outputs to encode; a superset lets several modes share one encoding.
    """

    embedder: Embedder
    mode: str = "dense"
    weights: Sequence[float] = M3_WEIGHTS
    query_embedder: Embedder | None = None
    cache: CorpusCache | None = None
    name: str = ""
    outputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"Invalid retrieval mode {self.mode!r}. Valid modes are: {', '.join(MODES)}.")
        self.weights = check_weights(self.weights)
        needed = MODES[self.mode]
        self.outputs = tuple(o for o in ("dense", "sparse", "colbert") if o in needed or o in self.outputs)
        if not self.name:
            label = model_label(self.embedder)
            self.name = label if self.mode == "dense" else f"{label}-{self.mode}"
        if self.cache is None:
            self.cache = CorpusCache()
        if "sparse" in needed or "colbert" in needed:
            self.embedder.require_heads(sparse="sparse" in needed, colbert="colbert" in needed)

    def retrieve(self, dataset: RetrievalDataset, queries: Mapping[str, str], top_k: int) -> Results:
        """Top ``top_k`` documents of each query by this mode's score."""
        assert self.cache is not None
        doc_ids = list(dataset.corpus)
        qids = list(queries)
        docs = self.cache.corpus(self.embedder, dataset, self.outputs)
        q = self.cache.queries(self.query_embedder or self.embedder, [queries[i] for i in qids], self.outputs)
        if self.mode == "dense":
            values, indices = dense_search(q.dense, docs.dense, top_k)  # type: ignore[arg-type]
        else:
            values, indices = search(len(qids), len(doc_ids), self._scorer(q, docs), top_k, block_rows=_BLOCK_QUERIES)
        return ranked(qids, doc_ids, values, indices)

    def _scorer(self, q: Encoded, d: Encoded) -> Callable[[int, int], np.ndarray]:
        needed = MODES[self.mode]
        w = self.weights

        def block(a: int, b: int) -> np.ndarray:
            dense = np.atleast_2d(q.dense[a:b] @ d.dense.T) if "dense" in needed else None  # type: ignore[index,union-attr]
            sparse = np.atleast_2d(lexical_scores(q.sparse[a:b], d.sparse)) if "sparse" in needed else None  # type: ignore[arg-type,index]
            colbert = np.atleast_2d(colbert_scores(q.colbert[a:b], d.colbert)) if "colbert" in needed else None  # type: ignore[arg-type,index]
            if len(needed) == 1:
                return next(s for s in (dense, sparse, colbert) if s is not None)
            weights = tuple(w[i] if name in needed else 0.0 for i, name in enumerate(("dense", "sparse", "colbert")))
            return hybrid_scores(dense=dense, sparse=sparse, colbert=colbert, weights=weights)

        return block


@dataclass
class Reranking:
    """A reranker rescoring each query's best ``top_k`` candidates (FlagEmbedding's ``EvalReranker``).

    The candidates are cut to the ``top_k`` best first-stage scores, each (query, document) pair
    is scored by the reranker, and the result holds those candidates with the reranker's scores.

    Args:
        reranker: A :class:`bge_core.Reranker`.
        top_k: Candidates reranked per query (FlagEmbedding's ``--rerank_top_k``, default 100).
        name: The name in results (default: the model's).
        show_progress: A progress bar over pairs (``None``: on a terminal).
        query_instruction: Put before each query, as FlagEmbedding's ``query_instruction_for_rerank``
            (``None``: none), through ``query_instruction_format`` (``format(instruction, query)``).
        query_instruction_format: The query instruction's template.
        passage_instruction: Put before each passage (``passage_instruction_for_rerank``).
        passage_instruction_format: The passage instruction's template.
    """

    reranker: Reranker
    top_k: int = 100
    name: str = ""
    show_progress: bool | None = None
    query_instruction: str | None = None
    query_instruction_format: str = "{}{}"
    passage_instruction: str | None = None
    passage_instruction_format: str = "{}{}"

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"rerank top_k must be a positive integer, got {self.top_k!r}")
        self.name = self.name or model_label(self.reranker)
        self._scores: dict[tuple[str, str], float] = {}

    def rerank(
        self,
        dataset: RetrievalDataset,
        queries: Mapping[str, str],
        candidates: Mapping[str, Mapping[str, float]],
        *,
        ignore_identical_ids: bool = False,
    ) -> Results:
        """The reranker's scores of each query's best candidates."""
        keys: list[tuple[str, str, tuple[str, str]]] = []
        out: Results = {}
        for qid, found in candidates.items():
            out[qid] = {}
            best = sorted(found.items(), key=lambda item: item[1], reverse=True)[: self.top_k]
            for docid, _ in best:
                if ignore_identical_ids and docid == qid:
                    continue
                pair = (
                    with_instruction(self.query_instruction, self.query_instruction_format, queries[qid]),
                    with_instruction(
                        self.passage_instruction, self.passage_instruction_format, dataset.corpus[docid].full_text
                    ),
                )
                keys.append((qid, docid, pair))
        # Each distinct pair is scored once per Reranking: several retrievers compared with one
        # reranker mostly hand it the same candidates.
        todo = list(dict.fromkeys(pair for _, _, pair in keys if pair not in self._scores))
        if todo:
            self._scores.update(zip(todo, self.reranker.score(todo, show_progress=self.show_progress)))
        for qid, docid, pair in keys:
            out[qid][docid] = float(self._scores[pair])
        return out


@dataclass
class AppRetriever:
    """An application's own retriever, measured on the same queries as BGE.

    A LangChain ``BaseRetriever`` (anything with ``invoke(query) -> list[Document]``) or a
    LlamaIndex retriever (``retrieve(query) -> list[NodeWithScore]``). Each returned document is
    mapped to a corpus id through ``metadata[id_field]``. The metrics use the retriever's order
    only (its first document ranks first), whatever scores or distances it may attach.

    The retriever returns as many documents as it is configured to (``search_kwargs={"k": ...}``,
    ``similarity_top_k=...``); ``top_k`` only cuts longer lists. Several chunks of one document
    count once, at the best rank. A returned document without the id field, or with an id not in
    the corpus, is an error (it would silently count as a miss).

    Args:
        retriever: The LangChain or LlamaIndex retriever.
        id_field: The metadata field holding the corpus id.
        name: The name in results (default: the retriever's class name).
    """

    retriever: Any
    id_field: str = "id"
    name: str = ""

    def __post_init__(self) -> None:
        if not (
            callable(getattr(self.retriever, "invoke", None)) or callable(getattr(self.retriever, "retrieve", None))
        ):
            hint = (
                f" Pass its retriever: {type(self.retriever).__name__}.as_retriever()."
                if callable(getattr(self.retriever, "as_retriever", None))
                else ""
            )
            raise InputTypeError(
                f"{type(self.retriever).__name__} is not a retriever: expected a LangChain retriever (invoke), "
                f"a LlamaIndex retriever (retrieve), an Embedder, or a bge_rag.evaluation retriever.{hint}"
            )
        self.name = self.name or type(self.retriever).__name__

    def _metadata(self, query: str) -> list[Mapping[str, Any]]:
        if callable(getattr(self.retriever, "invoke", None)):
            found = self.retriever.invoke(query)
        else:
            found = self.retriever.retrieve(query)
        out = []
        for item in found:
            node = getattr(item, "node", None)  # LlamaIndex NodeWithScore
            metadata = getattr(node if node is not None else item, "metadata", None)
            out.append(metadata if isinstance(metadata, Mapping) else {})
        return out

    def retrieve(self, dataset: RetrievalDataset, queries: Mapping[str, str], top_k: int) -> Results:
        """Ask the retriever each query; map its documents to corpus ids, scored by rank."""
        out: Results = {}
        for qid, text in queries.items():
            ranked: list[str] = []
            for metadata in self._metadata(text):
                if self.id_field not in metadata:
                    raise InvalidInputError(
                        f"{self.name} returned a document without metadata[{self.id_field!r}] for query {qid!r}; "
                        f"store the corpus id in that field (metadata keys: {sorted(metadata)})."
                    )
                docid = str(metadata[self.id_field])
                if docid not in dataset.corpus:
                    raise InvalidInputError(
                        f"{self.name} returned document {docid!r} for query {qid!r}: not in the corpus."
                    )
                if docid not in ranked:
                    ranked.append(docid)
            ranked = ranked[:top_k]
            # Strictly decreasing scores: trec_eval orders by score (ties by document id).
            out[qid] = {docid: float(len(ranked) - i) for i, docid in enumerate(ranked)}
        return out


def _implements_protocol(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`Retriever` of its own: ``retrieve(dataset, queries, top_k)`` and a ``name``.

    Told apart from a LlamaIndex retriever, whose ``retrieve`` takes one query.
    """
    method = getattr(obj, "retrieve", None)
    if not callable(method) or not isinstance(getattr(obj, "name", None), str):
        return False
    try:
        inspect.signature(method).bind(None, {}, 1)
    except (TypeError, ValueError):
        return False
    return True


def as_retriever(obj: Any, *, id_field: str = "id", name: str = "") -> Retriever:
    """``obj`` as a :class:`Retriever`: a bge_rag retriever as is, an Embedder (dense), or an app's."""
    if isinstance(obj, (EmbedderRetriever, AppRetriever)) or _implements_protocol(obj):
        return obj
    engine = sys.modules.get("bge_core.embedder")  # not imported: obj cannot be an Embedder
    if engine is not None and isinstance(obj, engine.Embedder):
        return EmbedderRetriever(obj, name=name)
    return AppRetriever(obj, id_field=id_field, name=name)


__all__ = [
    "M3_WEIGHTS",
    "MODES",
    "AppRetriever",
    "CorpusCache",
    "EmbedderRetriever",
    "Reranking",
    "Retriever",
    "as_retriever",
    "model_label",
]

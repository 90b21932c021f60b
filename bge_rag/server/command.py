"""``bge-rag serve``: start the HTTP server (needs ``pip install 'bge-rag[server]'``).

This module imports no web framework; :func:`run_serve` imports FastAPI and uvicorn when the
command runs. ``bge_rag.cli`` adds the subcommand with :func:`register`; ``python -m
bge_rag.server serve ...`` runs the same command.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bge_core.errors import BGEError, ConfigError, MissingExtraError
from bge_core.storage import PRECISIONS

from .naming import check_names, default_name
from .settings import API_KEY_ENV, DEFAULT_CALIBRATION_TEXTS, ServerSettings

_DEFAULTS = ServerSettings()
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to an ``argparse`` subparsers object and return it."""
    p = subparsers.add_parser(
        "serve",
        help="HTTP server: OpenAI-compatible /v1/embeddings, /v1/rerank, BGE-M3 outputs (needs bge-rag[server])",
        description="Serve BGE embedding models and/or rerankers over HTTP (repeat --model / --reranker for "
        "several; requests choose one by their 'model' field). "
        "Clients of OpenAI's embeddings API and of Cohere/Jina/TEI rerank APIs work with only a base-URL change.",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="SOURCE[=NAME]",
        help="embedding model: hub id or local folder, optionally =NAME, the name clients send in 'model' "
        "(default: the hub id or folder name). Repeatable: several models, the first the default",
    )
    p.add_argument(
        "--reranker",
        action="append",
        metavar="SOURCE[=NAME]",
        help="reranker: hub id or local folder, optionally =NAME as for --model. Repeatable",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, else none)")
    p.add_argument(
        "--served-model-name",
        help="name of the one embedding model, reported to clients (as --model SOURCE=NAME; default: from --model)",
    )
    p.add_argument(
        "--reranker-name",
        help="name of the one reranker, reported to clients (same as --reranker SOURCE=NAME; default: from --reranker)",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: first available)")
    p.add_argument("--precision", default="auto", help="auto, fp32, fp16, bf16 (default auto)")
    p.add_argument(
        "--max-length",
        type=int,
        help="tokens per text for the embedding model (default: 512, or a sentence-transformers folder's "
        "max_seq_length, capped by the model's limit)",
    )
    p.add_argument(
        "--reranker-max-length",
        type=int,
        help="tokens per (query, document) pair, for an LLM reranker per document (default: as for --max-length)",
    )
    p.add_argument(
        "--rerank-scores",
        choices=["sigmoid", "raw"],
        default=_DEFAULTS.rerank_scores,
        help="sigmoid (0..1, as Cohere/Jina/TEI; default) or raw logits (FlagReranker's default)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="allow browser calls from this origin (repeatable; '*' for any). Default: CORS off",
    )
    p.add_argument(
        "--max-inputs",
        type=int,
        default=_DEFAULTS.max_inputs,
        help=f"texts per embeddings request / documents per rerank request (default {_DEFAULTS.max_inputs})",
    )
    p.add_argument(
        "--max-input-chars",
        type=int,
        default=_DEFAULTS.max_input_chars,
        help=f"characters per text (default {_DEFAULTS.max_input_chars})",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=_DEFAULTS.max_body_bytes,
        help=f"bytes per request body (default {_DEFAULTS.max_body_bytes})",
    )
    p.add_argument(
        "--max-batch-items",
        type=int,
        default=_DEFAULTS.max_batch_items,
        help=f"texts of concurrent requests coalesced into one model call (default {_DEFAULTS.max_batch_items})",
    )
    p.add_argument(
        "--max-queue-items",
        type=int,
        default=_DEFAULTS.max_queue_items,
        help=f"texts waiting for the model before requests get 429 (default {_DEFAULTS.max_queue_items})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=_DEFAULTS.request_timeout,
        help="seconds a request may wait for the model before its work starts; then 503 with Retry-After "
        f"(default {_DEFAULTS.request_timeout:g}; the work's own time is limited by --work-timeout)",
    )
    p.add_argument(
        "--work-timeout",
        type=float,
        default=_DEFAULTS.work_timeout,
        help="seconds a request's work may take once started; then 503 saying what was done. A request "
        "whose size alone needs longer (at this server's measured speed) is refused up front with 413 "
        f"(default {_DEFAULTS.work_timeout:g})",
    )
    p.add_argument(
        "--max-piece-items",
        type=int,
        default=_DEFAULTS.max_piece_items,
        help="larger requests are split into pieces of this many texts that take turns with other "
        f"requests on the model (default {_DEFAULTS.max_piece_items})",
    )
    p.add_argument(
        "--max-colbert-vectors",
        type=int,
        default=_DEFAULTS.max_colbert_vectors,
        help="ColBERT vectors one /v1/encode request may get back, checked before the model runs "
        f"(default {_DEFAULTS.max_colbert_vectors})",
    )
    p.add_argument(
        "--max-tokenize-ids",
        type=int,
        default=_DEFAULTS.max_tokenize_ids,
        help=f"token ids one /tokenize answer may carry (default {_DEFAULTS.max_tokenize_ids})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="open connections at most; beyond, new requests get 503 (default: no limit)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=_DEFAULTS.header_timeout,
        help=f"seconds a client may take to send request headers (default {_DEFAULTS.header_timeout:g})",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=_DEFAULTS.body_timeout,
        help=f"seconds a client may take to send a request body (default {_DEFAULTS.body_timeout:g})",
    )
    p.add_argument(
        "--no-cut-long-texts",
        dest="cut_long_texts",
        action="store_false",
        help="give the model every text whole, instead of cutting a text far longer than max_length "
        "tokens to a prefix with the same tokens before tokenizing it",
    )
    p.add_argument(
        "--embedding-dtype",
        choices=list(PRECISIONS),
        default=_DEFAULTS.embedding_dtype,
        help="what Infinity's POST /embeddings returns, as Infinity's flag: float32 (default), int8, uint8, "
        "binary or ubinary (sentence-transformers' quantize_embeddings); other routes are unchanged",
    )
    p.add_argument(
        "--quantization-calibration",
        metavar="FILE",
        help="UTF-8 file, one text per line, encoded as documents once (on the first int8/uint8 request) to fix "
        f"the model's int8/uint8 ranges (default: {DEFAULT_CALIBRATION_TEXTS} paragraphs of the Python language "
        "reference)",
    )
    p.add_argument("--trust-remote-code", action="store_true", help="allow the models' own code")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    p.set_defaults(func=run_serve)
    return p


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The :class:`ServerSettings` the command-line arguments ask for."""
    return ServerSettings(
        model_name=args.served_model_name,
        reranker_name=args.reranker_name,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        cors_origins=tuple(args.cors_origin),
        max_inputs=args.max_inputs,
        max_input_chars=args.max_input_chars,
        max_body_bytes=args.max_body_bytes,
        max_batch_items=args.max_batch_items,
        max_queue_items=args.max_queue_items,
        request_timeout=args.timeout,
        work_timeout=args.work_timeout,
        rerank_scores=args.rerank_scores,
        max_piece_items=args.max_piece_items,
        max_colbert_vectors=args.max_colbert_vectors,
        max_tokenize_ids=args.max_tokenize_ids,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        cut_long_texts=args.cut_long_texts,
        embedding_dtype=args.embedding_dtype,
        quantization_calibration=args.quantization_calibration,
    )


def split_source(value: str) -> tuple[str, str | None]:
    """``SOURCE[=NAME]`` as ``(source, name or None)``: the name is what follows the last ``=``.

    An existing path is the source as it is (a folder ``./runs/lr=1e-5`` needs no name); a folder
    whose path holds ``=`` can also be given a name after it (``./runs/lr=1e-5=mine``).

    Raises:
        ConfigError: an empty source or an empty name (``SOURCE=``).
    """
    source, sep, name = value.rpartition("=")
    if not sep or Path(value).exists():
        return value, None
    if not source or not name:
        raise ConfigError(f"{value!r}: give SOURCE or SOURCE=NAME, with neither part empty.")
    return source, name


def model_sources(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The ``(source, served name)`` of each ``--model`` and each ``--reranker``, in order.

    ``--served-model-name`` / ``--reranker-name`` name the one model of their kind.

    Raises:
        ConfigError: a name flag with several models of its kind or beside ``SOURCE=NAME``, or
            served names that requests could not tell apart (:func:`.service.check_names`).
    """
    kinds = []
    for values, name_flag, flag, name in (
        (args.model, "--served-model-name", "--model", args.served_model_name),
        (args.reranker, "--reranker-name", "--reranker", args.reranker_name),
    ):
        specs = [split_source(value) for value in values or []]
        if name is not None:
            if len(specs) != 1 or specs[0][1] is not None:
                raise ConfigError(
                    f"{name_flag} names the one model of a single {flag}; with several (or with "
                    f"{flag} SOURCE=NAME) name each as {flag} SOURCE=NAME."
                )
            specs = [(specs[0][0], name)]
        kinds.append([(source, given or default_name(source)) for source, given in specs])
    check_names([name for _, name in kinds[0]], [name for _, name in kinds[1]])
    return kinds[0], kinds[1]


def _import_server() -> tuple[Any, Any]:
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in (
            "fastapi",
            "uvicorn",
            "starlette",
            "prometheus_client",
            "pydantic",
            "orjson",
        ):
            raise
        raise MissingExtraError(f"bge-rag serve needs the server extra ({exc}): pip install 'bge-rag[server]'") from exc
    return uvicorn, create_app


def run_serve(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Load the models, then serve them until interrupted (Ctrl-C / SIGTERM)."""
    out = out or sys.stdout
    if not (args.model or args.reranker):
        raise MissingModelError("bge-rag serve needs --model (an embedding model), --reranker, or both.")
    settings = settings_from_args(args)
    embedder_sources, reranker_sources = model_sources(args)
    uvicorn, create_app = _import_server()
    from bge_core.embedder import Embedder
    from bge_core.rerank import Reranker

    _quiet_loading()
    options = {"device": args.device, "precision": args.precision, "trust_remote_code": args.trust_remote_code or None}
    embedders = {name: Embedder(source, max_length=args.max_length, **options) for source, name in embedder_sources}
    rerankers = {
        name: Reranker(source, max_length=args.reranker_max_length, **options) for source, name in reranker_sources
    }
    # The names are the mappings' keys (model_sources applied --served-model-name / --reranker-name).
    settings = dataclasses.replace(settings, model_name=None, reranker_name=None)
    app = create_app(embedders or None, rerankers or None, settings=settings)
    if args.host not in _LOOPBACK and settings.api_key is None:
        logging.getLogger(__name__).warning(
            "Serving on %s without an API key: anyone who can reach this port can use the models "
            "(set --api-key or $%s).",
            args.host,
            API_KEY_ENV,
        )
    for name, engine in [*embedders.items(), *rerankers.items()]:
        print(f"Loaded {engine!r} as {name!r}", file=out, flush=True)
    from .runner import uvicorn_options

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **uvicorn_options(settings))
    return 0


def _quiet_loading() -> None:
    """No progress bars in the server log (this is the command's own process)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()


class MissingModelError(BGEError, ValueError):
    """``serve`` was started without a model."""


def build_parser() -> argparse.ArgumentParser:
    """A parser with the ``serve`` subcommand only (``python -m bge_rag.server``)."""
    parser = argparse.ArgumentParser(prog="python -m bge_rag.server", description="The bge-rag HTTP server.")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server command line.

    Args:
        argv: The arguments after the program name (``sys.argv[1:]`` when ``None``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BGEError as exc:
        print(f"bge-rag: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main", "model_sources", "register", "run_serve", "settings_from_args", "split_source"]

"""FlagEmbedding's command lines on bge_core: parsing and model loading shared by the tools that take them.

``bge-rag eval``, ``bge-rag mine-negatives`` and ``bge-rag score-pairs`` accept FlagEmbedding's
arguments unchanged. This module is the one place that

- hands a subcommand's arguments, untouched, to ``transformers.HfArgumentParser`` (FlagEmbedding's
  parser: ``--flag``, ``--flag False``, ``--no_flag``, space-separated lists), so ``bge-rag --help``
  never imports transformers;
- maps FlagEmbedding's model options to :class:`bge_core.Embedder` / :class:`bge_core.Reranker` with
  FlagEmbedding's choices: fp32 on the CPU whatever ``--use_fp16`` says (FlagEmbedding calls
  ``model.float()`` there), no query instruction unless one is given (with a warning naming the
  model's usual one), one device.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from bge_core.errors import ConfigError

if TYPE_CHECKING:
    from bge_core import Embedder, Reranker

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def register_passthrough(subparsers: Any, name: str, help_text: str, func: Callable[..., int]) -> None:
    """Add subcommand ``name`` whose arguments all reach ``func`` as ``args.arguments``, ``--help`` included."""
    # prefix_chars that no argument starts with: argparse sees no option, REMAINDER takes everything.
    parser = subparsers.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(func=func)


def parse_dataclasses(prog: str, description: str, types: Sequence[type], argv: Sequence[str]) -> tuple[Any, ...]:
    """``argv`` parsed into instances of the dataclasses ``types`` by HfArgumentParser (``--help`` exits there)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(list(types), prog=prog, description=description)  # type: ignore[arg-type]
    *parsed, rest = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=True)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return tuple(parsed)


def refuse_unsupported(command: str, unsupported: Mapping[str, str], *parsed: Any) -> None:
    """Refuse an option ``command`` cannot honour: one of ``unsupported`` given a non-default value.

    Args:
        command: The command's name, for the message.
        unsupported: Option name (a dataclass field of ``parsed``) -> why it is refused / what to do.
        parsed: The parsed argument dataclasses.

    Raises:
        ConfigError: ``--NAME is not supported by COMMAND: WHY.``
    """
    for args in parsed:
        for f in fields(args):
            if f.name not in unsupported:
                continue
            default = f.default_factory() if callable(f.default_factory) else f.default
            if getattr(args, f.name) != default:
                raise ConfigError(f"--{f.name} is not supported by {command}: {unsupported[f.name]}.")


def one_device(devices: Sequence[str] | None) -> str | None:
    """The device of ``--devices`` (one at most), or ``None`` for the default."""
    if devices and len(devices) > 1:
        raise ConfigError(
            f"--devices {' '.join(devices)}: bge-rag runs on one device; pass one (FlagEmbedding's multi-device "
            "pool gives the same numbers)."
        )
    return devices[0] if devices else None


def flag_precision(device: str | None, use_fp16: bool, use_bf16: bool = False, override: str | None = None) -> str:
    """FlagEmbedding's dtype: fp32 on the CPU; on an accelerator bf16 with use_bf16, fp16 with use_fp16."""
    if override is not None:
        if override not in PRECISIONS:
            raise ConfigError(f"Invalid precision {override!r}. Valid precisions are: {', '.join(PRECISIONS)}.")
        return override
    from bge_core.devices import resolve_device

    if resolve_device(device).type == "cpu":
        return "fp32"
    if use_bf16:
        return "bf16"
    return "fp16" if use_fp16 else "fp32"


def with_instruction(instruction: str | None, template: str, text: str) -> str:
    r"""``text`` with an instruction, as FlagEmbedding's rerankers add one (``None``: unchanged).

    A literal ``\n`` in ``template`` is a newline, as FlagEmbedding's argument classes read it.
    """
    if instruction is None:
        return text
    return template.replace("\\n", "\n").format(instruction, text)


def load_embedders(
    name_or_path: str,
    *,
    command: str,
    devices: Sequence[str] | None = None,
    use_fp16: bool = True,
    precision: str | None = None,
    pooling: str | None = None,
    normalize: bool = True,
    query_instruction: str | None = None,
    query_instruction_format: str = "{}{}",
    batch_size: int | None = None,
    passage_max_length: int = 512,
    query_max_length: int = 512,
    truncate_dim: int | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    token: str | None = None,
) -> tuple[Embedder, Embedder | None]:
    """The passage embedder and, when the query length differs, a query embedder (weights are shared).

    Args:
        name_or_path: Hub id or folder.
        command: The command's name, for messages.
        devices: FlagEmbedding's ``--devices`` (one).
        use_fp16: FlagEmbedding's ``--use_fp16`` (an accelerator only).
        precision: bge-rag's ``--precision``, overriding FlagEmbedding's choice.
        pooling: ``--pooling_method`` (``None``: the registry's, else CLS).
        normalize: ``--normalize_embeddings``.
        query_instruction: ``--query_instruction_for_retrieval``; ``None`` applies none, as FlagEmbedding.
        query_instruction_format: ``--query_instruction_format_for_retrieval``.
        batch_size: Texts per batch at most (the token budget still bounds a batch).
        passage_max_length: ``--embedder_passage_max_length``.
        query_max_length: ``--embedder_query_max_length``.
        truncate_dim: ``--truncate_dim``.
        trust_remote_code: ``--trust_remote_code``.
        cache_dir: ``--cache_dir``.
        token: A Hugging Face token.
    """
    from bge_core import Embedder

    device = one_device(devices)
    options: dict[str, Any] = {
        "device": device,
        "precision": flag_precision(device, use_fp16, override=precision),
        "pooling": pooling,
        "normalize": normalize,
        "query_instruction": query_instruction or "",
        "query_instruction_format": query_instruction_format.replace("\\n", "\n"),
        "truncate_dim": truncate_dim,
        "trust_remote_code": True if trust_remote_code else None,
        "cache_dir": cache_dir,
        "token": token,
    }
    if batch_size is not None:
        options["batch_size"] = batch_size
    embedder = Embedder(name_or_path, max_length=passage_max_length, **options)
    usual = embedder.spec.query_instruction
    if query_instruction is None and usual:
        logger.warning(
            "%s: no query instruction (as FlagEmbedding without --query_instruction_for_retrieval); "
            "%s is usually used with %r",
            command,
            name_or_path,
            usual,
        )
    if pooling is not None and embedder.spec.pooling and embedder.spec.pooling != pooling:
        logger.warning(
            "%s: --pooling_method %s; %s usually pools with %s", command, pooling, name_or_path, embedder.spec.pooling
        )
    query_embedder = None
    if query_max_length != embedder.max_length:
        query_embedder = Embedder(name_or_path, max_length=query_max_length, **options)
    return embedder, query_embedder


def load_reranker(
    name_or_path: str,
    *,
    devices: Sequence[str] | None = None,
    use_fp16: bool = True,
    use_bf16: bool = False,
    precision: str | None = None,
    normalize: bool = False,
    max_length: int = 512,
    query_max_length: int | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    token: str | None = None,
    prompt: str | None = None,
    cutoff_layers: Sequence[int] | None = None,
    compress_ratio: int = 1,
    compress_layers: int | Sequence[int] | None = None,
) -> Reranker:
    """A reranker with FlagEmbedding's reranker options (``--reranker_*``, ``--normalize``, ...)."""
    from bge_core import Reranker

    device = one_device(devices)
    options: dict[str, Any] = {
        "device": device,
        "normalize": normalize,
        "max_length": max_length,
        "query_max_length": query_max_length,
        "trust_remote_code": True if trust_remote_code else None,
        "cache_dir": cache_dir,
        "token": token,
        "prompt": prompt,
        "cutoff_layers": cutoff_layers,
        "compress_ratio": compress_ratio,
        "compress_layers": compress_layers,
    }
    if batch_size is not None:
        options["batch_size"] = batch_size
    chosen = flag_precision(device, use_fp16, override=precision)
    reranker = Reranker(name_or_path, precision=chosen, **options)
    if precision is None and use_bf16 and chosen == "fp32":
        if reranker.llm_kind is None:
            logger.info("--use_bf16: FlagEmbedding's cross-encoder reranker ignores it; so does bge-rag")
        else:  # FlagEmbedding's LLM rerankers load in bf16 (on a GPU with use_fp16, .half() wins)
            reranker = Reranker(name_or_path, precision="bf16", **options)
    return reranker


__all__ = [
    "PRECISIONS",
    "flag_precision",
    "load_embedders",
    "load_reranker",
    "one_device",
    "parse_dataclasses",
    "refuse_unsupported",
    "register_passthrough",
    "with_instruction",
]

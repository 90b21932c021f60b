"""Every ``BGE_RAG_*`` environment variable the engine reads, parsed in one place.

:func:`read_env` turns the environment into an :class:`EnvSettings`. Engines call it once, when
they are constructed (through :func:`bge_core.batching.executor_for` and, at model load, the
bf16 prepacking), and keep what they chose: changing a variable later affects engines built
later, never a running one. A value that is not understood is a :class:`~bge_core.ConfigError`
naming the variable, raised when an engine is constructed.

The server's own variables (``BGE_RAG_API_KEY``, ...) are app settings, read by ``bge_rag``.

Example:
    >>> read_env({"BGE_RAG_CPU_STREAMS": "1"}).cpu_streams
    1
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .checks import check_positive
from .errors import ConfigError

#: ``auto`` (default) or the number of CPU streams (``1``: one batch at a time on torch's
#: intra-op threads, the pre-streams behaviour).
STREAMS_ENV = "BGE_RAG_CPU_STREAMS"
#: CPU threads in total (default: the CPUs the process may use, and never more than the
#: caller's ``torch.get_num_threads()``).
THREADS_ENV = "BGE_RAG_CPU_THREADS"
#: ``0`` turns off prefetching on accelerators (``1`` forces it, also on CPUs).
PREFETCH_ENV = "BGE_RAG_PREFETCH"
#: ``0`` turns bf16 Linear prepacking off (``1`` or unset: on where it is as accurate).
PREPACK_ENV = "BGE_RAG_PREPACK"
#: ``0`` turns off tokenizing the next chunk of a large call on a helper thread while an
#: accelerator runs the current one (``1`` forces it, also on CPUs, for tests).
TOKENIZE_AHEAD_ENV = "BGE_RAG_TOKENIZE_AHEAD"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class EnvSettings:
    """The engine's ``BGE_RAG_*`` variables; ``None`` where a variable is unset (its default applies)."""

    #: ``BGE_RAG_CPU_STREAMS``: CPU streams, ``None`` for ``auto``.
    cpu_streams: int | None = None
    #: ``BGE_RAG_CPU_THREADS``: CPU threads in total, ``None`` for ``auto``.
    cpu_threads: int | None = None
    #: ``BGE_RAG_PREFETCH``: collate the next batch on a helper thread (default: accelerators only).
    prefetch: bool | None = None
    #: ``BGE_RAG_PREPACK``: prepack bf16 Linear weights on CPUs (default: on where as accurate).
    prepack: bool | None = None
    #: ``BGE_RAG_TOKENIZE_AHEAD``: tokenize a large call's next chunk ahead (default: accelerators only).
    tokenize_ahead: bool | None = None


def read_env(environ: Mapping[str, str] | None = None) -> EnvSettings:
    """Parse the ``BGE_RAG_*`` variables of ``environ`` (default: ``os.environ``, read now).

    Args:
        environ: The variables to read; tests and callers may pass a plain dict.

    Returns:
        The parsed settings.

    Raises:
        ConfigError: a variable is set to a value it does not accept (the message names it).
    """
    env = os.environ if environ is None else environ
    return EnvSettings(
        cpu_streams=_count(env, STREAMS_ENV),
        cpu_threads=_count(env, THREADS_ENV),
        prefetch=_flag(env, PREFETCH_ENV),
        prepack=_flag(env, PREPACK_ENV),
        tokenize_ahead=_flag(env, TOKENIZE_AHEAD_ENV),
    )


def _count(env: Mapping[str, str], name: str) -> int | None:
    """``auto`` or empty as ``None``, else a positive integer."""
    raw = env.get(name, "").strip().lower()
    if raw in ("", "auto"):
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be 'auto' or a positive integer, got {raw!r}") from exc
    return check_positive(name, value)


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    """Empty as ``None``, else ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``."""
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return None
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be 0 or 1, got {raw!r}")


__all__ = [
    "EnvSettings",
    "PREFETCH_ENV",
    "PREPACK_ENV",
    "STREAMS_ENV",
    "THREADS_ENV",
    "TOKENIZE_AHEAD_ENV",
    "read_env",
]

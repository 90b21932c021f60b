"""Device and precision choice, made once before a model loads.

``device=None`` picks one device: ``cuda:0``, else Apple ``mps``, else ``cpu`` (never all GPUs
behind the caller's back). ``precision="auto"`` picks fp16 on CUDA, bf16 on a CPU with native
bf16 matrix instructions (AVX512-BF16 or AMX, detected at run time), fp32 otherwise. Outputs are
float32 whatever the compute precision.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal, Union

import torch

from .errors import ConfigError

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
}
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: Union[str, int, torch.device, None]) -> torch.device:
    """The device to run on: the caller's choice, or the first accelerator, or the CPU.

    Raises:
        ConfigError: the device string is malformed or names a device that is not available.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(device, bool):
        raise ConfigError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    try:
        dev = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"Invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} was requested but CUDA is not available; use device='cpu'.")
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return torch.device("cuda", index)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device!r} was requested but MPS is not available; use device='cpu'.")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX tiles).

    oneDNN also runs bf16 on CPUs without them, by emulation, which is slower than fp32: such
    CPUs count as not supporting bf16 here.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    cpu = getattr(torch, "cpu", None)
    for name in checks:
        probe = getattr(cpu, name, None)
        if probe is not None:
            try:
                if probe():
                    return True
            except RuntimeError:  # a probe that cannot run on this platform
                continue
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``.

    Raises:
        ConfigError: an unknown precision, or bf16 on a CUDA device without bf16 support.
    """
    if not isinstance(precision, str):
        raise ConfigError(f"precision must be a string, one of {', '.join(PRECISIONS)}; got {precision!r}")
    name = _ALIASES.get(precision.lower(), precision.lower())
    if name not in PRECISIONS:
        raise ConfigError(f"Invalid precision {precision!r}. Valid precisions are: {', '.join(PRECISIONS)}.")
    if name == "auto":
        if device.type == "cuda":
            name = "fp16"
        elif device.type == "cpu" and cpu_supports_bf16():
            name = "bf16"
        else:
            name = "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision='bf16' is not supported on {device}; use 'fp16' or 'fp32'.")
    return _DTYPES[name]


def describe(device: torch.device, dtype: torch.dtype) -> str:
    """A short human-readable description, e.g. ``"cpu/bf16"``."""
    names = {v: k for k, v in _DTYPES.items()}
    return f"{device}/{names.get(dtype, str(dtype))}"


__all__ = ["PRECISIONS", "Precision", "cpu_supports_bf16", "describe", "resolve_device", "resolve_precision"]

"""Device and precision choice, made once before a model loads.

``device=None`` picks one device: ``cuda:0``, else Apple ``mps``, else ``cpu`` (never all GPUs
behind the caller's back). ``precision="auto"`` picks fp16 on CUDA, bf16 on a CPU with native
bf16 matrix instructions (AVX512-BF16 or AMX, detected at run time), fp32 otherwise. Outputs are
float32 whatever the compute precision.

:func:`available_cpus` counts the CPUs this process may really use: its affinity mask, capped by
a cgroup (v1 or v2) CPU quota, which is what a container's ``--cpus`` sets. ``os.cpu_count()``
and torch's default thread count see the host's cores instead.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Literal

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


def resolve_device(device: str | int | torch.device | None) -> torch.device:
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


def affinity_cpus() -> int:
    """How many CPUs the scheduler may run this process on (its affinity mask)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is not None:
        try:
            return max(1, len(getter(0)))
        except OSError:  # pragma: no cover - platforms that refuse the call
            pass
    return max(1, os.cpu_count() or 1)


def _mounts(root: Path) -> list[tuple[str, Path, str, set[str]]]:
    """Cgroup mounts from ``/proc/self/mountinfo``: (hierarchy root, mount point, fstype, options)."""
    try:
        lines = (root / "proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = set(tail[2].split(","))
        mounts.append((fields[3], root / fields[4].lstrip("/"), tail[0], options))
    return mounts


def _own_cgroups(root: Path) -> list[tuple[str, str]]:
    """(controllers, path) pairs from ``/proc/self/cgroup``; controllers is "" for cgroup v2."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    pairs = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            pairs.append((parts[1], parts[2]))
    return pairs


def _chain(mount_root: str, mount_point: Path, path: str) -> list[Path]:
    """The cgroup folder of ``path`` under a mount, and each of its ancestors up to the mount."""
    inside = mount_root == "/" or path == mount_root or path.startswith(mount_root.rstrip("/") + "/")
    rel = os.path.relpath(path, mount_root) if inside else "."
    folder = mount_point if rel in (".", "") else mount_point / rel
    if not folder.is_dir():  # another cgroup namespace: the mount shows our own group at its top
        folder = mount_point
    chain = [folder]
    while folder != mount_point and mount_point in folder.parents:
        folder = folder.parent
        chain.append(folder)
    return chain


def _quota_v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or float(period) <= 0:
        return None
    return float(quota) / float(period)


def _quota_v1(folder: Path) -> float | None:
    try:
        quota = float((folder / "cpu.cfs_quota_us").read_text().strip())
        period = float((folder / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1: no quota
        return None
    return quota / period


def cgroup_cpu_quota(root: str | Path = "/") -> float | None:
    """The cgroup CPU quota of this process in CPUs (e.g. 1.5), or ``None`` when there is none.

    Reads ``/proc/self/cgroup`` and ``/proc/self/mountinfo`` under ``root`` (a fake root in tests),
    then ``cpu.max`` (cgroup v2) or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (v1) of the
    process's group and of every ancestor up to the mount; the smallest quota wins.
    """
    root = Path(root)
    quotas: list[float] = []
    mounts = _mounts(root)
    for controllers, path in _own_cgroups(root):
        v2 = controllers == ""
        for mount_root, point, fstype, options in mounts:
            if v2 and fstype != "cgroup2":
                continue
            if not v2 and (fstype != "cgroup" or "cpu" not in controllers.split(",") or "cpu" not in options):
                continue
            reader = _quota_v2 if v2 else _quota_v1
            quotas += [q for q in map(reader, _chain(mount_root, point, path)) if q is not None]
    return min(quotas) if quotas else None


def available_cpus(root: str | Path = "/", affinity: int | None = None) -> int:
    """CPUs this process may really use: its affinity mask capped by its cgroup CPU quota.

    A fractional quota rounds up (1.5 CPUs -> 2): the scheduler lets the process use that much
    CPU time, spread over more cores. Never less than 1.

    Args:
        root: Filesystem root to read ``/proc`` and ``/sys/fs/cgroup`` from (tests pass a fake one).
        affinity: The affinity count to cap (default: :func:`affinity_cpus`).
    """
    count = affinity_cpus() if affinity is None else affinity
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota - 1e-9)))
    return max(1, count)


def describe(device: torch.device, dtype: torch.dtype) -> str:
    """A short human-readable description, e.g. ``"cpu/bf16"``."""
    names = {v: k for k, v in _DTYPES.items()}
    return f"{device}/{names.get(dtype, str(dtype))}"


__all__ = [
    "PRECISIONS",
    "Precision",
    "affinity_cpus",
    "available_cpus",
    "cgroup_cpu_quota",
    "cpu_supports_bf16",
    "describe",
    "resolve_device",
    "resolve_precision",
]

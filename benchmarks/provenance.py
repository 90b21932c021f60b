"""What every results file records about the run that wrote it: date, CPU, versions and command.

``benchmarks/report.py`` renders the documentation's benchmark page from these fields, so a
script that writes ``benchmarks/results/*.json`` calls :func:`provenance` and merges the dict
into its report. Nothing here measures anything.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: /proc/cpuinfo flags that decide which precision and which matmul kernels a CPU gets.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
#: Recorded in every results file (a missing package is recorded as "not installed").
BASE_PACKAGES = ("bge-rag", "torch", "transformers", "tokenizers")


def package_versions(packages: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Installed versions of ``packages`` (distribution names), plus Python's."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> dict[str, Any]:
    """Whether the CPU computes bf16 natively (bge_core's own test), and the relevant flags."""
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                flags = [f for f in CPU_FLAGS if f in present]
                break
    except OSError:
        pass
    from bge_core.devices import cpu_supports_bf16

    return {"native_bf16": bool(cpu_supports_bf16()), "flags": flags}


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (``None`` where the platform has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _available_cpus() -> int:
    from bge_core.devices import available_cpus

    return available_cpus()


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(script: str, argv: list[str] | None = None, peers: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields every results file carries.

    Args:
        script: the script's path from the repository root (``benchmarks/bench.py``).
        argv: its arguments (default ``sys.argv[1:]``).
        peers: distribution names of the peer libraries the run compared against.
    """
    args = sys.argv[1:] if argv is None else argv
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", script, *args]),
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "cores": os.cpu_count(),
        "available_cpus": _available_cpus(),
        "load_average_at_start": load_average(),
        "versions": package_versions([*BASE_PACKAGES, *peers]),
        "commit": _commit(),
    }

"""Native thread control: the intra-op thread count of one OS thread, through OpenMP and MKL.

torch's ``set_num_threads`` is process-wide; OpenMP's ``omp_set_num_threads`` sets the calling
thread's count only. :func:`thread_control` finds the OpenMP runtime torch uses (through ctypes)
so bge-rag's CPU workers can run one intra-op thread each while the caller's threads keep theirs.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import threading
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def thread_control() -> Callable[[int], None] | None:
    """A function setting the intra-op thread count of the calling OS thread only, or ``None``.

    It calls ``omp_set_num_threads`` (a per-thread setting in OpenMP) of the OpenMP runtime
    torch uses, and MKL's ``mkl_set_num_threads_local`` when torch exports it; checked on a
    probe thread, where ``torch.get_num_threads()`` must follow. Other packages bundle their own
    OpenMP runtimes (sentencepiece does), so torch's own folder is searched first and every
    candidate is probed.
    """
    mkl = next(iter(_libraries(("libtorch_cpu",))), None)
    # MKL's Fortran-style entry points take their argument by reference.
    mkl_local = getattr(mkl, "mkl_set_num_threads_local_", None) if mkl is not None else None
    mkl_get = getattr(mkl, "mkl_get_max_threads_", None) if mkl is not None else None
    for omp in _libraries(("libgomp", "libiomp5", "libomp")):
        if not hasattr(omp, "omp_set_num_threads"):
            continue

        def set_threads(n: int, omp: ctypes.CDLL = omp) -> None:
            omp.omp_set_num_threads(ctypes.c_int(n))
            if mkl_local is not None:
                mkl_local(ctypes.byref(ctypes.c_int(n)))

        seen: list[int] = []

        def probe(set_threads: Callable[[int], None] = set_threads, seen: list[int] = seen) -> None:
            torch.get_num_threads()  # torch's lazy per-thread initialization first
            set_threads(1)
            seen.append(torch.get_num_threads())
            if mkl_get is not None:
                seen.append(int(mkl_get()))

        worker = threading.Thread(target=probe, name="bge-rag-probe")
        worker.start()
        worker.join()
        if seen and all(n == 1 for n in seen):
            return set_threads
    logger.info("Per-thread CPU thread control unavailable; CPU batches run one at a time.")
    return None


def _libraries(prefixes: tuple[str, ...]) -> list[ctypes.CDLL]:
    """Shared libraries whose file names start with a prefix: torch's own, then any mapped."""
    paths: list[str] = []
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    with contextlib.suppress(OSError):
        paths += sorted(os.path.join(torch_lib, n) for n in os.listdir(torch_lib) if n.startswith(prefixes))
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths += [line.rsplit(" ", 1)[-1].strip() for line in maps]
    except OSError:
        pass
    found: list[ctypes.CDLL] = []
    seen: set[str] = set()
    for path in paths:
        name = os.path.basename(path)
        if path.startswith("/") and name.startswith(prefixes) and ".so" in name and path not in seen:
            seen.add(path)
            try:
                found.append(ctypes.CDLL(path))
            except OSError:
                continue
    return found


__all__ = ["thread_control"]

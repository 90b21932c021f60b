"""The progress bar of long jobs (tqdm, imported only when a bar is shown)."""

from __future__ import annotations

from typing import Any

#: Inputs at least this long show a progress bar when ``show_progress`` is left as ``None``.
PROGRESS_THRESHOLD = 2048


def progress_bar(total: int, show_progress: bool | None, desc: str) -> Any:
    """A tqdm bar over ``total`` texts, or ``None``.

    Args:
        total: Texts in the job.
        show_progress: ``True`` / ``False``, or ``None`` to show one from ``PROGRESS_THRESHOLD`` texts on.
        desc: The bar's label.

    Returns:
        A ``tqdm`` bar (call ``update(n)`` and ``close()``), or ``None`` when none is shown.
    """
    if show_progress is None:
        show_progress = total >= PROGRESS_THRESHOLD
    if not show_progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text")


__all__ = ["PROGRESS_THRESHOLD", "progress_bar"]

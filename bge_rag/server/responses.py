"""The JSON answer every endpoint sends: compact, UTF-8, no NaN, vectors written by orjson.

Vectors go into payloads as float32 numpy arrays (not ``.tolist()``): orjson writes each float32
in its shortest form that reads back as the same float32 (as TEI does), which is about half the
bytes of the float64 form of the same value and many times faster than ``json.dumps`` of lists.
A client that parses the numbers and casts them to float32 gets the engine's values bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from fastapi.responses import Response

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # orjson writes C-contiguous arrays only
        return np.ascontiguousarray(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def check_finite(payload: Any) -> None:
    """Raise ``ValueError`` when ``payload`` holds NaN or infinity (orjson would write ``null``)."""
    if isinstance(payload, np.ndarray):
        if payload.dtype.kind in "fc" and not np.isfinite(payload).all():
            raise ValueError("Out of range float values are not JSON compliant (the model produced NaN or inf)")
    elif isinstance(payload, (float, np.floating)):
        if not math.isfinite(payload):
            raise ValueError("Out of range float values are not JSON compliant (the model produced NaN or inf)")
    elif isinstance(payload, dict):
        for value in payload.values():
            check_finite(value)
    elif isinstance(payload, (list, tuple)):
        for value in payload:
            check_finite(value)


def json_bytes(payload: Any) -> bytes:
    """``payload`` as compact UTF-8 JSON; ``ValueError`` on NaN or infinity anywhere in it.

    orjson writes a non-finite float as ``null``, so an answer without ``null`` in it is all
    finite; only one with a ``null`` (a real ``None``, or that word inside a string) is walked.
    """
    out = orjson.dumps(payload, default=_default, option=_OPTIONS)
    if b"null" in out:
        check_finite(payload)
    return out


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response with the body :func:`json_bytes` writes."""
    return Response(json_bytes(payload), status_code=status, media_type="application/json")


__all__ = ["check_finite", "json_bytes", "json_response"]

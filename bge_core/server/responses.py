"""The JSON answer every endpoint sends: compact, UTF-8, no NaN."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response


def json_response(payload: Any, status: int = 200) -> Response:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(data.encode("utf-8"), status_code=status, media_type="application/json")


__all__ = ["json_response"]

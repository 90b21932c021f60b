"""Admission: what a request would cost, checked before its work runs.

A request is refused up front (413, naming the limit and the flag that raises it) when its
output would exceed a cap (ColBERT vectors, ``/tokenize`` token ids) or when its size alone needs
more model time than the work limit on this server. The sizes come from token counts, which the
engine's worker computes first (a tokenizer pass, no model work) and only when a cheap upper
bound (texts x ``max_length``) does not already settle the question.

The time a request needs is estimated from :class:`Throughput`, this server's measured model
seconds per token. No web framework is imported.
"""

from __future__ import annotations

import math
import threading

from .errors import APIError

#: Characters of tokenizer work per piece (``/tokenize`` and admission's counts take turns with
#: model work in pieces of about this size; a longer text is a piece alone).
TOKENIZER_PIECE_CHARS = 65_536
#: Token ids per piece of ``/tokenize`` answers and ``/decode`` inputs.
TOKENIZER_PIECE_IDS = 16_384


class Throughput:
    """A moving estimate of the model seconds one token costs on this server.

    After each engine call of at least ``min_tokens`` tokens, the call's seconds and tokens are
    added to sums that decay by ``decay`` per call; the estimate is their ratio (a token-weighted
    moving average, so large calls count most). Smaller calls are left out: their fixed costs
    would overstate the time per token and refuse requests that fit. Before the first such call
    there is no estimate and no request is refused for its size: the server never refuses on a
    guess (a request that then overruns meets the work limit, whose error says what happened).

    Example:
        >>> t = Throughput()
        >>> t.observe(tokens=4096, seconds=2.0)
        >>> t.seconds_per_token
        0.00048828125
    """

    def __init__(self, min_tokens: int = 1024, decay: float = 0.8) -> None:
        self.min_tokens = min_tokens
        self.decay = decay
        self._seconds = 0.0
        self._tokens = 0.0
        self._lock = threading.Lock()  # observed on the worker thread, read on the event loop

    def observe(self, tokens: int, seconds: float) -> None:
        """Add one engine call of ``tokens`` tokens that took ``seconds``."""
        if tokens < self.min_tokens or seconds <= 0:
            return
        with self._lock:
            self._seconds = self._seconds * self.decay + seconds
            self._tokens = self._tokens * self.decay + tokens

    @property
    def seconds_per_token(self) -> float | None:
        """The estimate, or ``None`` before any call of ``min_tokens`` tokens."""
        with self._lock:
            return self._seconds / self._tokens if self._tokens else None


def check_colbert(vectors: int, limit: int) -> None:
    """413 when a request's ColBERT output (one vector per token but CLS) exceeds ``limit``."""
    if vectors > limit:
        raise APIError(
            413,
            f"The ColBERT output of this request has {vectors} vectors (one per token); this server "
            f"returns at most {limit} per request (--max-colbert-vectors). Send fewer or shorter texts.",
            param="colbert",
            code="output_too_large",
        )


def check_tokenize_ids(ids: int, limit: int) -> None:
    """413 when a ``/tokenize`` answer would hold more than ``limit`` token ids."""
    if ids > limit:
        raise APIError(
            413,
            f"The /tokenize answer to this request would hold {ids} token ids; this server answers at most "
            f"{limit} per request (--max-tokenize-ids). Send fewer or shorter texts.",
            param="inputs",
            code="output_too_large",
        )


def check_work(texts: int, tokens: int, seconds_per_token: float | None, limit: float) -> None:
    """413 when ``tokens`` alone need more model time than the work limit at the measured throughput.

    Args:
        texts: Texts in the request (to say how many fit in one request).
        tokens: Their tokens, as the model will see them.
        seconds_per_token: :attr:`Throughput.seconds_per_token` (``None``: nothing is refused).
        limit: The work limit in seconds.
    """
    if seconds_per_token is None:
        return
    needed = tokens * seconds_per_token
    if needed <= limit:
        return
    fit = max(1, math.floor(texts * limit / needed * 0.8))  # a margin for the estimate's error
    raise APIError(
        413,
        f"This request needs about {needed:.0f} s of model time on this server ({tokens} tokens at "
        f"{seconds_per_token * 1000:.3g} ms per token, as measured on its recent work), more than its work "
        f"limit of {limit:g} s (--work-timeout): it cannot succeed here however long it waits. Split it "
        f"into requests of at most about {fit} of these texts, or start the server with a larger --work-timeout.",
        code="request_too_large",
    )


__all__ = [
    "TOKENIZER_PIECE_CHARS",
    "TOKENIZER_PIECE_IDS",
    "Throughput",
    "check_colbert",
    "check_tokenize_ids",
    "check_work",
]

"""Upload mechanics: Qdrant's size limits, request splitting, retries on transient errors.

Nothing here knows about encoders; :mod:`lfm_qdrant.writer` builds the points and these
helpers get them to the server in requests it accepts.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "MAX_MULTIVECTOR_FLOATS",
    "QDRANT_MAX_REQUEST_BYTES",
    "RetryPolicy",
    "estimate_point_bytes",
    "fit_multivector",
    "split_requests",
]

logger = logging.getLogger(__name__)

QDRANT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
"""The server's default ``service.max_request_size_mb`` (32 MB) for one REST request."""
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Default cap on one upsert request: half the server limit, so an estimate that is off,
or a server configured lower, still leaves room."""
MAX_MULTIVECTOR_FLOATS = 1_048_576
"""Qdrant rejects a multivector with more numbers than this (rows x width), e.g. 8,192 rows
of 128."""

# Upper bound of one float32 written as JSON text: "-1.2345678901234567e-05," is 24 bytes.
# Estimating with the REST form also covers gRPC, which takes 4 bytes per float.
_JSON_BYTES_PER_FLOAT = 24
# The point id, the vector names, brackets and braces.
_POINT_OVERHEAD_BYTES = 256


def fit_multivector(rows: np.ndarray) -> tuple[np.ndarray, bool]:
    """Keep the first rows of a multivector that fit Qdrant's per-multivector limit.

    Args:
        rows: ``[n_tokens, dim]`` token vectors of one document.

    Returns:
        ``(rows, truncated)``: at most ``MAX_MULTIVECTOR_FLOATS // dim`` rows, and whether
        any were dropped. The first rows are kept: they are the start of the document,
        which the encoder already cut the same way at its own token limit.

    >>> rows, cut = fit_multivector(np.zeros((8193, 128), dtype=np.float32))
    >>> rows.shape, cut
    ((8192, 128), True)
    """
    max_rows = MAX_MULTIVECTOR_FLOATS // rows.shape[1]
    if rows.shape[0] <= max_rows:
        return rows, False
    return rows[:max_rows], True


def estimate_point_bytes(n_floats: int, payload: Mapping[str, Any]) -> int:
    """An upper bound of the bytes one point takes in a REST upsert request.

    Args:
        n_floats: numbers in all the point's vectors together.
        payload: the point's payload: ``{"text": text, **metadata}``.

    >>> estimate_point_bytes(4, {"text": "hi"})  # 256 + 24 * 4 + 6 * 2 + 10
    374
    """
    text = payload.get("text", "")
    rest = {key: value for key, value in payload.items() if key != "text"}
    # A character is at most 6 bytes of JSON (\uXXXX); bounding the text this way skips
    # serializing it. The metadata is usually small, so it is serialized to be exact.
    text_bytes = 6 * len(text) + 10 if isinstance(text, str) else 0
    rest_bytes = len(json.dumps(rest, ensure_ascii=True, default=str)) if rest else 0
    return _POINT_OVERHEAD_BYTES + _JSON_BYTES_PER_FLOAT * n_floats + text_bytes + rest_bytes


def split_requests(sizes: Sequence[int], max_bytes: int, max_points: int) -> Iterator[slice]:
    """Cut consecutive points into requests of at most ``max_points`` and ``max_bytes``.

    A point larger than ``max_bytes`` on its own goes alone in its request.

    Args:
        sizes: estimated bytes of each point, in order.
        max_bytes: cap on the sum of ``sizes`` in one request.
        max_points: cap on the number of points in one request.

    Yields:
        Slices of ``sizes`` that cover it in order.

    >>> list(split_requests([5, 5, 5, 20, 1], max_bytes=10, max_points=3))
    [slice(0, 2, None), slice(2, 3, None), slice(3, 4, None), slice(4, 5, None)]
    """
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (total + size > max_bytes or i - start >= max_points):
            yield slice(start, i)
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield slice(start, len(sizes))


_RETRY_HTTP_STATUS = frozenset({429, 502, 503, 504})
_RETRY_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
# What a client call may raise when the network or the server hiccups. Only these are
# caught; `is_transient` then decides.
CLIENT_ERRORS: tuple[type[Exception], ...] = (
    ResourceExhaustedResponse,
    ResponseHandlingException,
    UnexpectedResponse,
    grpc.RpcError,
    ConnectionError,
    TimeoutError,
)


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same request may succeed (network, overload, rate limit).

    A 4xx other than 429, a 500, or a malformed response is not transient: retrying
    would fail the same way.
    """
    if isinstance(error, (ResourceExhaustedResponse, ConnectionError, TimeoutError)):
        return True
    if isinstance(error, ResponseHandlingException):
        # It wraps both network errors and unparseable responses; only the first may pass.
        return isinstance(error.source, (httpx.TransportError, ConnectionError, TimeoutError))
    if isinstance(error, UnexpectedResponse):
        return error.status_code in _RETRY_HTTP_STATUS
    if isinstance(error, grpc.RpcError):
        code = getattr(error, "code", None)
        return callable(code) and code() in _RETRY_GRPC_CODES
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter for idempotent client calls.

    Attributes:
        max_retries: retries after the first attempt; 0 disables retrying.
        backoff_s: wait before the first retry; doubled for each next one.
        max_backoff_s: cap on one wait.
    """

    max_retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError(
                f"retry settings must be >= 0, got max_retries={self.max_retries}, "
                f"backoff_s={self.backoff_s}, max_backoff_s={self.max_backoff_s}"
            )

    def delay(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before retrying after ``error``, or ``None`` to give up.

        Args:
            attempt: 0 for the first retry, 1 for the second, ...
            error: what the failed call raised.
        """
        if attempt >= self.max_retries or not is_transient(error):
            return None
        if isinstance(error, ResourceExhaustedResponse):
            return float(error.retry_after_s)  # the server says when
        base = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        # Jitter keeps many writers that failed together from retrying together.
        return base * random.uniform(0.5, 1.0)

    def log_retry(self, what: str, attempt: int, error: BaseException, delay: float) -> None:
        """Log one line per retry, naming the call, the attempt and the error."""
        logger.warning(
            "%s failed (%s: %s); retry %d of %d in %.1f s",
            what,
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
            attempt + 1,
            self.max_retries,
            delay,
        )


def log_cuts(truncated: int, without_colbert: int, colbert_dim: int | None) -> None:
    """Warn once per call about token vectors cut to fit and documents left without ColBERT."""
    if truncated:
        logger.warning(
            "%d document(s) had more token vectors than Qdrant stores in one multivector "
            "(%d numbers); kept the first %d vectors of each",
            truncated,
            MAX_MULTIVECTOR_FLOATS,
            MAX_MULTIVECTOR_FLOATS // (colbert_dim or 1),
            extra={"lfm_summable_args": 1},
        )
    if without_colbert:
        logger.warning(
            "%d document(s) got no ColBERT vectors (empty, or only skiplisted tokens); "
            "they are stored without a 'colbert' vector and a rerank cannot return them",
            without_colbert,
            extra={"lfm_summable_args": 1},
        )

"""Errors of the service: one body shape (OpenAI's), and the statuses each route declares.

Every error is answered as ``{"error": {"message", "type", "param", "code"}}``. Routes
declare what they may answer with ``responses=error_responses(400, 401, ...)``, so the
OpenAPI document lists each status with this schema (a client generated from it gets the
right error types); the service never answers FastAPI's default ``422``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "ErrorDetail",
    "error_body",
    "error_responses",
]


class ErrorDetail(BaseModel):
    """What went wrong, where, and a stable code to branch on."""

    message: str = Field(description="what is wrong and what is allowed, for a person")
    type: str = Field(
        description="invalid_request_error, authentication_error, overloaded_error, server_error"
    )
    param: str | None = Field(
        description="the request field at fault, e.g. input[3] or filter.must[0].range.gte"
    )
    code: str = Field(description="a stable code, e.g. invalid_value, model_not_found")


class ErrorBody(BaseModel):
    """The body of every error response (OpenAI's shape)."""

    error: ErrorDetail


class ApiError(Exception):
    """An error answered with ``status`` and an OpenAI-style body naming the problem."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind
        self.headers = headers or {}


def error_body(message: str, kind: str, code: str, param: str | None) -> dict[str, Any]:
    """The JSON of an error response."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _declared(description: str, **headers: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        entry["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return entry


# What each status means in this service, for ``responses=`` of a route.
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: _declared(
        "The request is malformed: not JSON, a wrong type, a value out of range, too many "
        "or too long inputs; `param` names the field"
    ),
    401: _declared(
        "Missing or wrong API key (only when the service runs with one): checked before the "
        "body is read",
        **{"WWW-Authenticate": "Bearer"},
    ),
    404: _declared("The model, the collection or the store named is not served here"),
    409: _declared("The collection exists but was written with other models"),
    413: _declared("The body is over the service's size limit; it was not read"),
    503: _declared(
        "The service is busy (queue full or no answer in time) or stopping: retry later",
        **{"Retry-After": "seconds to wait before retrying"},
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that may answer these error statuses.

    >>> sorted(error_responses(400, 401))
    [400, 401]
    """
    return {status: ERROR_RESPONSES[status] for status in statuses}

"""The FastAPI application: routes, errors in OpenAI's shape, limits, auth and metrics."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lfm_core import CollectionError, DenseEncoder, InputError, InputType, rank_scores

from .batching import BatchingOptions, EncodeBatcher, Encoded, Overloaded, ServedEncoder, Side
from .metrics import ServiceMetrics
from .schemas import EmbeddingsRequest, MultivectorRequest, RerankRequest, SearchRequest

__all__ = ["ApiError", "ServiceConfig", "ServiceLimits", "create_app"]

logger = logging.getLogger("lfm_retrieval.server")

_ENDPOINTS = (
    "/health",
    "/metrics",
    "/v1/models",
    "/v1/embeddings",
    "/v1/multivector",
    "/v1/rerank",
    "/v1/search",
)


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for.

    Attributes:
        max_inputs: texts per request (``input`` items, rerank ``documents``).
        max_input_chars: characters per text; a longer one is refused (400). Texts under
            it but over the model's token limit are truncated, and the response lists them.
        max_body_bytes: bytes of a request body (413 above it, before it is parsed).
        request_timeout_s: longest a request waits for the model before a 503.
    """

    max_inputs: int = 2048
    max_input_chars: int = 100_000
    max_body_bytes: int = 16 * 1024 * 1024
    request_timeout_s: float = 60.0


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service needs besides its models and its store.

    Attributes:
        api_key: when set, every endpoint but ``/health`` wants ``Authorization: Bearer KEY``.
        limits: request limits.
        batching: batching across requests, and the queue bound.
    """

    api_key: str | None = None
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    batching: BatchingOptions = field(default_factory=BatchingOptions)


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


class _ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def create_app(
    dense: ServedEncoder | None = None,
    colbert: ServedEncoder | None = None,
    *,
    store: Any = None,
    config: ServiceConfig | None = None,
) -> FastAPI:
    """The service over loaded encoders (either may be ``None``) and an optional store.

    Args:
        dense: the dense encoder behind ``/v1/embeddings`` (and ``/v1/rerank`` without ColBERT).
        colbert: the ColBERT encoder behind ``/v1/multivector`` and ``/v1/rerank``.
        store: an ``EdgeStore`` or ``QdrantClient`` for ``/v1/search``, or ``None``.
        config: limits, batching and the API key.

    Raises:
        ValueError: neither encoder is given.
    """
    if dense is None and colbert is None:
        raise ValueError("the service needs a dense model, a ColBERT model or both")
    service = _Service(dense, colbert, store, config or ServiceConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()

    public = service.config.api_key is None
    app = FastAPI(
        title="lfm-retrieval",
        summary="LFM2.5 dense embeddings, ColBERT vectors, rerank and search",
        lifespan=lifespan,
        docs_url="/docs" if public else None,
        redoc_url=None,
        openapi_url="/openapi.json" if public else None,
    )
    app.state.service = service
    _add_error_handlers(app, service)
    app.add_middleware(_BodyLimit, max_bytes=service.config.limits.max_body_bytes)
    app.add_middleware(_RequestMetrics, metrics=service.metrics)
    auth = [Depends(service.authorize)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: ``{"status": "ok"}`` while the model thread takes work."""
        if not service.batcher.running:
            raise ApiError(
                503, "the model worker has stopped", code="unhealthy", kind="server_error"
            )
        return {"status": "ok", "queued_texts": service.batcher.queued_texts}

    @app.get("/v1/models", dependencies=auth)
    async def list_models() -> dict[str, Any]:
        """The loaded models, in OpenAI's list shape (``kind``: dense or colbert, ``dim``)."""
        return {
            "object": "list",
            "data": [
                {
                    "id": encoder.model_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "lfm-retrieval",
                    "kind": side,
                    "dim": encoder.dim,
                }
                for side, encoder in service.encoders.items()
            ],
        }

    @app.get("/metrics", dependencies=auth)
    async def metrics() -> Response:
        """Prometheus text: requests, errors, tokens, batch sizes, queue, latency."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/embeddings", dependencies=auth)
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        """OpenAI-compatible embeddings from the dense model."""
        encoder = service.model_for("dense", body.model)
        if body.dimensions is not None and body.dimensions != encoder.dim:
            raise ApiError(
                400,
                f"dimensions={body.dimensions} is not supported: {encoder.model_name} gives "
                f"{encoder.dim}-d vectors and cannot shorten them; leave dimensions out",
                code="unsupported_dimensions",
                param="dimensions",
            )
        texts = service.check_texts(body.input, "input")
        out = await service.encode(request, "dense", body.input_type, texts)
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(v, body.encoding_format)}
            for i, v in enumerate(out.vectors)
        ]
        return _answer(
            {"object": "list", "data": data, "model": encoder.model_name, **_usage(out)}, out
        )

    @app.post("/v1/multivector", dependencies=auth)
    async def multivector(body: MultivectorRequest, request: Request) -> Response:
        """ColBERT token vectors, one ``[n_tokens, dim]`` matrix per input."""
        encoder = service.model_for("colbert", body.model)
        texts = service.check_texts(body.input, "input")
        out = await service.encode(request, "colbert", body.input_type, texts)
        data = [
            {
                "object": "embeddings",
                "index": i,
                "embeddings": _vector(m, body.encoding_format),
                "shape": list(m.shape),
            }
            for i, m in enumerate(out.vectors)
        ]
        return _answer(
            {"object": "list", "data": data, "model": encoder.model_name, **_usage(out)}, out
        )

    @app.post("/v1/rerank", dependencies=auth)
    async def rerank(body: RerankRequest, request: Request) -> Response:
        """Rank ``documents`` for ``query``: ColBERT MaxSim when loaded, else dense cosine."""
        side: Side = "colbert" if "colbert" in service.encoders else "dense"
        encoder = service.model_for(side, body.model)
        service.check_texts([body.query], "query")
        docs = service.check_texts(body.documents, "documents")
        with_text = [i for i, doc in enumerate(docs) if doc.strip()]
        query = await service.encode(request, side, "query", [body.query])
        scores = np.zeros(0, dtype=np.float32)
        documents = None
        if with_text:
            documents = await service.encode(
                request, side, "document", [docs[i] for i in with_text]
            )
            scores = await service.batcher.call(
                partial(_score, encoder, query.vectors[0], documents.vectors)
            )
        results = []
        for index, score in rank_scores(scores, with_text, len(docs), body.top_n):
            item: dict[str, Any] = {"index": index, "relevance_score": score}
            if body.return_documents:
                item["document"] = {"text": docs[index]}
            results.append(item)
        tokens = sum(query.counts.tokens) + (sum(documents.counts.tokens) if documents else 0)
        truncated = [] if documents is None else [with_text[i] for i in documents.counts.truncated]
        payload = {
            "model": encoder.model_name,
            "results": results,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "truncated": truncated,
        }
        return JSONResponse(payload, headers=_truncation_header(len(truncated)))

    @app.post("/v1/search", dependencies=auth)
    async def search(body: SearchRequest, request: Request) -> Response:
        """Search a collection written by lfm_qdrant: ids, scores and payloads, best first."""
        service.check_texts([body.query], "query")
        results, mode = await service.wait(
            request, service.batcher.call(lambda: service.search(body))
        )
        return JSONResponse(
            {
                "collection": body.collection,
                "mode": mode,
                "results": [
                    {
                        "id": p.id,
                        "score": p.score,
                        "payload": p.payload if body.with_payload else None,
                    }
                    for p in results
                ],
            }
        )

    return app


class _Service:
    """The state behind the routes: encoders, batcher, store, metrics."""

    def __init__(
        self,
        dense: ServedEncoder | None,
        colbert: ServedEncoder | None,
        store: Any,
        config: ServiceConfig,
    ) -> None:
        self.encoders: dict[Side, ServedEncoder] = {}
        if dense is not None:
            self.encoders["dense"] = dense
        if colbert is not None:
            self.encoders["colbert"] = colbert
        self.store = store
        self.config = config
        self.metrics = ServiceMetrics()
        self.batcher = EncodeBatcher(
            self.encoders,
            config.batching,
            self.metrics,
            in_flight=lambda: self.metrics.requests_in_flight,
        )
        self._writers: dict[str, Any] = {}

    async def authorize(self, request: Request) -> None:
        key = self.config.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), key):
            raise ApiError(
                401,
                "missing or wrong API key: send Authorization: Bearer KEY",
                code="invalid_api_key",
                kind="authentication_error",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def model_for(self, side: Side, requested: str | None) -> ServedEncoder:
        """The encoder of ``side``, checked against the request's ``model`` field."""
        encoder = self.encoders.get(side)
        if encoder is None:
            flag = "--colbert-model" if side == "colbert" else "--embedding-model"
            raise ApiError(
                404,
                f"this service has no {side} model loaded; start it with {flag} ID_OR_DIR",
                code="model_not_loaded",
                param="model",
            )
        if requested is None or _names(encoder, requested):
            return encoder
        for other_side, other in self.encoders.items():
            if _names(other, requested):
                raise ApiError(
                    400,
                    f"model {requested!r} is the {other_side} model; this endpoint serves the "
                    f"{side} model {encoder.model_name!r}",
                    code="wrong_model_kind",
                    param="model",
                )
        raise ApiError(
            404,
            f"model {requested!r} is not served here; GET /v1/models lists "
            f"{', '.join(repr(e.model_name) for e in self.encoders.values())}",
            code="model_not_found",
            param="model",
        )

    def check_texts(self, value: str | Sequence[str], param: str) -> list[str]:
        texts = [value] if isinstance(value, str) else list(value)
        limits = self.config.limits
        if not texts:
            raise ApiError(
                400,
                f"{param} is an empty list; send at least one text",
                code="empty_input",
                param=param,
            )
        if len(texts) > limits.max_inputs:
            raise ApiError(
                400,
                f"{param} has {len(texts)} texts; at most {limits.max_inputs} per request",
                code="too_many_inputs",
                param=param,
            )
        for i, text in enumerate(texts):
            if len(text) > limits.max_input_chars:
                where = param if isinstance(value, str) else f"{param}[{i}]"
                raise ApiError(
                    400,
                    f"{where} has {len(text)} characters; at most {limits.max_input_chars} per text",
                    code="input_too_long",
                    param=where,
                )
        return texts

    async def encode(
        self, request: Request, side: Side, input_type: InputType, texts: list[str]
    ) -> Encoded:
        out = await self.wait(request, self.batcher.encode(side, input_type, texts))
        if out.counts.truncated:
            self.metrics.truncated.labels(side=side).inc(len(out.counts.truncated))
        return out

    async def wait(self, request: Request, work: Awaitable[Any]) -> Any:
        """``await work``, abandoned when the client disconnects or the timeout passes."""
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait(
                {task, watcher},
                timeout=self.config.limits.request_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            watcher.cancel()
        if task in done:
            return task.result()
        task.cancel()
        if watcher in done:
            raise _ClientGone
        raise Overloaded(
            f"no answer within {self.config.limits.request_timeout_s:g} s: the service is busy"
        )

    def search(self, body: SearchRequest) -> tuple[list[Any], str]:
        """On the model thread: the query's points and the mode used."""
        from lfm_qdrant import MultiVectorWriter, validate_collection_name
        from lfm_retrieval.pipeline import collection_vectors, default_mode

        if self.store is None:
            raise ApiError(
                404,
                "this service has no Qdrant store; start it with --path DIR or --url URL",
                code="no_store",
                param="collection",
            )
        try:
            validate_collection_name(body.collection)
            writer = self._writers.get(body.collection)
            if writer is None:
                vectors = collection_vectors(self.store, body.collection)
                writer = MultiVectorWriter(
                    self.store,
                    body.collection,
                    dense=self.encoders.get("dense") if "dense" in vectors else None,
                    colbert=self.encoders.get("colbert") if "colbert" in vectors else None,
                )
                self._writers[body.collection] = writer
            mode = body.mode or default_mode(
                ["dense", "colbert"],
                dense=writer.dense is not None,
                colbert=writer.colbert is not None,
            )
            points = writer.search(
                body.query,
                limit=body.limit,
                prefetch_limit=max(body.prefetch_limit, body.limit),
                query_filter=body.filter,
                mode=mode,
                chunks=body.chunks,
            )
        except TypeError as error:
            raise ApiError(400, str(error), code="invalid_search", param="filter") from None
        except CollectionError as error:
            self._writers.pop(body.collection, None)
            missing = "does not exist" in str(error)
            raise ApiError(
                404 if missing else 409,
                str(error),
                code="collection_not_found" if missing else "collection_mismatch",
                param="collection",
            ) from None
        except InputError as error:
            raise ApiError(400, str(error), code="invalid_search") from None
        except ValueError as error:  # a model with no vector in the collection, for one
            raise ApiError(400, str(error), code="invalid_search") from None
        return points, mode


def _score(encoder: ServedEncoder, query: np.ndarray, documents: list[np.ndarray]) -> np.ndarray:
    if isinstance(encoder, DenseEncoder):
        return encoder.score(query, np.stack(documents))
    return encoder.score(query, documents)


def _names(encoder: ServedEncoder, requested: str) -> bool:
    """Whether ``requested`` names ``encoder``: its id, or the last part of its folder."""
    name = str(encoder.model_name)
    return requested in (name, Path(name).name, name.rstrip("/").rsplit("/", 1)[-1])


class _VectorsResponse(JSONResponse):
    """JSON with numpy arrays written by orjson: 384 floats in microseconds, no ``tolist``."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _vector(vector: np.ndarray, encoding_format: str) -> Any:
    if encoding_format == "base64":
        # OpenAI's SDK decodes this with np.frombuffer(..., dtype="float32"): little-endian.
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode()
    return np.ascontiguousarray(vector, dtype=np.float32)


def _usage(out: Encoded) -> dict[str, Any]:
    tokens = sum(out.counts.tokens)
    return {
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        # Indices of the inputs cut to the model's length limit (vectors of their start).
        "truncated": out.counts.truncated,
    }


def _truncation_header(n: int) -> dict[str, str]:
    return {"X-Truncated-Inputs": str(n)} if n else {}


def _answer(payload: dict[str, Any], out: Encoded) -> Response:
    return _VectorsResponse(payload, headers=_truncation_header(len(out.counts.truncated)))


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body is read: only ``http.disconnect`` is left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# ----------------------------------------------------------------------- errors


def _error_body(message: str, kind: str, code: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _add_error_handlers(app: FastAPI, service: _Service) -> None:
    def respond(
        request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        service.metrics.errors.labels(
            endpoint=_endpoint(request.scope), type=body["error"]["code"]
        ).inc()
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return respond(
            request,
            exc.status,
            _error_body(exc.message, exc.kind, exc.code, exc.param),
            exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        message, code, param = _describe_invalid(exc.errors(), request.headers.get("content-type"))
        return respond(request, 400, _error_body(message, "invalid_request_error", code, param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 404:
            message += f"; the endpoints are {', '.join(_ENDPOINTS)}"
        return respond(
            request,
            exc.status_code,
            _error_body(message, "invalid_request_error", code, None),
            dict(exc.headers or {}),
        )

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> Response:
        return respond(
            request,
            503,
            _error_body(str(exc), "overloaded_error", "overloaded", None),
            {"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(_ClientGone)
    async def gone(request: Request, exc: _ClientGone) -> Response:
        # Nobody reads it; 499 is what nginx logs for a client that closed first.
        return respond(
            request,
            499,
            _error_body("client closed the request", "client_error", "client_closed", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return respond(
            request,
            500,
            _error_body(
                f"internal error ({type(exc).__name__}); see the service log",
                "server_error",
                "internal_error",
                None,
            ),
        )


# A loc part that names a member of a union (``str``, ``list[str]``), not a field.
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|dict|list)(\[.*\])?$|-")


def _describe_invalid(
    errors: Sequence[Any], content_type: str | None
) -> tuple[str, str, str | None]:
    """``(message, code, param)`` of a request pydantic refused, naming the field and item."""
    if not errors:
        return "the body is invalid", "invalid_body", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        where = first.get("loc", ("body", 0))[-1]
        reason = first.get("ctx", {}).get("error", first.get("msg"))
        return f"the body is not valid JSON (at character {where}): {reason}", "invalid_json", None
    by_param: dict[str, list[str]] = {}
    for error in errors:
        parts = []
        for part in error.get("loc", ())[1:]:  # loc starts with "body"
            if isinstance(part, int):
                parts.append(f"[{part}]")
            elif not _UNION_TAG.search(str(part)):
                parts.append(f".{part}")
        by_param.setdefault("".join(parts).lstrip("."), []).append(str(error.get("msg")))
    # The most specific place wins: input[3] over input.
    param = max(by_param, key=len)
    if not param:
        message = "the body must be a JSON object"
        if "json" not in (content_type or ""):
            message += f" sent as Content-Type: application/json (not {content_type or 'none'!r})"
        return message, "invalid_body", None
    reasons = list(dict.fromkeys(by_param[param]))
    message = f"{param}: {', or '.join(reasons)}"
    others = len(by_param) - 1
    if others and len(param.split("[")[0]) == len(param):
        message += f" (and {others} more problem{'s' if others > 1 else ''})"
    return message, "invalid_value", param


# -------------------------------------------------------------------- middleware


def _endpoint(scope: Scope) -> str:
    path = scope.get("path", "")
    return path if path in _ENDPOINTS else "other"


class _RequestMetrics:
    """Counts every response by endpoint and status, times it, and counts requests in flight."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        self.metrics.requests_in_flight += 1

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests_in_flight -= 1
            endpoint = _endpoint(scope)
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - started)


class _BodyLimit:
    """413 for a body over ``max_bytes``: from ``Content-Length`` before reading, else while
    reading a chunked body (nothing past the limit is buffered)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not refused:
                    refused = True
                    await self._refuse(send)
                    # The app sees a client that left; whatever it answers is dropped below.
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)

    async def _refuse(self, send: Send) -> None:
        body = JSONResponse(
            _error_body(
                f"the request body is over {self.max_bytes} bytes",
                "invalid_request_error",
                "body_too_large",
                None,
            ),
            status_code=413,
        )
        await body({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}

"""The FastAPI application: routes, errors in OpenAI's shape, limits, auth and metrics."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lfm_core import (
    CollectionError,
    DenseEncoder,
    InputError,
    InputType,
    rank_scores,
    validate_texts,
)

from .batching import BatchingOptions, EncodeBatcher, Encoded, Overloaded, ServedEncoder, Side
from .errors import ApiError, error_body, error_responses
from .explaining import explain_rerank
from .inputs import aliases_of, refuse_over_long, resolve_input_type, split_alias
from .metrics import ServiceMetrics
from .playground import add_collections_route, add_playground
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
    "/v1/embed",
    "/v2/embed",
    "/v2/rerank",
    "/v1/collections",
    "/",
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
        api_key: when set, every path but ``/health`` wants ``Authorization: Bearer KEY``,
            checked before the body is read (``401`` otherwise).
        limits: request limits.
        batching: batching across requests, and the queue bound.
        served_model_names: the id each model is served as (``GET /v1/models``, the
            ``model`` field), by side (``"dense"``, ``"colbert"``); default
            :func:`served_model_name` of the encoder's ``model_name``.
        playground: serve the search playground page at ``/`` (behind ``api_key`` too).
    """

    api_key: str | None = None
    playground: bool = True
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    served_model_names: Mapping[str, str] = field(default_factory=dict)


def served_model_name(model_name_or_path: str) -> str:
    """The id a model is served as by default: a hub id as is, a local folder by its name.

    A client never sees the server's file paths (``/srv/models/lfm`` is served as ``lfm``).

    >>> served_model_name("LiquidAI/LFM2.5-Embedding-350M")
    'LiquidAI/LFM2.5-Embedding-350M'
    >>> served_model_name("/")
    'model'
    """
    path = Path(model_name_or_path)
    if path.is_absolute() or path.exists():
        return path.resolve().name or "model"
    return model_name_or_path


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

    app = FastAPI(
        title="lfm-retrieval",
        summary="LFM2.5 dense embeddings, ColBERT vectors, rerank and search",
        lifespan=lifespan,
        # With an API key these are behind it too (the middleware guards every path).
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = service
    _add_error_handlers(app, service)
    # Starlette runs the last added first: metrics see every answer, then the key is checked
    # before anything reads the body, then the body's size.
    app.add_middleware(_BodyLimit, max_bytes=service.config.limits.max_body_bytes)
    if service.config.api_key is not None:
        app.add_middleware(_ApiKey, key=service.config.api_key, metrics=service.metrics)
    app.add_middleware(_RequestMetrics, metrics=service.metrics)
    app.openapi = partial(_openapi, app, bearer=service.config.api_key is not None)  # type: ignore[method-assign]
    encode_errors = error_responses(400, 401, 404, 413, 503)

    @app.get("/health", responses=error_responses(503))
    async def health() -> dict[str, Any]:
        """Liveness: ``{"status": "ok"}`` while the model thread takes work."""
        if not service.batcher.running:
            raise ApiError(
                503, "the model worker has stopped", code="unhealthy", kind="server_error"
            )
        return {"status": "ok", "queued_texts": service.batcher.queued_texts}

    @app.get("/v1/models", responses=error_responses(401))
    async def list_models() -> dict[str, Any]:
        """The loaded models, in OpenAI's list shape (``kind``: dense or colbert, ``dim``)."""
        return {
            "object": "list",
            "data": [
                _model_entry(side, encoder, service.names[side])
                for side, encoder in service.encoders.items()
            ],
        }

    @app.get("/v1/models/{model_id:path}", responses=error_responses(401, 404))
    async def get_model(model_id: str) -> dict[str, Any]:
        """One loaded model by id, folder name or alias (``MODEL:query``), as OpenAI's."""
        name, _ = split_alias(model_id)
        for side, encoder in service.encoders.items():
            if name is not None and service._names(side, name):
                return _model_entry(side, encoder, service.names[side])
        raise ApiError(
            404,
            f"model {model_id!r} is not served here; GET /v1/models lists "
            f"{', '.join(repr(n) for n in service.names.values())}",
            code="model_not_found",
            param="model",
        )

    @app.get("/metrics", response_class=PlainTextResponse, responses=error_responses(401))
    async def metrics() -> Response:
        """Prometheus text: requests, errors, tokens, batch sizes, queue, latency."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/embeddings", responses=encode_errors)
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        """OpenAI-compatible embeddings from the dense model (``MODEL:query``: query prompt)."""
        name, alias_type = split_alias(body.model)
        encoder = service.model_for("dense", name)
        input_type = resolve_input_type(body.input_type, alias_type)
        if body.dimensions is not None and body.dimensions != encoder.dim:
            raise ApiError(
                400,
                f"dimensions={body.dimensions} is not supported: {service.names['dense']} gives "
                f"{encoder.dim}-d vectors and cannot shorten them; leave dimensions out",
                code="unsupported_dimensions",
                param="dimensions",
            )
        texts = service.check_texts(body.input, "input")
        out = await service.encode(request, "dense", input_type, texts)
        if not body.truncate:
            await refuse_over_long(
                service,
                encoder,
                out,
                texts,
                param="input",
                single=isinstance(body.input, str),
                how_to_truncate='"truncate": true',
            )
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(v, body.encoding_format)}
            for i, v in enumerate(out.vectors)
        ]
        return _answer(
            {"object": "list", "data": data, "model": service.names["dense"], **_usage(out)}, out
        )

    @app.post("/v1/multivector", responses=encode_errors)
    async def multivector(body: MultivectorRequest, request: Request) -> Response:
        """ColBERT token vectors, one ``[n_tokens, dim]`` matrix per input."""
        encoder = service.model_for("colbert", body.model)
        texts = service.check_texts(body.input, "input")
        out = await service.encode(request, "colbert", body.input_type, texts)
        if body.input_type == "document" and not body.truncate:
            await refuse_over_long(
                service,
                encoder,
                out,
                texts,
                param="input",
                single=isinstance(body.input, str),
                how_to_truncate='"truncate": true',
            )
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
            {"object": "list", "data": data, "model": service.names["colbert"], **_usage(out)},
            out,
        )

    @app.post("/v1/rerank", responses=encode_errors)
    async def rerank(body: RerankRequest, request: Request) -> Response:
        """Rank ``documents`` for ``query``: ColBERT MaxSim when loaded, else dense cosine."""
        side: Side = "colbert" if "colbert" in service.encoders else "dense"
        encoder = service.model_for(side, body.model)
        (query_text,) = service.check_texts(body.query, "query")
        docs = service.check_texts(body.documents, "documents")
        with_text = [i for i, doc in enumerate(docs) if doc.strip()]
        query = await service.encode(request, side, "query", [query_text])
        scores = np.zeros(0, dtype=np.float32)
        documents = None
        if with_text:
            documents = await service.encode(
                request, side, "document", [docs[i] for i in with_text]
            )
            scores = await service.batcher.call(
                partial(_score, encoder, query.vectors[0], documents.vectors)
            )
        explained: dict[int, Any] = {}
        if body.explain and documents is not None:
            explained = await service.batcher.call(
                partial(explain_rerank, encoder, body.query, docs, with_text, query, documents)
            )
        results = []
        for index, score in rank_scores(scores, with_text, len(docs), body.top_n):
            item: dict[str, Any] = {"index": index, "relevance_score": score}
            if body.return_documents:
                item["document"] = {"text": docs[index]}
            if body.explain:
                item["explain"] = explained.get(index)
            results.append(item)
        tokens = sum(query.counts.tokens) + (sum(documents.counts.tokens) if documents else 0)
        truncated = [] if documents is None else [with_text[i] for i in documents.counts.truncated]
        payload = {
            "model": service.names[side],
            "results": results,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "truncated": truncated,
        }
        return JSONResponse(payload, headers=_truncation_header(len(truncated)))

    @app.post("/v1/search", responses=error_responses(400, 401, 404, 409, 413, 503))
    async def search(body: SearchRequest, request: Request) -> Response:
        """Search a collection written by lfm_qdrant: ids, scores and payloads, best first."""
        service.check_texts(body.query, "query")
        results, mode = await service.wait(
            request, service.batcher.call(lambda: service.search(body))
        )
        hits = [
            {
                "id": p.id,
                "score": p.score,
                "payload": p.payload if body.with_payload else None,
                **(
                    {"legs": {leg: r.model_dump() for leg, r in p.legs.items()}}
                    if body.explain
                    else {}
                ),
            }
            for p in results
        ]
        if body.explain:
            # The writer's explain path: token matches from the hits' stored ColBERT vectors.
            for hit, point in zip(hits, results, strict=True):
                why = getattr(point, "explanation", None)
                hit["explain"] = None if why is None else why.to_dict()
        return JSONResponse({"collection": body.collection, "mode": mode, "results": hits})

    add_collections_route(app, service)
    if service.config.playground:
        add_playground(app, service)

    from .cohere import add_cohere_routes

    add_cohere_routes(app, service)
    return app


def _model_entry(side: Side, encoder: ServedEncoder, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "lfm-retrieval",
        "kind": side,
        "dim": encoder.dim,
    }
    if side == "dense":
        # Stock OpenAI clients send no input_type: name the alias of the side instead.
        entry["aliases"] = aliases_of(name)
    return entry


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
        self.names: dict[Side, str] = {
            side: config.served_model_names.get(side) or served_model_name(str(e.model_name))
            for side, e in self.encoders.items()
        }
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
        if requested is None or self._names(side, requested):
            return encoder
        for other_side in self.encoders:
            if self._names(other_side, requested):
                raise ApiError(
                    400,
                    f"model {requested!r} is the {other_side} model; this endpoint serves the "
                    f"{side} model {self.names[side]!r}",
                    code="wrong_model_kind",
                    param="model",
                )
        raise ApiError(
            404,
            f"model {requested!r} is not served here; GET /v1/models lists "
            f"{', '.join(repr(name) for name in self.names.values())}",
            code="model_not_found",
            param="model",
        )

    async def authorize(self, request: Request) -> None:
        """``401`` unless the request carries the key (a dependency for routes added later;
        the middleware has checked it already, before the body)."""
        key = self.config.api_key
        if key is not None and not _key_matches(request.scope, key.encode()):
            raise ApiError(
                401,
                _UNAUTHORIZED,
                code="invalid_api_key",
                kind="authentication_error",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def _names(self, side: Side, requested: str) -> bool:
        """Whether ``requested`` names the model of ``side``: its served id or the one it was
        loaded by (a client that knows the path may send it; the service never shows it)."""
        return requested in (self.names[side], str(self.encoders[side].model_name))

    def check_texts(self, value: str | Sequence[str], param: str) -> list[str]:
        """The texts of ``param``, checked against the limits.

        Unpaired UTF-16 surrogates (legal in JSON as ``"\\ud800"``, not encodable) are
        repaired as the library repairs them (to U+FFFD, :func:`lfm_core.validate_texts`),
        so a text echoed back is the text that was encoded.
        """
        texts = validate_texts([value] if isinstance(value, str) else value, param)
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
        from lfm_qdrant import FilterError, MultiVectorWriter, validate_collection_name
        from lfm_retrieval.pipeline import choose_mode, collection_legs

        if self.store is None:
            raise ApiError(
                404,
                "this service has no Qdrant store; start it with --path DIR or --url URL",
                code="no_store",
                param="collection",
            )
        try:
            validate_collection_name(body.collection)
        except InputError as error:
            raise ApiError(400, str(error), code="invalid_collection", param="collection") from None
        try:
            cached = self._writers.get(body.collection)
            if cached is None:
                legs = collection_legs(self.store, body.collection)
                writer = MultiVectorWriter(
                    self.store,
                    body.collection,
                    dense=self.encoders.get("dense") if "dense" in legs else None,
                    colbert=self.encoders.get("colbert") if "colbert" in legs else None,
                )
                cached = self._writers[body.collection] = (writer, legs)
            writer, legs = cached
            mode = choose_mode(
                body.mode,
                legs,
                dense=writer.dense is not None,
                colbert=writer.colbert is not None,
            )
            points = writer.search(
                body.query,
                limit=body.limit,
                prefetch_limit=max(body.prefetch_limit, body.limit),
                query_filter=body.filter,
                mode=mode,
                fusion=body.fusion,
                explain=body.explain,
                chunks=body.chunks,
            )
        except FilterError as error:
            param = f"filter.{error.path}" if error.path else "filter"
            raise ApiError(400, error.named("filter"), code="invalid_filter", param=param) from None
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


def _basic_password(credentials: bytes) -> bytes:
    """The password of HTTP Basic credentials (``b""`` when they are not base64)."""
    try:
        return base64.b64decode(credentials.strip(), validate=True).partition(b":")[2]
    except ValueError:  # binascii.Error is a ValueError
        return b""


def _score(encoder: ServedEncoder, query: np.ndarray, documents: list[np.ndarray]) -> np.ndarray:
    if isinstance(encoder, DenseEncoder):
        return encoder.score(query, np.stack(documents))
    return encoder.score(query, documents)


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


def _add_error_handlers(app: FastAPI, service: _Service) -> None:
    def respond(
        request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        from .cohere import cohere_error_body, is_cohere_path

        service.metrics.errors.labels(
            endpoint=_endpoint(request.scope), type=body["error"]["code"]
        ).inc()
        if is_cohere_path(request.url.path):
            body = cohere_error_body(body)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return respond(
            request,
            exc.status,
            error_body(exc.message, exc.kind, exc.code, exc.param),
            exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        message, code, param = _describe_invalid(exc.errors(), request.headers.get("content-type"))
        return respond(request, 400, error_body(message, "invalid_request_error", code, param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # 400: FastAPI could not read the body (not UTF-8, nested too deep, a huge number).
        code = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 404:
            message += f"; the endpoints are {', '.join(_ENDPOINTS)}"
        return respond(
            request,
            exc.status_code,
            error_body(message, "invalid_request_error", code, None),
            dict(exc.headers or {}),
        )

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> Response:
        return respond(
            request,
            503,
            error_body(str(exc), "overloaded_error", "overloaded", None),
            {"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(_ClientGone)
    async def gone(request: Request, exc: _ClientGone) -> Response:
        # Nobody reads it; 499 is what nginx logs for a client that closed first.
        return respond(
            request,
            499,
            error_body("client closed the request", "client_error", "client_closed", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return respond(
            request,
            500,
            error_body(
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


_UNAUTHORIZED = "missing or wrong API key: send Authorization: Bearer KEY"


def _key_matches(scope: Scope, key: bytes) -> bool:
    """Whether the ``Authorization`` header is ``Bearer KEY``, compared as bytes in constant
    time (a header may hold any byte; a ``str`` comparison refuses non-ASCII with TypeError)."""
    value = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
    scheme, _, token = value.partition(b" ")
    if scheme.lower() == b"basic":  # a browser on the playground page: any user, KEY
        token, scheme = _basic_password(token), b"bearer"
    return scheme.lower() == b"bearer" and secrets.compare_digest(token.strip(), key)


class _ApiKey:
    """``401`` for a request without the key, on every path but ``/health``, before the
    app reads or parses the body: a client without the key learns nothing about the API."""

    def __init__(self, app: ASGIApp, key: str, metrics: ServiceMetrics) -> None:
        self.app = app
        self.key = key.encode()
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health" or _key_matches(scope, self.key):
            await self.app(scope, receive, send)
            return
        self.metrics.errors.labels(endpoint=_endpoint(scope), type="invalid_api_key").inc()
        # The playground's pages ask for Basic: the one scheme a browser asks its user for.
        page = scope["path"] == "/" or scope["path"].startswith("/playground/")
        challenge = 'Basic realm="lfm-retrieval", charset="UTF-8"' if page else "Bearer"
        response = JSONResponse(
            error_body(_UNAUTHORIZED, "authentication_error", "invalid_api_key", None),
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, _no_receive, send)


def _openapi(app: FastAPI, *, bearer: bool) -> dict[str, Any]:
    """FastAPI's document without the ``422`` it adds to every route with a body (the
    service answers ``400``), errors always as JSON (FastAPI gives them the route's media
    type: text/plain on ``/metrics``), and with the bearer scheme when the service has a key."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    from .cohere import COHERE_PATHS

    error_schema = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
    # Cohere's routes answer Cohere's body; the key and size checks before them, OpenAI's.
    cohere_schema = {
        "schema": {
            "anyOf": [
                {"$ref": "#/components/schemas/ErrorBody"},
                {"$ref": "#/components/schemas/CohereErrorBody"},
            ]
        }
    }
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for status, response in responses.items():
                if status[0] in "45":  # errors are JSON even where the route's answer is not
                    body = cohere_schema if path in COHERE_PATHS else error_schema
                    response["content"] = {"application/json": body}
            if bearer and path != "/health":
                operation["security"] = [{"bearer": []}]
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["CohereErrorBody"] = {
        "title": "CohereErrorBody",
        "description": "The error body of Cohere's routes (Cohere's shape).",
        "type": "object",
        "required": ["id", "message"],
        "properties": {
            "id": {"type": "string"},
            "message": {"type": "string"},
            "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    if bearer:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    app.openapi_schema = schema
    return schema


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
            error_body(
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

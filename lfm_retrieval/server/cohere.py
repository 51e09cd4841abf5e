"""Cohere's API: ``POST /v1/embed``, ``/v2/embed`` and ``/v2/rerank``, with Cohere's error body.

Shapes follow the cohere SDK's own types (cohere 5.x: ``EmbedByTypeResponse``,
``EmbeddingsFloatsEmbedResponse``, ``V2RerankResponse``), so ``cohere.Client``,
``cohere.ClientV2`` and what is built on them (langchain-cohere, LlamaIndex's
``CohereRerank``) work unchanged.

- ``input_type``: ``search_query`` gets the model's query prompt; ``search_document``,
  ``classification`` and ``clustering`` the document prompt (a symmetric task compares
  texts of one kind); ``image`` is refused.
- ``embedding_types``: ``float``, ``base64`` (float32 bytes), ``binary`` / ``ubinary``
  (the sign bit of each dimension, packed 8 per byte, as Cohere packs them). ``int8`` and
  ``uint8`` need per-dimension ranges calibrated on a corpus, which the model does not
  ship, so they are a 400 naming ``embedding_types`` rather than numbers that would not
  match Cohere's.
- ``truncate``: ``END`` (Cohere's default) keeps the start of an over-long text, as the
  encoders do, and ``meta.warnings`` names it; ``NONE`` refuses it (400 with its token
  count); ``START`` is not supported.
- ``max_tokens`` / ``max_tokens_per_doc``: texts are cut at the model's own limit; a
  value under that limit is a 400 (the service cannot cut shorter), one at or over it is
  accepted.
- Rerank scores are the same as ``/v1/rerank``'s (ColBERT MaxSim sums, dense cosines),
  not Cohere's 0..1 calibration; the order is what clients use.

Errors on these routes have Cohere's body, ``{"id", "message"}`` (plus our ``code`` and
``param``), with the same statuses as the OpenAI routes.
"""

from __future__ import annotations

import base64
import uuid
from functools import partial
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from lfm_core import DenseEncoder, InputType, rank_scores

from .app import ApiError, _score, _Service, _VectorsResponse
from .batching import Encoded, ServedEncoder

# app.py imports this module inside create_app, once app.py itself is loaded.
from .errors import error_responses
from .inputs import refuse_over_long

__all__ = [
    "COHERE_PATHS",
    "CohereEmbedRequest",
    "CohereRerankRequest",
    "add_cohere_routes",
    "cohere_error_body",
    "is_cohere_path",
]

COHERE_PATHS = ("/v1/embed", "/v2/embed", "/v2/rerank")

CohereInputType = Literal[
    "search_document", "search_query", "classification", "clustering", "image"
]
EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
_SUPPORTED_TYPES = ("float", "base64", "binary", "ubinary")


class _CohereRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class CohereEmbedRequest(_CohereRequest):
    """``POST /v1/embed`` and ``/v2/embed``: the cohere SDK's ``embed`` arguments."""

    texts: list[StrictStr] | None = Field(None, description="the texts to embed")
    images: list[Any] | None = Field(None, description="not supported: a 400")
    inputs: list[Any] | None = Field(None, description="not supported: send texts")
    model: StrictStr | None = Field(None, description="the dense model's id (GET /v1/models)")
    input_type: CohereInputType | None = Field(
        None, description="search_query: the query prompt; others: the document prompt"
    )
    embedding_types: list[EmbeddingType] | None = Field(
        None, description="float, base64, binary, ubinary (v2 default: float)"
    )
    truncate: Literal["NONE", "START", "END"] | None = Field(
        None, description="END (default): cut over-long texts at the model's limit; NONE: refuse"
    )
    max_tokens: StrictInt | None = Field(None, ge=1)
    output_dimension: StrictInt | None = Field(None, ge=1)


class CohereRerankRequest(_CohereRequest):
    """``POST /v2/rerank``: the cohere SDK's v2 ``rerank`` arguments."""

    query: StrictStr
    documents: list[StrictStr]
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(None, ge=1, description="keep the best top_n (default all)")
    max_tokens_per_doc: StrictInt | None = Field(None, ge=1)
    return_documents: StrictBool = False


def is_cohere_path(path: str) -> bool:
    """Whether ``path`` is one of Cohere's routes (its errors get Cohere's body)."""
    return path in COHERE_PATHS


def cohere_error_body(openai_body: dict[str, Any]) -> dict[str, Any]:
    """Cohere's error body from the OpenAI-shaped one the service builds."""
    error = openai_body["error"]
    return {
        "id": str(uuid.uuid4()),
        "message": error["message"],
        "code": error["code"],
        "param": error["param"],
    }


def add_cohere_routes(app: FastAPI, service: _Service) -> None:
    """Register Cohere's embed and rerank routes on ``app``, behind ``auth``."""

    @app.post("/v1/embed", responses=error_responses(400, 401, 404, 413, 503))
    async def embed_v1(body: CohereEmbedRequest, request: Request) -> Response:
        """Cohere v1 embed: ``embeddings_floats`` unless ``embedding_types`` is given."""
        return await _embed(service, request, body, version="1")

    @app.post("/v2/embed", responses=error_responses(400, 401, 404, 413, 503))
    async def embed_v2(body: CohereEmbedRequest, request: Request) -> Response:
        """Cohere v2 embed: always ``embeddings`` by type (``float`` by default)."""
        return await _embed(service, request, body, version="2")

    @app.post("/v2/rerank", responses=error_responses(400, 401, 404, 413, 503))
    async def rerank_v2(body: CohereRerankRequest, request: Request) -> Response:
        """Cohere v2 rerank: ColBERT MaxSim when loaded, else dense cosine; best first."""
        return await _rerank(service, request, body)


async def _embed(
    service: _Service, request: Request, body: CohereEmbedRequest, *, version: str
) -> Response:
    encoder = service.model_for("dense", body.model)
    for field in ("images", "inputs"):
        if getattr(body, field):
            raise ApiError(
                400,
                f"{field} is not supported: {service.names['dense']} embeds text; send texts",
                code="unsupported_input",
                param=field,
            )
    if body.texts is None:
        raise ApiError(400, "texts is required", code="missing_texts", param="texts")
    if body.input_type == "image":
        raise ApiError(
            400,
            "input_type='image' is not supported: use search_query or search_document",
            code="unsupported_input_type",
            param="input_type",
        )
    kinds = body.embedding_types or (["float"] if version == "2" else [])
    for i, kind in enumerate(kinds):
        if kind not in _SUPPORTED_TYPES:
            raise ApiError(
                400,
                f"embedding_types[{i}]={kind!r} is not supported: int8 and uint8 need ranges "
                "calibrated on a corpus, which this model does not ship; ask for "
                f"{', '.join(_SUPPORTED_TYPES)}",
                code="unsupported_embedding_type",
                param=f"embedding_types[{i}]",
            )
    if body.output_dimension is not None and body.output_dimension != encoder.dim:
        raise ApiError(
            400,
            f"output_dimension={body.output_dimension} is not supported: "
            f"{service.names['dense']} gives {encoder.dim}-d vectors",
            code="unsupported_dimensions",
            param="output_dimension",
        )
    _check_max_tokens(encoder, body.max_tokens, "max_tokens")
    if body.truncate == "START":
        raise ApiError(
            400,
            "truncate='START' is not supported: the model keeps the start of a long text; "
            "send END (keep the start) or NONE (refuse)",
            code="unsupported_truncate",
            param="truncate",
        )
    texts = service.check_texts(body.texts, "texts")
    input_type: InputType = "query" if body.input_type == "search_query" else "document"
    out = await service.encode(request, "dense", input_type, texts)
    if body.truncate == "NONE":
        await refuse_over_long(
            service,
            encoder,
            out,
            texts,
            param="texts",
            single=False,
            how_to_truncate="truncate='END'",
        )
    payload: dict[str, Any] = {"id": str(uuid.uuid4()), "texts": texts}
    if kinds:
        payload["response_type"] = "embeddings_by_type"
        payload["embeddings"] = {kind: _as_kind(out.vectors, kind) for kind in dict.fromkeys(kinds)}
    else:
        payload["response_type"] = "embeddings_floats"
        payload["embeddings"] = _as_kind(out.vectors, "float")
    payload["meta"] = _meta(version, out, "texts", encoder)
    return _VectorsResponse(payload)


async def _rerank(service: _Service, request: Request, body: CohereRerankRequest) -> Response:
    side: Literal["dense", "colbert"] = "colbert" if "colbert" in service.encoders else "dense"
    encoder = service.model_for(side, body.model)
    _check_max_tokens(encoder, body.max_tokens_per_doc, "max_tokens_per_doc")
    service.check_texts([body.query], "query")
    docs = service.check_texts(body.documents, "documents")
    with_text = [i for i, doc in enumerate(docs) if doc.strip()]
    query = await service.encode(request, side, "query", [body.query])
    scores = np.zeros(0, dtype=np.float32)
    documents: Encoded | None = None
    if with_text:
        documents = await service.encode(request, side, "document", [docs[i] for i in with_text])
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
    meta: dict[str, Any] = {
        "api_version": {"version": "2"},
        "billed_units": {"search_units": 1},
        "tokens": {"input_tokens": tokens, "output_tokens": 0},
    }
    if truncated:
        meta["warnings"] = [_cut_warning("documents", i, encoder) for i in truncated]
    return _VectorsResponse({"id": str(uuid.uuid4()), "results": results, "meta": meta})


def _check_max_tokens(encoder: ServedEncoder, value: int | None, param: str) -> None:
    limit = encoder.max_length if isinstance(encoder, DenseEncoder) else encoder.document_length
    if value is not None and value < limit:
        raise ApiError(
            400,
            f"{param}={value} is under the model's own limit of {limit} tokens, where this "
            f"service cuts texts; it cannot cut them shorter: leave {param} out or send "
            f"at least {limit}",
            code="unsupported_max_tokens",
            param=param,
        )


def _as_kind(vectors: list[np.ndarray], kind: str) -> Any:
    matrix = np.stack(vectors).astype(np.float32, copy=False)
    if kind == "float":
        return matrix
    if kind == "base64":
        return [
            base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode()
            for row in matrix
        ]
    # Cohere's binary kinds: the sign bit of each dimension, 8 per byte, first dimension
    # in the high bit; "binary" is the same byte minus 128, as a signed int8.
    packed = np.packbits(matrix > 0, axis=-1)
    return packed if kind == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)


def _meta(version: str, out: Encoded, param: str, encoder: ServedEncoder) -> dict[str, Any]:
    tokens = sum(out.counts.tokens)
    meta: dict[str, Any] = {
        "api_version": {"version": version},
        "billed_units": {"input_tokens": tokens},
        "tokens": {"input_tokens": tokens, "output_tokens": 0},
    }
    if out.counts.truncated:
        meta["warnings"] = [_cut_warning(param, i, encoder) for i in out.counts.truncated]
    return meta


def _cut_warning(param: str, index: int, encoder: ServedEncoder) -> str:
    limit = encoder.max_length if isinstance(encoder, DenseEncoder) else encoder.document_length
    return f"{param}[{index}] was truncated to the model's limit of {limit} tokens"

"""``lfm-retrieval serve``: one HTTP service for dense embeddings, ColBERT vectors, rerank and search.

Endpoints (schemas follow the API each one copies, so existing clients work unchanged):

- ``POST /v1/embeddings``: OpenAI's, plus ``input_type`` (``query`` | ``document``) and
  ``truncate``; the model's aliases ``MODEL:query`` / ``MODEL:document`` pick the prompt
  for clients that cannot send ``input_type``;
- ``POST /v1/embed``, ``/v2/embed``, ``/v2/rerank``: Cohere's (:mod:`.cohere`);
- ``POST /v1/multivector``: ColBERT token vectors per input;
- ``POST /v1/rerank``: Cohere's / Jina's / TEI's shape, ColBERT MaxSim (else dense cosine);
- ``POST /v1/search``: a collection written by ``lfm_qdrant``;
- ``GET /health``, ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /metrics`` (Prometheus).

Requests that arrive together share one packed forward (:mod:`.batching`).

Usage::

    from lfm_retrieval.server import ServiceConfig, create_app, serve

    app = create_app(dense=dense_encoder, colbert=colbert_encoder, config=ServiceConfig())
    serve(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

from typing import Any

from .app import ServiceConfig, ServiceLimits, create_app, served_model_name
from .batching import BatchingOptions, EncodeBatcher, Overloaded
from .errors import ERROR_RESPONSES, ApiError, ErrorBody, error_responses
from .metrics import ServiceMetrics
from .protocol import with_header_timeout

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "BatchingOptions",
    "EncodeBatcher",
    "ErrorBody",
    "Overloaded",
    "ServiceConfig",
    "ServiceLimits",
    "ServiceMetrics",
    "create_app",
    "error_responses",
    "serve",
    "served_model_name",
    "with_header_timeout",
]


def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    access_log: bool = False,
    graceful_shutdown_s: float = 30.0,
    header_timeout_s: float = 30.0,
    keep_alive_s: int = 5,
) -> None:
    """Run ``app`` with uvicorn until SIGINT or SIGTERM.

    A connection that has not sent a whole request head ``header_timeout_s`` after it
    opened (or after a new request's first byte) is closed, as is one idle between requests
    for ``keep_alive_s``: slow or silent clients cannot hold the file descriptors.

    On SIGTERM the server stops accepting connections and finishes the requests in
    flight (for at most ``graceful_shutdown_s``) before the model threads stop. Objects
    alive at the call (the loaded models) are moved out of the garbage collector's reach
    (``gc.freeze``), so a full collection does not stall requests for a quarter second.
    """
    import gc

    import uvicorn

    # The models, torch and FastAPI leave ~411k long-lived objects; a full collection walks
    # them all with the GIL held (233 ms with MiniLM loaded, benchmarks/bench_cpu_serving.py):
    # every request in flight and both model threads stall, the p99 of the next run's tail.
    # Frozen objects are never walked; what requests allocate is still collected.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=int(graceful_shutdown_s),
        timeout_keep_alive=keep_alive_s,
        http=with_header_timeout(header_timeout_s),
    )
    uvicorn.Server(config).run()

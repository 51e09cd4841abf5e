"""The service's Prometheus metrics, on a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServiceMetrics"]

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServiceMetrics:
    """Counters and histograms that ``GET /metrics`` exposes.

    Args:
        registry: where to register; default a new :class:`CollectorRegistry`, so two
            services in one process (tests) never share counts.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lfm_requests", "HTTP requests answered", ["endpoint", "status"], registry=r
        )
        self.errors = Counter(
            "lfm_errors",
            "requests answered with an error, by error type",
            ["endpoint", "type"],
            registry=r,
        )
        self.latency = Histogram(
            "lfm_request_seconds",
            "time from request to response",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "lfm_tokens", "tokens run through a model", ["side", "input_type"], registry=r
        )
        self.batch_texts = Histogram(
            "lfm_batch_texts", "texts per model call", ["side"], buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "lfm_batch_requests",
            "requests merged into one model call",
            ["side"],
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.queue_texts = Gauge("lfm_queue_texts", "texts waiting for the model", registry=r)
        # Kept by the service's middleware; the batcher reads it to know whether anyone
        # else could still join a batch.
        self.requests_in_flight = 0
        Gauge("lfm_requests_in_flight", "HTTP requests being handled", registry=r).set_function(
            lambda: self.requests_in_flight
        )
        self.truncated = Counter(
            "lfm_truncated_inputs", "inputs cut to the model's length limit", ["side"], registry=r
        )

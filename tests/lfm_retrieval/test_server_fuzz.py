"""Schemathesis over the service in-process: the OpenAPI document tells the truth.

Requests generated from ``/openapi.json`` (valid ones, and ones that break the schema) go
to the ASGI app over the tiny models and an Edge collection. Every answer must be a
declared status with its declared content type and schema, never a 5xx, and a request
that breaks the schema must be refused. ``LFM_FUZZ_EXAMPLES`` raises the number of
requests per operation and mode (default 25: about 30 s on 2 cores).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_retrieval.server import ServiceConfig, ServiceLimits, create_app

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = int(os.environ.get("LFM_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def schema(tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder, edge_store: Any) -> Any:
    config = ServiceConfig(api_key=KEY, limits=ServiceLimits(max_inputs=16, max_input_chars=2000))
    app = create_app(tiny_dense, tiny_colbert, store=edge_store, config=config)
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)


OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/v1/models"),
    ("GET", "/metrics"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/multivector"),
    ("POST", "/v1/rerank"),
    ("POST", "/v1/search"),
    ("GET", "/v1/models/{model_id}"),
    ("GET", "/v1/collections"),
    ("POST", "/v1/embed"),
    ("POST", "/v2/embed"),
    ("POST", "/v2/rerank"),
]


def test_the_document_lists_the_operations_fuzzed_here(schema: Any) -> None:
    listed = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [
        (method, path, mode)
        for method, path in OPERATIONS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        # /health takes no input and no key: there is nothing to break.
        if not (path == "/health" and mode is GenerationMode.NEGATIVE)
    ],
)
def test_generated_requests_get_declared_answers_and_no_5xx(
    schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    operation = schema[path][method]
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    run()
    assert seen and max(seen) < 500, seen

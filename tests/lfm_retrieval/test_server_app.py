"""The service in-process: batching across requests, limits, errors, overload, auth.

The app runs on httpx's ASGI transport with its lifespan, so concurrent requests share
one event loop as they would under uvicorn; tests/lfm_retrieval/test_server_process.py
runs the real process.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest

from lfm_core import BatchingConfig, DenseEncoder, LateInteractionEncoder, TokenCounts
from lfm_retrieval.server import (
    BatchingOptions,
    EncodeBatcher,
    Overloaded,
    ServiceConfig,
    ServiceLimits,
    ServiceMetrics,
    create_app,
)

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@asynccontextmanager
async def client_for(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH
        ) as client:
            yield client


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def texts_of(n: int, prefix: str = "text") -> list[str]:
    return [f"{prefix} {i} " + "word " * (i % 7) for i in range(n)]


# ------------------------------------------------------------------ batching


class SlowDense:
    """A stand-in encoder that records each call and can be held at a gate."""

    model_name = "slow"
    dim = 2
    batching = BatchingConfig()

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.active = 0  # calls inside encode right now
        self.most_active = 0
        self._lock = threading.Lock()

    def count_tokens(self, texts: list[str], *, input_type: str) -> TokenCounts:
        return TokenCounts([len(t) for t in texts], [])

    def encode_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self.gate.wait(10)
            time.sleep(self.delay_s)
        finally:
            with self._lock:
                self.active -= 1
        self.calls.append(list(texts))
        if any(t == "boom" for t in texts):
            raise RuntimeError("boom")
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)

    encode_queries = encode_documents


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    async def main() -> None:
        enc = SlowDense()
        batcher = EncodeBatcher({"dense": enc}, BatchingOptions(max_wait_ms=50), ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        try:
            outs = await asyncio.gather(
                *(
                    batcher.encode("dense", "document", ["x" * (i + 1)] * (i % 3 + 1))
                    for i in range(10)
                )
            )
        finally:
            await batcher.stop()
        assert len(enc.calls) == 1  # all ten requests in one call
        for i, out in enumerate(outs):
            assert len(out.vectors) == i % 3 + 1
            assert all(v[0] == i + 1 for v in out.vectors)

    run(main())


def test_batching_off_runs_each_request_alone() -> None:
    async def main() -> None:
        enc = SlowDense()
        options = BatchingOptions(enabled=False, max_wait_ms=50)
        batcher = EncodeBatcher({"dense": enc}, options, ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.encode("dense", "document", [str(i)]) for i in range(5)))
        finally:
            await batcher.stop()
        assert sorted(c[0] for c in enc.calls) == [str(i) for i in range(5)]

    run(main())


def test_a_failing_request_does_not_fail_the_others_in_its_batch() -> None:
    async def main() -> None:
        enc = SlowDense()
        batcher = EncodeBatcher({"dense": enc}, BatchingOptions(max_wait_ms=50), ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        try:
            results = await asyncio.gather(
                batcher.encode("dense", "document", ["ok"]),
                batcher.encode("dense", "document", ["boom"]),
                batcher.encode("dense", "document", ["fine"]),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()
        assert isinstance(results[1], RuntimeError)
        assert results[0].vectors[0][0] == 2 and results[2].vectors[0][0] == 4

    run(main())


def test_a_cancelled_request_is_not_encoded_and_leaves_the_queue() -> None:
    async def main() -> None:
        enc = SlowDense()
        enc.gate.clear()  # hold the model thread on the first batch
        batcher = EncodeBatcher({"dense": enc}, BatchingOptions(max_wait_ms=0), ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.encode("dense", "document", ["first"]))
            await asyncio.sleep(0.05)
            gone = asyncio.ensure_future(batcher.encode("dense", "document", ["gone"] * 10))
            await asyncio.sleep(0.01)
            assert batcher.queued_texts == 10
            gone.cancel()
            enc.gate.set()
            await first
            await asyncio.sleep(0.05)
            assert batcher.queued_texts == 0
        finally:
            await batcher.stop()
        assert ["gone"] * 10 not in enc.calls

    run(main())


def test_a_full_queue_refuses_instead_of_growing() -> None:
    async def main() -> None:
        enc = SlowDense()
        enc.gate.clear()
        options = BatchingOptions(max_wait_ms=0, max_queue_texts=8)
        batcher = EncodeBatcher({"dense": enc}, options, ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        try:
            running = asyncio.ensure_future(batcher.encode("dense", "document", ["a"]))
            await asyncio.sleep(0.05)  # taken by the model thread
            waiting = asyncio.ensure_future(batcher.encode("dense", "document", ["b"] * 8))
            await asyncio.sleep(0.01)
            with pytest.raises(Overloaded):
                await batcher.encode("dense", "document", ["c"])
            enc.gate.set()
            await running
            assert len((await waiting).vectors) == 8
        finally:
            await batcher.stop()

    run(main())


def test_batching_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_wait_ms"):
        BatchingOptions(max_wait_ms=-1)
    with pytest.raises(ValueError, match="max_queue_texts"):
        BatchingOptions(max_queue_texts=0)
    with pytest.raises(ValueError, match="model_workers"):
        BatchingOptions(model_workers=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_model_workers_bound_the_batches_running_at_once(workers: int) -> None:
    async def main() -> None:
        enc = SlowDense()
        enc.gate.clear()
        options = BatchingOptions(max_wait_ms=0, model_workers=workers)
        batcher = EncodeBatcher({"dense": enc}, options, ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        try:
            jobs = []
            for i in range(3):  # one at a time: each is a batch of its own if a worker is free
                jobs.append(asyncio.ensure_future(batcher.encode("dense", "document", [f"t{i}"])))
                await asyncio.sleep(0.05)
            assert enc.active == workers
            assert batcher.queued_texts == 3 - workers
            enc.gate.set()
            outs = await asyncio.gather(*jobs)
        finally:
            await batcher.stop()
        assert enc.most_active == workers
        assert [out.vectors[0][0] for out in outs] == [2.0, 2.0, 2.0]

    run(main())


def test_a_batch_takes_at_most_an_even_share_of_the_queue() -> None:
    async def main() -> None:
        enc = SlowDense(delay_s=0.05)
        options = BatchingOptions(max_wait_ms=50, model_workers=2)
        batcher = EncodeBatcher({"dense": enc}, options, ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        try:
            outs = await asyncio.gather(
                *(batcher.encode("dense", "document", ["y" * (i + 1)]) for i in range(10))
            )
        finally:
            await batcher.stop()
        # Each batch takes at most an even share of what is queued (10 -> 5, then 5 -> 3,
        # ...), so the second worker finds work instead of the first taking all ten.
        assert sorted(len(c) for c in enc.calls[:2]) == [3, 5]
        assert sum(len(c) for c in enc.calls) == 10 and max(len(c) for c in enc.calls) == 5
        assert enc.most_active == 2
        assert [out.vectors[0][0] for out in outs] == [float(i + 1) for i in range(10)]

    run(main())


def test_stop_fails_running_and_queued_jobs() -> None:
    async def main() -> None:
        enc = SlowDense()
        enc.gate.clear()
        batcher = EncodeBatcher({"dense": enc}, BatchingOptions(max_wait_ms=0), ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        running = asyncio.ensure_future(batcher.encode("dense", "document", ["a"]))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.encode("dense", "document", ["b"]))
        await asyncio.sleep(0.01)
        threading.Timer(0.2, enc.gate.set).start()  # the thread ends; its result is dropped
        await batcher.stop()
        for job in (running, queued):
            with pytest.raises(Overloaded, match="shutting down"):
                await job
        assert not batcher.running

    run(main())


# ------------------------------------------------------------------ the app


@pytest.fixture(scope="module")
def app(tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder) -> Any:
    config = ServiceConfig(
        api_key=KEY,
        limits=ServiceLimits(max_inputs=16, max_input_chars=20_000, max_body_bytes=64_000),
        # Two model threads, as `serve` runs on CPU: exactness under concurrency covers both.
        batching=BatchingOptions(max_wait_ms=20, model_workers=2),
    )
    return create_app(tiny_dense, tiny_colbert, config=config)


def test_concurrent_http_requests_get_exactly_their_own_vectors(
    app: Any, tiny_dense: DenseEncoder
) -> None:
    groups = [texts_of(i % 4 + 1, prefix=f"req{i}") for i in range(24)]

    async def main() -> list[httpx.Response]:
        async with client_for(app) as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/embeddings", json={"input": g, "input_type": t})
                    for g, t in zip(groups, ["query", "document"] * 12)
                )
            )

    responses = run(main())
    for group, kind, response in zip(groups, ["query", "document"] * 12, responses):
        assert response.status_code == 200, response.text
        got = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
        alone = (
            tiny_dense.encode_queries(group)
            if kind == "query"
            else tiny_dense.encode_documents(group)
        )
        np.testing.assert_allclose(got, alone, atol=1e-5)
        assert [d["index"] for d in response.json()["data"]] == list(range(len(group)))


def test_input_type_picks_the_prompt(app: Any, tiny_dense: DenseEncoder) -> None:
    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with client_for(app) as client:
            q = await client.post("/v1/embeddings", json={"input": "hi", "input_type": "query"})
            d = await client.post("/v1/embeddings", json={"input": "hi"})
            return q, d

    q, d = run(main())
    np.testing.assert_allclose(
        q.json()["data"][0]["embedding"], tiny_dense.encode_queries(["hi"])[0], atol=1e-5
    )
    np.testing.assert_allclose(
        d.json()["data"][0]["embedding"], tiny_dense.encode_documents(["hi"])[0], atol=1e-5
    )
    assert (
        q.json()["usage"]["prompt_tokens"]
        == tiny_dense.count_tokens(["hi"], input_type="query").tokens[0]
    )


def test_multivector_float_and_base64(app: Any, tiny_colbert: LateInteractionEncoder) -> None:
    docs = ["a short document", "another, longer document with punctuation!"]

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with client_for(app) as client:
            f = await client.post("/v1/multivector", json={"input": docs})
            b = await client.post(
                "/v1/multivector",
                json={"input": docs, "encoding_format": "base64", "input_type": "query"},
            )
            return f, b

    f, b = run(main())
    for item, ref in zip(f.json()["data"], tiny_colbert.encode_documents(docs)):
        np.testing.assert_allclose(np.array(item["embeddings"]), ref, atol=1e-5)
        assert item["shape"] == list(ref.shape)
    for item, ref in zip(b.json()["data"], tiny_colbert.encode_queries(docs)):
        raw = np.frombuffer(base64.b64decode(item["embeddings"]), dtype="<f4")
        np.testing.assert_allclose(raw.reshape(item["shape"]), ref, atol=1e-5)


def test_rerank_is_the_encoders_rerank(app: Any, tiny_colbert: LateInteractionEncoder) -> None:
    docs = ["orders ship in two days", "", "the cafe opens at nine", "where is my order?"]

    async def main() -> httpx.Response:
        async with client_for(app) as client:
            return await client.post(
                "/v1/rerank",
                json={
                    "query": "where is my order",
                    "documents": docs,
                    "top_n": 3,
                    "return_documents": True,
                },
            )

    body = run(main()).json()
    expected = tiny_colbert.rerank("where is my order", docs, top_k=3)
    assert [r["index"] for r in body["results"]] == [i for i, _ in expected]
    np.testing.assert_allclose(
        [r["relevance_score"] for r in body["results"]], [s for _, s in expected], rtol=1e-5
    )
    assert all(r["document"]["text"] == docs[r["index"]] for r in body["results"])


def test_rerank_without_colbert_uses_dense_cosine(tiny_dense: DenseEncoder) -> None:
    app = create_app(tiny_dense, None)
    docs = ["alpha beta", "gamma", "beta alpha beta"]

    async def main() -> httpx.Response:
        async with client_for(app) as client:
            return await client.post("/v1/rerank", json={"query": "alpha", "documents": docs})

    body = run(main()).json()
    expected = tiny_dense.rerank("alpha", docs)
    assert [r["index"] for r in body["results"]] == [i for i, _ in expected]


def test_over_long_inputs_are_refused_unless_truncation_is_asked(
    app: Any, tiny_dense: DenseEncoder
) -> None:
    long = "word " * (tiny_dense.max_length + 10)

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with client_for(app) as client:
            refused = await client.post("/v1/embeddings", json={"input": ["short", long]})
            cut = await client.post(
                "/v1/embeddings", json={"input": ["short", long], "truncate": True}
            )
            return refused, cut

    refused, response = run(main())
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "input_too_long" and error["param"] == "input[1]"
    full = len(tiny_dense.tokenizer.encode([long], 10**6).ids[0])
    assert f"input[1] has {full} tokens" in error["message"]
    assert '"truncate": true' in error["message"]
    assert response.status_code == 200
    assert response.json()["truncated"] == [1]
    assert response.headers["X-Truncated-Inputs"] == "1"


BAD_REQUESTS = [
    ("/v1/embeddings", b'{"input": ', 400, "invalid_json", None),
    ("/v1/embeddings", b'{"input": 3}', 400, "invalid_value", "input"),
    ("/v1/embeddings", b'{"input": ["a", null]}', 400, "invalid_value", "input[1]"),
    ("/v1/embeddings", b'{"input": []}', 400, "empty_input", "input"),
    ("/v1/embeddings", b'{"input": [[1, 2, 3]]}', 400, "invalid_value", "input"),
    ("/v1/embeddings", b'{"input": "a", "model": "gpt-4"}', 404, "model_not_found", "model"),
    (
        "/v1/embeddings",
        b'{"input": "a", "dimensions": 3}',
        400,
        "unsupported_dimensions",
        "dimensions",
    ),
    (
        "/v1/embeddings",
        b'{"input": "a", "encoding_format": "int8"}',
        400,
        "invalid_value",
        "encoding_format",
    ),
    (
        "/v1/embeddings",
        b'{"input": '
        + b'["a"]' * 0
        + b'["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"]}',
        400,
        "too_many_inputs",
        "input",
    ),
    ("/v1/embeddings", b'{"input": "' + b"x" * 20_001 + b'"}', 400, "input_too_long", "input"),
    ("/v1/embeddings", b"[1, 2]", 400, "invalid_body", None),
    ("/v1/embeddings", b'"just a string"', 400, "invalid_body", None),
    ("/v1/rerank", b'{"query": "q", "documents": "not a list"}', 400, "invalid_value", "documents"),
    (
        "/v1/rerank",
        b'{"query": "q", "documents": ["a"], "top_n": -1}',
        400,
        "invalid_value",
        "top_n",
    ),
    ("/v1/rerank", b'{"documents": ["a"]}', 400, "invalid_value", "query"),
    ("/v1/multivector", b'{"input": {"text": "a"}}', 400, "invalid_value", "input"),
    ("/v1/search", b'{"query": "q", "collection": "c"}', 404, "no_store", "collection"),
    ("/v1/nothing", b"{}", 404, "not_found", None),
]


@pytest.mark.parametrize(("path", "body", "status", "code", "param"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_naming_the_problem(
    app: Any, path: str, body: bytes, status: int, code: str, param: str | None
) -> None:
    async def main() -> httpx.Response:
        async with client_for(app) as client:
            return await client.post(
                path, content=body, headers={"content-type": "application/json"}
            )

    response = run(main())
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert error["message"] and "Traceback" not in error["message"]


def test_a_body_over_the_limit_gets_413_before_parsing(app: Any) -> None:
    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with client_for(app) as client:
            declared = await client.post("/v1/embeddings", content=b"x" * 70_000)

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
                for _ in range(10):
                    yield b" " * 10_000

            chunked = await client.post("/v1/embeddings", content=chunks())
            return declared, chunked

    declared, chunked = run(main())
    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"


def test_the_api_key_guards_every_endpoint_but_health(app: Any) -> None:
    async def main() -> dict[str, int]:
        async with client_for(app) as client:
            out = {}
            for method, path in (
                ("GET", "/v1/models"),
                ("GET", "/metrics"),
                ("POST", "/v1/embeddings"),
                ("POST", "/v1/rerank"),
                ("POST", "/v1/multivector"),
                ("POST", "/v1/search"),
                ("GET", "/health"),
            ):
                r = await client.request(
                    method, path, json={"input": "a"}, headers={"Authorization": "Bearer wrong"}
                )
                out[path] = r.status_code
            return out

    codes = run(main())
    assert codes.pop("/health") == 200
    assert set(codes.values()) == {401}


def test_metrics_count_requests_tokens_and_batches(app: Any) -> None:
    async def main() -> str:
        async with client_for(app) as client:
            await asyncio.gather(
                *(client.post("/v1/embeddings", json={"input": f"t{i}"}) for i in range(6))
            )
            await client.post("/v1/embeddings", json={"input": []})
            return (await client.get("/metrics")).text

    text = run(main())
    assert 'lfm_requests_total{endpoint="/v1/embeddings",status="200"}' in text
    assert 'lfm_errors_total{endpoint="/v1/embeddings",type="empty_input"}' in text
    assert 'lfm_tokens_total{input_type="document",side="dense"}' in text
    assert "lfm_batch_requests_bucket" in text and "lfm_request_seconds_bucket" in text


def test_overload_answers_503_with_retry_after() -> None:
    enc = SlowDense(delay_s=0.2)
    config = ServiceConfig(batching=BatchingOptions(max_wait_ms=0, max_queue_texts=4))
    app = create_app(enc, None, config=config)  # type: ignore[arg-type]

    async def main() -> list[httpx.Response]:
        async with client_for(app) as client:
            return await asyncio.gather(
                *(client.post("/v1/embeddings", json={"input": ["a", "b"]}) for _ in range(12))
            )

    responses = run(main())
    codes = [r.status_code for r in responses]
    assert 200 in codes and 503 in codes
    assert set(codes) <= {200, 503}
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"


def test_a_request_that_waits_too_long_gets_503() -> None:
    enc = SlowDense(delay_s=0.5)
    config = ServiceConfig(limits=ServiceLimits(request_timeout_s=0.1))
    app = create_app(enc, None, config=config)  # type: ignore[arg-type]

    async def main() -> httpx.Response:
        async with client_for(app) as client:
            return await client.post("/v1/embeddings", json={"input": "a"})

    response = run(main())
    assert response.status_code == 503
    assert "Retry-After" in response.headers


def test_an_endpoint_without_its_model_says_which_flag_loads_it(tiny_dense: DenseEncoder) -> None:
    app = create_app(tiny_dense, None)

    async def main() -> httpx.Response:
        async with client_for(app) as client:
            return await client.post("/v1/multivector", json={"input": "a"})

    error = run(main()).json()["error"]
    assert error["code"] == "model_not_loaded" and "--colbert-model" in error["message"]


def test_models_lists_both(app: Any) -> None:
    async def main() -> httpx.Response:
        async with client_for(app) as client:
            return await client.get("/v1/models")

    data = run(main()).json()["data"]
    assert [m["kind"] for m in data] == ["dense", "colbert"]
    assert all(isinstance(m["dim"], int) for m in data)


def test_create_app_needs_a_model() -> None:
    with pytest.raises(ValueError, match="needs a dense model"):
        create_app(None, None)


def test_a_lone_request_does_not_wait_for_company() -> None:
    enc = SlowDense()
    config = ServiceConfig(batching=BatchingOptions(max_wait_ms=2000))
    app = create_app(enc, None, config=config)  # type: ignore[arg-type]

    async def main() -> tuple[float, list[httpx.Response]]:
        async with client_for(app) as client:
            t0 = time.perf_counter()
            await client.post("/v1/embeddings", json={"input": "alone"})
            alone = time.perf_counter() - t0
            # Requests in flight together still wait for each other and share one call.
            together = await asyncio.gather(
                *(client.post("/v1/embeddings", json={"input": f"t{i}"}) for i in range(6))
            )
            return alone, together

    alone, together = run(main())
    assert alone < 1.0  # not the 2 s max_wait_ms: nobody else was in flight
    assert all(r.status_code == 200 for r in together)
    assert enc.calls[1:] == [[f"t{i}" for i in range(6)]]


def test_in_flight_requests_without_a_job_keep_the_batch_waiting() -> None:
    async def main() -> float:
        enc = SlowDense()
        options = BatchingOptions(max_wait_ms=300)
        others = {"n": 2}  # this job's request and one more that has no job yet
        batcher = EncodeBatcher(
            {"dense": enc},  # type: ignore[dict-item]
            options,
            ServiceMetrics(),
            in_flight=lambda: others["n"],
        )
        await batcher.start()
        try:
            t0 = time.perf_counter()
            await batcher.encode("dense", "document", ["a"])
            waited = time.perf_counter() - t0
            others["n"] = 1
            t0 = time.perf_counter()
            await batcher.encode("dense", "document", ["b"])
            assert time.perf_counter() - t0 < 0.25
        finally:
            await batcher.stop()
        return waited

    assert run(main()) >= 0.25


def test_a_long_merged_batch_answers_each_slice_as_it_is_done() -> None:
    async def main() -> list[float]:
        enc = SlowDense(delay_s=0.2)
        options = BatchingOptions(max_wait_ms=50, max_batch_tokens=10)
        batcher = EncodeBatcher({"dense": enc}, options, ServiceMetrics())  # type: ignore[dict-item]
        await batcher.start()
        t0 = time.perf_counter()
        done: list[float] = []

        async def one(texts: list[str]) -> None:
            out = await batcher.encode("dense", "document", texts)
            assert [v[0] for v in out.vectors] == [float(len(t)) for t in texts]
            assert out.counts.tokens == [len(t) for t in texts]
            done.append(time.perf_counter() - t0)

        try:
            # Tokens (SlowDense: characters) 4, 4, 4, 4, 12, 3: slices [4+4] [4+4] [12] [3].
            await asyncio.gather(
                *(one([t]) for t in ["aaaa", "bbbb", "cccc", "dddd", "e" * 12, "fff"])
            )
        finally:
            await batcher.stop()
        assert enc.calls == [["aaaa", "bbbb"], ["cccc", "dddd"], ["e" * 12], ["fff"]]
        return sorted(done)

    done = run(main())
    assert done[1] < done[-1] - 0.3  # the first slice was answered well before the last


def test_max_batch_tokens_is_checked() -> None:
    with pytest.raises(ValueError, match="max_batch_tokens"):
        BatchingOptions(max_batch_tokens=0)


def test_sliced_batches_on_two_workers_give_each_request_its_own_vectors(
    tiny_dense: DenseEncoder,
) -> None:
    # Slices of at most 24 tokens: the 16 merged requests run as many forwards, spread over
    # two model threads, and answered slice by slice.
    config = ServiceConfig(
        batching=BatchingOptions(max_wait_ms=50, max_batch_tokens=24, model_workers=2)
    )
    app = create_app(tiny_dense, None, config=config)
    groups = [texts_of(i % 3 + 1, prefix=f"slice{i}") for i in range(16)]

    async def main() -> tuple[list[httpx.Response], str]:
        async with client_for(app) as client:
            responses = await asyncio.gather(
                *(client.post("/v1/embeddings", json={"input": g}) for g in groups)
            )
            return responses, (await client.get("/metrics")).text

    responses, metrics = run(main())
    calls = re.search(r'^lfm_batch_texts_count\{side="dense"\} (\S+)$', metrics, re.M)
    assert calls is not None and float(calls.group(1)) >= 6  # sliced: many forwards
    for group, response in zip(groups, responses):
        assert response.status_code == 200, response.text
        got = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
        np.testing.assert_allclose(got, tiny_dense.encode_documents(group), atol=1e-5)
        assert response.json()["usage"]["prompt_tokens"] == sum(
            tiny_dense.count_tokens(group, input_type="document").tokens
        )


def test_serve_freezes_the_objects_alive_before_it_runs(
    tiny_dense: DenseEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    import uvicorn

    from lfm_retrieval.server import serve

    seen: dict[str, Any] = {}

    def fake_run(self: Any) -> None:
        seen["frozen"] = gc.get_freeze_count()
        seen["host"] = self.config.host

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    gc.unfreeze()
    try:
        serve(create_app(tiny_dense, None), host="127.0.0.1", port=0)
    finally:
        gc.unfreeze()  # the test process keeps collecting as before
    # The models and the app are out of the collector's reach: no quarter-second full walks.
    assert seen["frozen"] > 10_000 and seen["host"] == "127.0.0.1"


def test_a_batch_that_breaks_outside_the_encoder_fails_its_requests_not_the_service() -> None:
    class NoBudget(SlowDense):
        batching = None  # type: ignore[assignment]  # _run reads batching.max_tokens_per_batch

    async def main() -> None:
        batcher = EncodeBatcher(
            {"dense": NoBudget()}, BatchingOptions(max_wait_ms=0), ServiceMetrics()
        )  # type: ignore[dict-item]
        await batcher.start()
        try:
            with pytest.raises(AttributeError):
                await asyncio.wait_for(batcher.encode("dense", "document", ["a"]), timeout=5)
            assert batcher.running  # the next request is still taken
            batcher.encoders["dense"].batching = BatchingConfig()  # type: ignore[union-attr]
            out = await asyncio.wait_for(batcher.encode("dense", "document", ["bb"]), timeout=5)
            assert out.vectors[0][0] == 2.0
        finally:
            await batcher.stop()

    run(main())


@pytest.mark.parametrize("ids", [[1, 2, 3], [[1, 2], [3, 4]]])
def test_token_ids_get_a_400_naming_the_langchain_fix(app: Any, ids: list[Any]) -> None:
    async def main() -> httpx.Response:
        async with client_for(app) as client:
            return await client.post("/v1/embeddings", json={"input": ids})

    response = run(main())
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "token ids are not accepted" in message
    assert "check_embedding_ctx_length=False" in message


def test_query_alias_gets_the_query_prompt_and_never_a_second_one(
    app: Any, tiny_dense: DenseEncoder, tiny_dense_dir: Any
) -> None:
    name = tiny_dense_dir.name
    texts = ["where is my parcel", "query: where is my parcel"]

    async def main() -> list[httpx.Response]:
        async with client_for(app) as client:
            return [
                await client.post("/v1/embeddings", json={"input": texts, "model": model})
                for model in (f"{name}:query", f"{name}:document", name)
            ] + [
                await client.post(
                    "/v1/embeddings",
                    json={"input": "x", "model": f"{name}:query", "input_type": "document"},
                ),
                await client.get(f"/v1/models/{name}:query"),
                await client.get("/v1/models/nope"),
            ]

    query, document, plain, conflict, model, missing = run(main())
    got = np.array([d["embedding"] for d in query.json()["data"]], dtype=np.float32)
    expected = tiny_dense.encode_queries(texts[:1])[0]
    # Both the plain text and the hand-prefixed one get exactly one "query: ".
    np.testing.assert_allclose(got, np.stack([expected, expected]), atol=1e-5)
    docs = np.array([d["embedding"] for d in document.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(docs[0], tiny_dense.encode_documents(texts[:1])[0], atol=1e-5)
    # A hand-written query prompt on a document request is taken as given, not prefixed.
    np.testing.assert_allclose(docs[1], expected, atol=1e-5)
    assert plain.json()["data"][0]["embedding"] == document.json()["data"][0]["embedding"]
    assert conflict.status_code == 400
    assert conflict.json()["error"]["code"] == "conflicting_input_type"
    assert model.status_code == 200 and model.json()["kind"] == "dense"
    assert f"{name}:query" in model.json()["aliases"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"

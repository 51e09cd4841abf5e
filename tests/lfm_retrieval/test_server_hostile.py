"""The service under hostile input, in-process: no 5xx, the key first, an honest OpenAPI document.

The app runs over the tiny models and an Edge collection written by the writer, as
``serve --path`` runs it. tests/lfm_retrieval/test_server_fuzz.py fuzzes the same app from
its OpenAPI document; the header-read deadline, which needs a real socket, is tested here
on uvicorn in a thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_retrieval.server import ServiceConfig, create_app, served_model_name, with_header_timeout

KEY = "hostile-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON_AUTH = {**AUTH, "content-type": "application/json"}


@pytest.fixture(scope="module")
def app(tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder, edge_store: Any) -> Any:
    return create_app(tiny_dense, tiny_colbert, store=edge_store, config=ServiceConfig(api_key=KEY))


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    if "json" in kwargs:  # escaped as JSON allows, so lone surrogates travel ("\\ud800")
        kwargs["content"] = json.dumps(kwargs.pop("json")).encode()
        kwargs["headers"] = {"content-type": "application/json", **kwargs.get("headers", {})}

    async def main() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, **kwargs)

    return asyncio.run(main())


# ----------------------------------------------------------------------- auth first


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": b"Bearer \xe9\xff"},  # a non-ASCII byte: compared as bytes
        {"Authorization": "Bearer " + KEY[:-1]},
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/embeddings", b'{"input": '),  # malformed: 401 before 400
        ("POST", "/v1/search", b"x" * 1000),  # declared over the body limit: 401 before 413
        ("POST", "/v1/rerank", b'{"query": 3}'),
        ("GET", "/v1/models", b""),
        ("GET", "/metrics", b""),
        ("GET", "/openapi.json", b""),
        ("GET", "/no/such/path", b""),
    ],
)
def test_without_the_key_every_path_but_health_is_401_before_the_body(
    app: Any, headers: dict[str, Any], method: str, path: str, body: bytes
) -> None:
    read = []

    async def main() -> httpx.Response:
        async def chunks() -> Any:
            read.append(True)  # the body is only produced if someone reads it
            yield body

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(
                    method,
                    path,
                    content=chunks() if body else None,
                    headers={
                        "content-type": "application/json",
                        # Declared, never sent: without the key, not even the size is checked.
                        **({"content-length": "99999999"} if path == "/v1/search" else {}),
                        **headers,
                    },
                )

    response = asyncio.run(main())
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert KEY not in response.text
    assert call(app, "GET", "/health", headers=headers).status_code == 200


def test_with_the_key_a_malformed_body_is_400(app: Any) -> None:
    response = call(app, "POST", "/v1/embeddings", content=b'{"input": ', headers=JSON_AUTH)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


# ---------------------------------------------------------------- no 5xx for input


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (
            {"filter": {"must": [{"key": "lang", "values_count": {"gte": -1}}]}},
            400,
            "invalid_filter",
            "filter.must[0].values_count.gte",
        ),
        (
            {"filter": {"min_should": {"conditions": [], "min_count": 2**64}}},
            400,
            "invalid_filter",
            "filter.min_should.min_count",
        ),
        (
            {"filter": {"must": [{"key": "lang", "match": {"value": 2**63}}]}},
            400,
            "invalid_filter",
            "filter.must[0].match.value",
        ),
        (
            {"filter": {"must": [{"key": "\ud800", "match": {"value": "en"}}]}},
            400,
            "invalid_filter",
            "filter.must[0].key",
        ),
        (
            {"filter": {"must": [{"has_id": [-1]}]}},
            400,
            "invalid_filter",
            "filter.must[0].has_id[0]",
        ),
        ({"collection": "\u4e2d" * 100}, 400, "invalid_collection", "collection"),  # 300 bytes
        ({"collection": "faq\ud800"}, 400, "invalid_collection", "collection"),
        ({"collection": "\u4e2d" * 85}, 404, "collection_not_found", "collection"),  # 255 bytes
    ],
)
def test_search_input_the_engine_cannot_hold_is_a_4xx_naming_it(
    app: Any, body: dict[str, Any], status: int, code: str, param: str
) -> None:
    response = call(
        app, "POST", "/v1/search", json={"query": "ship", "collection": "faq", **body}, headers=AUTH
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)


@pytest.mark.parametrize(
    ("flt", "param", "message"),
    [
        (
            {"must": [{"key": "lang", "match": "de"}]},
            "filter.must[0].match",
            'filter must[0].match: expected {"value": ...}, {"text": ...}, {"text_any": ...}, '
            '{"phrase": ...}, {"prefix": ...}, {"substring": ...}, {"any": ...} or '
            '{"except": ...}, got "de"',
        ),
        (
            {"must": [{"key": "lang"}]},
            "filter.must[0]",
            "filter must[0]: a condition on 'lang' needs one of match, range, geo_bounding_box, "
            "geo_radius, geo_polygon, values_count, is_empty, is_null",
        ),
        (
            {"should": {"key": "n", "range": {"gt": [1]}}},
            "filter.should.range.gt",
            "filter should.range.gt: expected a number, a date-time such as "
            '"2024-05-31T12:00:00Z" or a date such as "2024-05-31", got a list of integers',
        ),
    ],
)
def test_a_malformed_filter_names_its_place_in_the_request(
    app: Any, flt: dict[str, Any], param: str, message: str
) -> None:
    body = {"query": "ship", "collection": "faq", "filter": flt}
    response = call(app, "POST", "/v1/search", json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_filter",
    }


def test_a_filter_in_range_searches(app: Any) -> None:
    response = call(
        app,
        "POST",
        "/v1/search",
        json={
            "query": "ship \ud800",  # repaired, as the library repairs it
            "collection": "faq",
            "filter": {"must": [{"key": "lang", "match": {"value": "en"}}]},
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    assert sorted(r["id"] for r in response.json()["results"]) == [1, 3]


def test_unencodable_text_is_repaired_and_echoed_as_encoded(app: Any) -> None:
    response = call(
        app,
        "POST",
        "/v1/rerank",
        json={
            "query": "q\ud800",
            "documents": ["a\udfffb", "\ud83d\ude00"],
            "return_documents": True,
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    texts = sorted(r["document"]["text"] for r in response.json()["results"])
    assert texts == sorted(["a\ufffdb", "\U0001f600"])  # a pair joins; a lone half is U+FFFD


def test_a_model_name_that_cannot_be_encoded_is_a_404_not_a_500(app: Any) -> None:
    response = call(
        app, "POST", "/v1/embeddings", json={"input": "a", "model": "\ud800"}, headers=AUTH
    )
    assert response.status_code == 404 and response.json()["error"]["param"] == "model"


# ------------------------------------------------------------------- model names


def test_models_show_folder_names_never_paths(
    app: Any, tiny_dense_dir: Path, tiny_colbert_dir: Path
) -> None:
    listed = call(app, "GET", "/v1/models", headers=AUTH).json()["data"]
    assert [m["id"] for m in listed] == [tiny_dense_dir.name, tiny_colbert_dir.name]
    wrong = call(app, "POST", "/v1/embeddings", json={"input": "a", "model": "x"}, headers=AUTH)
    assert wrong.status_code == 404
    for text in (str(listed), wrong.text):
        assert str(tiny_dense_dir) not in text and str(tiny_dense_dir.parent) not in text
    by_name = call(
        app,
        "POST",
        "/v1/embeddings",
        json={"input": "a", "model": tiny_dense_dir.name},
        headers=AUTH,
    )
    assert by_name.status_code == 200 and by_name.json()["model"] == tiny_dense_dir.name


def test_served_model_names_replace_the_defaults(tiny_dense: DenseEncoder) -> None:
    app = create_app(
        tiny_dense, None, config=ServiceConfig(served_model_names={"dense": "lfm-embed"})
    )
    assert call(app, "GET", "/v1/models").json()["data"][0]["id"] == "lfm-embed"
    response = call(app, "POST", "/v1/embeddings", json={"input": "a", "model": "lfm-embed"})
    assert response.json()["model"] == "lfm-embed"


def test_served_model_name_defaults(tmp_path: Path) -> None:
    assert served_model_name("LiquidAI/LFM2.5-Embedding-350M") == "LiquidAI/LFM2.5-Embedding-350M"
    assert served_model_name(str(tmp_path / "lfm-embed")) == "lfm-embed"  # absolute, absent
    (tmp_path / "here").mkdir()
    assert served_model_name(str(tmp_path / "here") + "/") == "here"


# ------------------------------------------------------------------------ OpenAPI


def test_the_openapi_document_lists_every_status_with_the_error_schema(app: Any) -> None:
    doc = call(app, "GET", "/openapi.json", headers=AUTH).json()
    assert "422" not in str(doc) and "HTTPValidationError" not in str(doc)
    expected = {
        "/v1/embeddings": {"200", "400", "401", "404", "413", "503"},
        "/v1/multivector": {"200", "400", "401", "404", "413", "503"},
        "/v1/rerank": {"200", "400", "401", "404", "413", "503"},
        "/v1/search": {"200", "400", "401", "404", "409", "413", "503"},
        "/v1/models": {"200", "401"},
        "/metrics": {"200", "401"},
        "/health": {"200", "503"},
    }
    for path, statuses in expected.items():
        (operation,) = doc["paths"][path].values()
        assert set(operation["responses"]) == statuses, path
        for status in statuses - {"200"}:
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}
        assert ("security" in operation) == (path != "/health")
    assert set(doc["components"]["schemas"]["ErrorDetail"]["properties"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert (
        call(app, "GET", "/metrics", headers=AUTH).headers["content-type"].startswith("text/plain")
    )
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


# --------------------------------------------------------------- slow clients


@pytest.fixture(scope="module")
def uvicorn_url(tiny_dense: DenseEncoder) -> Iterator[str]:
    """The service on real uvicorn, in a thread, with a 0.5 s header deadline."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(tiny_dense, None),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=with_header_timeout(0.5),
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield url
    server.should_exit = True
    thread.join(10)


def _closed_after(sock: socket.socket, limit_s: float) -> float:
    """Seconds until the server closed ``sock`` (reads until EOF), failing past ``limit_s``."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    while sock.recv(4096):
        pass
    return time.monotonic() - started


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_a_half_sent_request_head_is_closed_within_the_deadline(uvicorn_url: str) -> None:
    with _connect(uvicorn_url) as half, _connect(uvicorn_url) as silent:
        half.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: app")
        assert _closed_after(half, 5) < 3
        assert _closed_after(silent, 5) < 3
    assert httpx.get(f"{uvicorn_url}/health").status_code == 200


def test_a_slow_head_on_a_kept_alive_connection_is_closed_too(uvicorn_url: str) -> None:
    with _connect(uvicorn_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in sock.recv(4096)
        for byte in b"GET /health HTTP/1.1\r\n":  # one byte every 0.1 s: never a whole head
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        assert _closed_after(sock, 5) < 3


def test_a_slow_body_after_a_prompt_head_is_answered(uvicorn_url: str) -> None:
    body = b'{"input": "a slow upload"}'
    with _connect(uvicorn_url) as sock:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        for i in range(0, len(body), 9):  # the body over 1.2 s: past the head deadline
            sock.sendall(body[i : i + 9])
            time.sleep(0.4)
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")

"""`lfm-retrieval serve` as a real uvicorn process on 127.0.0.1, with real clients.

One server per module (MiniLM dense, the tiny ColBERT, an Edge store indexed before it
starts); a second, short-lived one for the SIGTERM test. Every load is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder

KEY = "process-test-key"
KEY_ENV = "LFM_TEST_SERVER_KEY"
DOCS = [
    "Orders ship within two business days.",
    "Returns are accepted for 30 days with a receipt.",
    "Das Café öffnet um neun Uhr.",
    "La tienda cierra los domingos.",
    "Gift cards never expire.",
    "We ship to Norway, Sweden and Japan.",
    "Refunds go back to the original card.",
    "Le magasin est fermé le lundi.",
]
LANGS = ["en", "en", "de", "es", "en", "en", "en", "fr"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    args: list[str], env: dict[str, str], timeout_s: float = 120
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "lfm_retrieval.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--log-level",
        "warning",
        *args,
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited: {proc.stdout.read().decode() if proc.stdout else ''}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def store_dir(
    tmp_path_factory: pytest.TempPathFactory,
    minilm: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
) -> tuple[Path, dict[str, Any]]:
    """An Edge store with one hybrid collection, and what searching it gave in-process."""
    from lfm_qdrant import EdgeStore, MultiVectorWriter

    folder = tmp_path_factory.mktemp("served-store")
    store = EdgeStore(folder)
    try:
        writer = MultiVectorWriter(store, "faq", dense=minilm, colbert=tiny_colbert)
        writer.add(
            DOCS, ids=[f"doc-{i}" for i in range(len(DOCS))], metadata=[{"lang": x} for x in LANGS]
        )
        expected = {
            "hybrid": writer.search("when do orders ship?", limit=3, prefetch_limit=8),
            "dense_de": writer.search(
                "café",
                limit=5,
                mode="dense",
                query_filter={"must": [{"key": "lang", "match": {"value": "de"}}]},
            ),
        }
    finally:
        store.close()
    return folder, expected


@pytest.fixture(scope="module")
def server(minilm_dir: Path, tiny_colbert_dir: Path, store_dir: tuple[Path, Any]) -> Iterator[str]:
    proc, url = start_server(
        [
            "--embedding-model",
            str(minilm_dir),
            "--colbert-model",
            str(tiny_colbert_dir),
            "--path",
            str(store_dir[0]),
            "--api-key-env",
            KEY_ENV,
            "--max-wait-ms",
            "5",
            "--header-timeout",
            "2",
        ],
        {KEY_ENV: KEY},
    )
    yield url
    stop(proc)
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert proc.returncode in (0, -signal.SIGTERM)


def test_openai_sdk_gets_the_dense_encoders_vectors(
    server: str, minilm: DenseEncoder, minilm_dir: Path
) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    texts = ["How do I return an item?", "Wo ist mein Paket?", ""]
    # The SDK asks for base64 by default and decodes it; float is the other path.
    for fmt in ("base64", "float"):
        kwargs = {} if fmt == "base64" else {"encoding_format": "float"}
        response = client.embeddings.create(model=minilm_dir.name, input=texts, **kwargs)
        got = np.array([d.embedding for d in response.data], dtype=np.float32)
        np.testing.assert_allclose(got, minilm.encode_documents(texts), atol=1e-5)
        assert response.usage.prompt_tokens == sum(
            minilm.count_tokens(texts, input_type="document").tokens
        )
    single = client.embeddings.create(model=minilm_dir.name, input="just one")
    assert len(single.data) == 1


def test_openai_sdk_sees_a_clear_error(server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    bad_key = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.embeddings.create(model="x", input="x")


def test_langchain_openai_embeddings_use_the_service(
    server: str, minilm: DenseEncoder, minilm_dir: Path
) -> None:
    import langchain_openai as lc_openai

    # check_embedding_ctx_length=False: send the texts, not tiktoken ids (no download offline).
    embeddings = lc_openai.OpenAIEmbeddings(
        model=minilm_dir.name,
        base_url=f"{server}/v1",
        api_key=KEY,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    texts = ["one document", "another document"]
    np.testing.assert_allclose(
        embeddings.embed_documents(texts), minilm.encode_documents(texts), atol=1e-5
    )
    np.testing.assert_allclose(
        embeddings.embed_query("q"), minilm.encode_documents(["q"])[0], atol=1e-5
    )


def test_concurrent_clients_get_exactly_their_own_vectors(
    server: str, minilm: DenseEncoder
) -> None:
    rng = random.Random(0)
    words = [
        "order",
        "ship",
        "return",
        "refund",
        "card",
        "store",
        "open",
        "close",
        "day",
        "week",
        "Norway",
        "Japan",
    ]
    requests = [
        [" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(rng.randint(1, 4))]
        for _ in range(48)
    ]

    def send(texts: list[str]) -> np.ndarray:
        r = httpx.post(
            f"{server}/v1/embeddings",
            json={"input": texts},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, requests))
    for texts, got in zip(requests, answers):
        np.testing.assert_allclose(got, minilm.encode_documents(texts), atol=1e-5)
    metrics = httpx.get(f"{server}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    merged = [
        line
        for line in metrics.splitlines()
        if line.startswith('lfm_batch_requests_sum{side="dense"}')
    ]
    count = [
        line
        for line in metrics.splitlines()
        if line.startswith('lfm_batch_requests_count{side="dense"}')
    ]
    # Some forward carried more than one request.
    assert float(merged[0].split()[-1]) > float(count[0].split()[-1])


def test_search_returns_what_the_writer_returns(
    server: str, store_dir: tuple[Path, dict[str, Any]]
) -> None:
    expected = store_dir[1]
    auth = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(
        f"{server}/v1/search",
        json={
            "query": "when do orders ship?",
            "collection": "faq",
            "limit": 3,
            "prefetch_limit": 8,
        },
        headers=auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "hybrid"
    assert [h["id"] for h in body["results"]] == [p.id for p in expected["hybrid"]]
    np.testing.assert_allclose(
        [h["score"] for h in body["results"]], [p.score for p in expected["hybrid"]], rtol=1e-5
    )
    assert body["results"][0]["payload"]["text"] == expected["hybrid"][0].payload["text"]
    flt = {"must": [{"key": "lang", "match": {"value": "de"}}]}
    r = httpx.post(
        f"{server}/v1/search",
        json={"query": "café", "collection": "faq", "mode": "dense", "limit": 5, "filter": flt},
        headers=auth,
    )
    assert [h["id"] for h in r.json()["results"]] == [p.id for p in expected["dense_de"]]
    assert all(h["payload"]["lang"] == "de" for h in r.json()["results"])


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"query": "q", "collection": "missing"}, 404, "collection_not_found"),
        ({"query": "q", "collection": "bad/name"}, 400, "invalid_collection"),
        (
            {"query": "q", "collection": "faq", "filter": {"must": "nonsense"}},
            400,
            "invalid_filter",
        ),
        ({"query": "q", "collection": "faq", "limit": 0}, 400, "invalid_value"),
    ],
)
def test_search_errors(server: str, body: dict[str, Any], status: int, code: str) -> None:
    r = httpx.post(f"{server}/v1/search", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


def _hostile(url: str, i: int) -> int | None:
    """One of ten kinds of hostile request; the status, or None when we hung up first."""
    host, port = url.removeprefix("http://").split(":")
    kind = i % 10
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    if kind in (0, 1):  # disconnect mid-body or right after sending
        with socket.create_connection((host, int(port)), timeout=5) as s:
            body = json.dumps({"input": ["x " * 200] * 50}).encode()
            head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            s.sendall(head.encode() + (body[: len(body) // 2] if kind == 0 else body))
        return None
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        bodies = {
            2: b'{"input": [',
            3: json.dumps({"input": [1, 2, 3]}).encode(),
            4: b"\xff\xfe\x00garbage",
            5: json.dumps({"input": "x" * 200_000}).encode(),
            6: json.dumps({"query": None, "documents": [{}]}).encode(),
            7: json.dumps({"input": ["a"] * 5000}).encode(),
            8: b"{}" + b" " * (17 * 1024 * 1024),
            9: json.dumps({"input": "\ud800 lone surrogate"}).encode(),
        }
        path = "/v1/rerank" if kind == 6 else "/v1/embeddings"
        conn.request("POST", path, body=bodies[kind], headers=auth)
        return conn.getresponse().status
    except (ConnectionError, OSError):
        return None  # the server may close on a body it refused early
    finally:
        conn.close()


def test_models_are_listed_by_folder_name_never_by_path(
    server: str, minilm_dir: Path, tiny_colbert_dir: Path
) -> None:
    listed = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert [m["id"] for m in listed.json()["data"]] == [minilm_dir.name, tiny_colbert_dir.name]
    assert str(minilm_dir.parent) not in listed.text


def test_a_half_sent_request_head_is_closed_after_the_header_timeout(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthoriz")
        started = time.monotonic()
        while sock.recv(4096):  # EOF when the server closes it
            pass
        assert 1.5 < time.monotonic() - started < 6  # --header-timeout 2
    assert httpx.get(f"{server}/health").status_code == 200


# 300 in CI; LFM_HOSTILE_REQUESTS=10000 for the full run (about 2 minutes here).
HOSTILE_REQUESTS = int(os.environ.get("LFM_HOSTILE_REQUESTS", "300"))


def test_hostile_load_gets_no_5xx_and_the_server_stays_healthy(server: str) -> None:
    """A bounded run (16 at a time, a tenth hostile): 4xx or 503 only, then healthy."""

    def good(i: int) -> int:
        r = httpx.post(
            f"{server}/v1/embeddings",
            json={"input": f"question {i}"},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        return r.status_code

    def one(i: int) -> int | None:
        return _hostile(server, i // 10) if i % 10 == 0 else good(i)

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(HOSTILE_REQUESTS)))
    assert time.monotonic() - started < 120 * max(1, HOSTILE_REQUESTS // 300)
    server_errors = [s for s in statuses if s is not None and s >= 500 and s != 503]
    assert server_errors == []
    assert statuses.count(200) >= 0.8 * HOSTILE_REQUESTS
    # Kind 9 (a lone surrogate, valid JSON) is a defined result: 200. The rest are refused.
    hostile = [(i // 10 % 10, s) for i, s in enumerate(statuses) if i % 10 == 0 and s is not None]
    assert all(400 <= s < 500 for kind, s in hostile if kind != 9), hostile
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok"
    deadline = time.monotonic() + 10
    while httpx.get(f"{server}/health").json()["queued_texts"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{server}/health").json()["queued_texts"] == 0


def test_sigterm_drains_requests_in_flight(minilm_dir: Path) -> None:
    proc, url = start_server(["--embedding-model", str(minilm_dir), "--colbert-model", "none"], {})
    texts = [f"sentence number {i} about shipping and returns" for i in range(1500)]
    result: dict[str, Any] = {}

    def call() -> None:
        result["response"] = httpx.post(f"{url}/v1/embeddings", json={"input": texts}, timeout=120)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)  # in the forward by now
    proc.send_signal(signal.SIGTERM)
    thread.join(120)
    proc.wait(60)
    response = result["response"]
    assert response.status_code == 200
    assert len(response.json()["data"]) == len(texts)
    assert proc.returncode in (0, -signal.SIGTERM)


def test_serve_refuses_an_unset_api_key_variable(minilm_dir: Path) -> None:
    from lfm_retrieval.cli import main

    env = os.environ.pop("LFM_SURELY_UNSET", None)
    assert env is None
    code = main(
        [
            "serve",
            "--embedding-model",
            str(minilm_dir),
            "--colbert-model",
            "none",
            "--api-key-env",
            "LFM_SURELY_UNSET",
        ]
    )
    assert code == 2


def test_serve_splits_the_cpu_cores_among_model_workers() -> None:
    import torch

    from lfm_retrieval.cli_serve import _model_workers

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _model_workers(None, "cpu") == 2
        assert torch.get_num_threads() == 1  # one torch thread per worker
        torch.set_num_threads(2)
        assert _model_workers(1, "cpu") == 1
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert _model_workers(None, "cpu") == 1  # a single core: one worker
        torch.set_num_threads(2)
        assert _model_workers(None, "meta") == 1  # not CPU: one, threads untouched
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

"""lfm_core.remote.RemoteClient against a scripted transport: retries, batching, errors."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from functools import partial
from typing import Any

import httpx
import numpy as np
import pytest

from lfm_core import InputError
from lfm_core import remote as remote_module
from lfm_core.remote import RemoteClient, RemoteServiceError


def _vectors(texts: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "embedding": base64.b64encode(np.full(4, len(t), dtype="<f4").tobytes()).decode(),
        }
        for i, t in enumerate(texts)
    ]


class Script:
    """Answers 503 (with ``Retry-After``) ``busy`` times, then embeds; records every body."""

    def __init__(self, busy: int, retry_after: str = "0.2") -> None:
        self.busy = busy
        self.retry_after = retry_after
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(time.monotonic())
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.busy > 0:
            self.busy -= 1
            return httpx.Response(
                503,
                headers={"Retry-After": self.retry_after},
                json={"error": {"message": "busy", "code": "overloaded", "param": None}},
            )
        return httpx.Response(200, json={"data": _vectors(body["input"])})


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(script: Script) -> None:
        transport = httpx.MockTransport(script)
        monkeypatch.setattr(
            remote_module.httpx, "Client", partial(httpx.Client, transport=transport)
        )
        monkeypatch.setattr(
            remote_module.httpx, "AsyncClient", partial(httpx.AsyncClient, transport=transport)
        )

    return install


def test_a_busy_service_is_retried_after_its_retry_after(scripted: Any) -> None:
    script = Script(busy=2)
    scripted(script)
    client = RemoteClient("http://svc:8080/v1", max_retries=3)
    out = client.embed(["ab", "abc"], input_type="query")
    np.testing.assert_array_equal(out[:, 0], [2, 3])
    assert len(script.bodies) == 3
    assert all(b["input_type"] == "query" and b["truncate"] is True for b in script.bodies)
    gaps = np.diff(script.times)
    assert (gaps >= 0.19).all()


def test_retries_run_out_into_an_error_with_the_services_message(scripted: Any) -> None:
    scripted(Script(busy=5, retry_after="0"))
    with pytest.raises(RemoteServiceError, match="503 busy") as caught:
        RemoteClient("http://svc", max_retries=1).embed(["x"], input_type="document")
    assert caught.value.code == "overloaded"


def test_large_lists_are_split_and_async_matches_sync(scripted: Any) -> None:
    script = Script(busy=1, retry_after="0")
    scripted(script)
    client = RemoteClient("http://svc", batch_size=3)
    texts = ["a" * n for n in range(1, 9)]
    sync = client.embed(texts, input_type="document")
    assert [len(b["input"]) for b in script.bodies[1:]] == [3, 3, 2]
    np.testing.assert_array_equal(sync[:, 0], range(1, 9))
    np.testing.assert_array_equal(asyncio.run(client.aembed(texts, input_type="document")), sync)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(InputError, match="base_url"):
        RemoteClient("svc:8080")
    with pytest.raises(InputError, match="input_type"):
        RemoteClient("http://svc").embed(["x"], input_type="passage")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        RemoteClient("http://svc").embed(["x", None], input_type="query")  # type: ignore[list-item]

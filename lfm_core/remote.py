"""A client of ``lfm-retrieval serve``: the adapters' remote mode, with no torch in the process.

The service applies the checkpoint's prompts, so a query must be sent as a query and a
document as a document: :meth:`RemoteClient.embed` takes the ``input_type`` every time.
Large lists are split into requests of at most ``batch_size`` texts (the service takes
2,048 by default); vectors travel as base64 float32, decoded with numpy.

Retries: a 503 (the service's queue is full) or a 429 is retried after the seconds its
``Retry-After`` header asks (capped at ``max_retry_wait_s``), a connection error after a
short backoff, at most ``max_retries`` times; any other error is raised at once as a
:class:`RemoteServiceError` carrying the service's message.

Usage::

    from lfm_core.remote import RemoteClient

    client = RemoteClient("http://127.0.0.1:8080", api_key="KEY")
    vectors = client.embed(["Wo ist mein Paket?"], input_type="query")
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import numpy as np

from .errors import InputError, LFMError
from .validation import check_positive_int, validate_text, validate_texts

__all__ = ["RemoteClient", "RemoteServiceError"]

logger = logging.getLogger("lfm_core")

RemoteInputType = Literal["query", "document"]
_RETRY_STATUS = (429, 503)


class RemoteServiceError(LFMError):
    """The service answered an error (after any retries).

    Attributes:
        status: the HTTP status.
        code: the service's error code (``input_too_long``, ``model_not_found``, ...).
        param: the field it names, if any.
    """

    def __init__(self, status: int, message: str, code: str | None, param: str | None) -> None:
        super().__init__(f"lfm-retrieval service: {status} {message}")
        self.status = status
        self.code = code
        self.param = param


class RemoteClient:
    """Embeddings and rerank from ``lfm-retrieval serve``, sync and async, pooled connections.

    One ``httpx.Client`` (and one ``httpx.AsyncClient`` per event loop) is kept and reused:
    connections stay open between calls. Async calls never block the event loop.

    Args:
        base_url: the service, e.g. ``http://gpu-box:8080`` (a trailing ``/v1`` is accepted).
        api_key: sent as ``Authorization: Bearer KEY`` when given.
        model: the served model's id to name in requests; None lets the service choose.
        timeout_s: seconds to wait for one answer (connect, read, write each).
        max_retries: retries of a 503/429 or a connection error; 0 for none.
        max_retry_wait_s: the longest one wait between retries, whatever ``Retry-After`` asks.
        batch_size: at most this many texts per request.
        truncate: let the service cut over-long texts to the model's limit, as the
            in-process encoders do (default; a warning on the ``lfm_core`` logger counts
            them); False makes an over-long text a :class:`RemoteServiceError` naming it.

    Raises:
        InputError: ``base_url`` is not an http(s) URL, or a number is out of range.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        max_retry_wait_s: float = 30.0,
        batch_size: int = 256,
        truncate: bool = True,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InputError(f"base_url must be an http(s) URL, not {base_url!r}")
        url = base_url.rstrip("/")
        self.base_url = url[: -len("/v1")] if url.endswith("/v1") else url
        if timeout_s <= 0:
            raise InputError(f"timeout_s must be > 0, not {timeout_s!r}")
        if max_retries < 0:
            raise InputError(f"max_retries must be >= 0, not {max_retries!r}")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.max_retry_wait_s = float(max_retry_wait_s)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.truncate = truncate
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._sync: httpx.Client | None = None
        self._async: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    # ------------------------------------------------------------------ public calls

    def embed(self, texts: Sequence[str], *, input_type: RemoteInputType) -> np.ndarray:
        """Dense vectors of ``texts`` with the query or the document prompt.

        Args:
            texts: the texts; any number (split into requests of ``batch_size``).
            input_type: ``"query"`` or ``"document"``.

        Returns:
            ``[len(texts), dim]`` float32, as the in-process encoder gives them.

        Raises:
            TypeError: ``texts`` is a bare string or an item is not a ``str``.
            RemoteServiceError: the service refused a request (its message says why).
        """
        items = validate_texts(texts)
        _check_input_type(input_type)
        parts = [
            self._vectors(self._post("/v1/embeddings", body))
            for body in self._embed_bodies(items, input_type)
        ]
        return _stack(parts)

    async def aembed(self, texts: Sequence[str], *, input_type: RemoteInputType) -> np.ndarray:
        """Async :meth:`embed`; the requests of a large list run concurrently."""
        items = validate_texts(texts)
        _check_input_type(input_type)
        answers = await asyncio.gather(
            *(self._apost("/v1/embeddings", b) for b in self._embed_bodies(items, input_type))
        )
        return _stack([self._vectors(a) for a in answers])

    def rerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """``(index into documents, score)``, best first, as ``encoder.rerank`` gives them.

        Args:
            query: the query.
            documents: the candidates (split into requests of ``batch_size``; scores of
                ColBERT and dense rerank do not depend on the other documents).
            top_n: keep the best ``top_n``; None keeps all.

        Raises:
            TypeError: ``query`` or a document is not a ``str``.
            RemoteServiceError: the service refused a request.
        """
        bodies = self._rerank_bodies(query, documents)
        return _merge([self._post("/v1/rerank", b) for b in bodies], self.batch_size, top_n)

    async def arerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """Async :meth:`rerank`."""
        bodies = self._rerank_bodies(query, documents)
        answers = await asyncio.gather(*(self._apost("/v1/rerank", b) for b in bodies))
        return _merge(list(answers), self.batch_size, top_n)

    def models(self) -> list[dict[str, Any]]:
        """The served models (``GET /v1/models``): ``id``, ``kind``, ``dim``."""
        return list(self._request("GET", "/v1/models", None)["data"])

    def model_info(self, kind: Literal["dense", "colbert"]) -> dict[str, Any]:
        """The served model of ``kind`` (``model`` when set, else the only one): ``id``, ``dim``.

        Raises:
            RemoteServiceError: the service serves no such model.
        """
        if self.model is not None:
            found = self._request("GET", f"/v1/models/{self.model}", None)
            if found.get("kind") == kind:
                return found
        else:
            for entry in self.models():
                if entry.get("kind") == kind:
                    return entry
        raise RemoteServiceError(404, f"no {kind} model is served", "model_not_loaded", "model")

    def close(self) -> None:
        """Close the pooled connections (the async ones of loops that are still open too)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        self._async.clear()

    async def aclose(self) -> None:
        """Close the async client of the running loop."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ requests

    def _embed_bodies(self, items: list[str], input_type: str) -> list[dict[str, Any]]:
        return [
            {
                "input": items[start : start + self.batch_size],
                "input_type": input_type,
                "encoding_format": "base64",
                "truncate": self.truncate,
                **({"model": self.model} if self.model else {}),
            }
            for start in range(0, len(items), self.batch_size)
        ]

    def _rerank_bodies(self, query: str, documents: Sequence[str]) -> list[dict[str, Any]]:
        validate_text(query, "query")
        docs = validate_texts(documents)
        return [
            {
                "query": query,
                "documents": docs[start : start + self.batch_size],
                **({"model": self.model} if self.model else {}),
            }
            for start in range(0, len(docs), self.batch_size)
        ]

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        if self._sync is None:
            self._sync = httpx.Client(
                base_url=self.base_url, headers=self._headers, timeout=self.timeout_s
            )
        for attempt in range(self.max_retries + 1):
            try:
                response = self._sync.request(method, path, json=body)
            except httpx.TransportError as error:
                if attempt == self.max_retries:
                    raise RemoteServiceError(
                        0, f"unreachable: {error}", "unreachable", None
                    ) from error
                time.sleep(_backoff(attempt))
                continue
            if response.status_code in _RETRY_STATUS and attempt < self.max_retries:
                time.sleep(self._wait(response, attempt))
                continue
            return _answer(response)
        raise AssertionError("unreachable")  # the loop always returns or raises

    async def _apost(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = httpx.AsyncClient(
                base_url=self.base_url, headers=self._headers, timeout=self.timeout_s
            )
            # One client per loop: an httpx.AsyncClient's connections belong to its loop.
            self._async = {k: v for k, v in self._async.items() if not k.is_closed()}
            self._async[loop] = client
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.post(path, json=body)
            except httpx.TransportError as error:
                if attempt == self.max_retries:
                    raise RemoteServiceError(
                        0, f"unreachable: {error}", "unreachable", None
                    ) from error
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code in _RETRY_STATUS and attempt < self.max_retries:
                await asyncio.sleep(self._wait(response, attempt))
                continue
            return _answer(response)
        raise AssertionError("unreachable")

    def _wait(self, response: httpx.Response, attempt: int) -> float:
        header = response.headers.get("retry-after", "")
        try:
            wait = float(header)
        except ValueError:
            wait = _backoff(attempt)
        return min(max(wait, 0.0), self.max_retry_wait_s)

    @staticmethod
    def _vectors(answer: dict[str, Any]) -> np.ndarray:
        rows = sorted(answer["data"], key=lambda d: d["index"])
        if answer.get("truncated"):
            logger.warning(
                "%d of %d texts were longer than the served model's limit and were "
                "truncated to fit it",
                len(answer["truncated"]),
                len(rows),
            )
        return np.stack(
            [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in rows]
        ).astype(np.float32, copy=False)


def _check_input_type(input_type: str) -> None:
    if input_type not in ("query", "document"):
        raise InputError(f"input_type must be 'query' or 'document', not {input_type!r}")


def _backoff(attempt: int) -> float:
    return min(0.25 * 2**attempt, 4.0)


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.is_success and isinstance(payload, dict):
        return payload
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        raise RemoteServiceError(
            response.status_code, str(error.get("message")), error.get("code"), error.get("param")
        )
    raise RemoteServiceError(response.status_code, response.text[:500], None, None)


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _merge(
    answers: list[dict[str, Any]], batch_size: int, top_n: int | None
) -> list[tuple[int, float]]:
    """The results of every chunk, indices made global, best first (ties by index)."""
    ranked = [
        (chunk * batch_size + int(r["index"]), float(r["relevance_score"]))
        for chunk, answer in enumerate(answers)
        for r in answer["results"]
    ]
    if len(answers) > 1:
        ranked.sort(key=lambda pair: (-pair[1], pair[0]))
    return ranked if top_n is None else ranked[:top_n]

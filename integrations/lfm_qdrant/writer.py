"""``MultiVectorWriter``: index texts in Qdrant with dense + ColBERT vectors; two-stage search.

The add and search logic is written once, as generators of steps (client calls and
encoding work); a sync driver runs them on a ``QdrantClient``, an async driver on an
``AsyncQdrantClient`` with the encoding moved to a worker thread. So both clients get the
same batching, checks and retries.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import numbers
import os
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from qdrant_client import models
from tqdm.auto import tqdm

from lfm_core import CollectionError, InputError, validate_texts

from .layout import COLBERT, DENSE, Layout, Quantization, check_layout
from .upload import (
    CLIENT_ERRORS,
    DEFAULT_MAX_REQUEST_BYTES,
    MAX_MULTIVECTOR_FLOATS,
    RetryPolicy,
    estimate_point_bytes,
    fit_multivector,
    split_requests,
)

__all__ = ["ID_NAMESPACE", "MultiVectorWriter", "point_id"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

ID_NAMESPACE = uuid.UUID("4b681242-7a7f-5ae8-a655-56de7db3873f")
"""UUIDv5 namespace of the point ids made from strings:
``uuid5(NAMESPACE_URL, "lfm-retrieval/lfm_qdrant/point-id")``."""


def point_id(key: str | int) -> str:
    """The Qdrant point id that :meth:`MultiVectorWriter.add` stores for a text or an id.

    - an ``int`` (or numpy integer) in ``[0, 2**64)`` is a Qdrant integer id, returned as
      its decimal string;
    - a ``str`` that is a UUID is kept (in canonical lower-case form);
    - any other ``str`` (a text, or a key such as ``"doc-17"``) becomes
      ``uuid5(ID_NAMESPACE, key)``. The same key always gives the same id, which is what
      makes re-running ``add`` idempotent.

    Args:
        key: the text of a document, or the caller's id for it.

    Raises:
        TypeError: ``key`` is not a ``str`` or an ``int`` (``bool`` is refused too).
        InputError: ``key`` is an ``int`` outside Qdrant's range ``[0, 2**64)``.

    >>> point_id(7)
    '7'
    >>> point_id("6F9619FF-8B86-D011-B42D-00C04FC964FF")
    '6f9619ff-8b86-d011-b42d-00c04fc964ff'
    >>> point_id("hello") == point_id("hello") != point_id("hello ")
    True
    """
    if isinstance(key, bool) or not isinstance(key, (str, numbers.Integral)):
        raise TypeError(f"a point id must be a str or an int, not {type(key).__name__}")
    if isinstance(key, numbers.Integral):  # int, or numpy / pandas integers
        if not 0 <= key < 2**64:
            raise InputError(f"an integer point id must be in [0, 2**64), got {key}")
        return str(int(key))
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return str(uuid.uuid5(ID_NAMESPACE, key))


def _stored_id(key: str | int, normalized: str) -> str | int:
    # Qdrant's integer ids travel as ints; UUIDs as strings.
    return int(normalized) if isinstance(key, numbers.Integral) else normalized


@dataclass(frozen=True)
class _Call:
    """One client method call; ``returns_errors`` are handed back to the step as values."""

    method: str
    kwargs: Mapping[str, Any]
    returns_errors: tuple[type[Exception], ...] = ()


@dataclass(frozen=True)
class _Work:
    """CPU-bound work (encoding); the async driver runs it in a worker thread."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = field(default_factory=tuple)


_Steps = Generator["_Call | _Work", Any, T]


@dataclass
class _Batch:
    """The points of one encoded batch, their size estimates and what had to be cut."""

    points: list[models.PointStruct]
    sizes: list[int]
    truncated: int = 0
    without_colbert: int = 0


class MultiVectorWriter:
    """Writes texts to a Qdrant collection with dense and ColBERT vectors, and searches it.

    The collection (created on the first :meth:`add` if missing) holds named vectors
    ``dense`` (cosine, HNSW) and ``colbert`` (multivector, ``MAX_SIM``, HNSW off) and the
    payload ``{"text": text, **metadata}``. :meth:`search` finds candidates with ``dense``
    and reranks them with ``colbert`` inside Qdrant, in one ``query_points`` call.
    Either model may be left out: a dense-only or ColBERT-only collection works the same.

    Args:
        client: a ``QdrantClient`` or ``AsyncQdrantClient`` you built: ``":memory:"``,
            ``path=...`` (embedded, on disk), or a server / cluster ``url=``. With an async
            client use :meth:`aadd` and :meth:`asearch`.
        collection_name: the collection to write and search.
        dense: a loaded ``lfm_core.DenseEncoder``, a model name or local folder to load one
            from, or ``None``.
        colbert: a loaded ``lfm_core.LateInteractionEncoder``, a model name or folder, or ``None``.
        device: where to load models given by name (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
        quantization: ``"scalar"`` (int8) or ``"binary"`` quantization of both vectors, or
            ``None``; applied when the collection is created.
        on_disk: keep original vectors and payload on disk (memory-mapped) when the
            collection is created; quantized copies stay in RAM.
        batch_size: texts encoded and written per step, and the most points in one request.
            A crash loses at most one step's work; memory stays bounded by it.
        max_request_bytes: cap on the (estimated, REST-encoded) size of one upsert request;
            the server refuses requests over 32 MB by default.
        max_retries: retries of a client call that failed with a transient error (network,
            rate limit, 502/503/504, gRPC UNAVAILABLE ...), with exponential backoff.
        retry_backoff_s: wait before the first retry, doubled after each.
        show_progress: progress bar for :meth:`add`; ``None`` shows it on a terminal only.

    Attributes:
        client: the Qdrant client.
        collection_name: the collection's name.
        dense: the dense encoder, or ``None``.
        colbert: the ColBERT encoder, or ``None``.

    Raises:
        TypeError: an encoder argument of the wrong kind, or no encoder at all.
        InputError: a batch or size setting below 1.

    Example::

        from qdrant_client import QdrantClient
        from lfm_qdrant import MultiVectorWriter

        writer = MultiVectorWriter(
            QdrantClient(path="index"), "docs",
            dense="LiquidAI/LFM2.5-Embedding-350M", colbert="LiquidAI/LFM2.5-ColBERT-350M",
        )
        ids = writer.add(["first doc", "second doc"], metadata=[{"n": 1}, {"n": 2}])
        best = writer.search("which doc?", limit=1)[0].payload["text"]
    """

    def __init__(
        self,
        client: Any,
        collection_name: str,
        dense: Any = None,
        colbert: Any = None,
        *,
        device: str = "auto",
        quantization: Quantization | None = None,
        on_disk: bool = False,
        batch_size: int = 64,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_retries: int = 5,
        retry_backoff_s: float = 0.5,
        show_progress: bool | None = None,
    ) -> None:
        if not isinstance(collection_name, str) or not collection_name:
            raise TypeError(f"collection_name must be a non-empty str, not {collection_name!r}")
        for name, value in (("batch_size", batch_size), ("max_request_bytes", max_request_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an int >= 1, got {value!r}")
        if quantization not in (None, "scalar", "binary"):
            raise InputError(
                f"quantization must be 'scalar', 'binary' or None, not {quantization!r}"
            )
        self.client = client
        self.collection_name = collection_name
        self.dense = _load_encoder(dense, "dense", device)
        self.colbert = _load_encoder(colbert, "colbert", device)
        if self.dense is None and self.colbert is None:
            raise TypeError("MultiVectorWriter needs dense=, colbert= or both; got neither")
        self._layout = Layout(
            dense_dim=None if self.dense is None else int(self.dense.dim),
            colbert_dim=None if self.colbert is None else int(self.colbert.dim),
            quantization=quantization,
            on_disk=on_disk,
        )
        self._batch_size = batch_size
        self._max_request_bytes = max_request_bytes
        self._retry = RetryPolicy(max_retries=max_retries, backoff_s=retry_backoff_s)
        self._show_progress = show_progress
        self._is_async = inspect.iscoroutinefunction(getattr(client, "query_points", None))
        self._layout_checked = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(collection_name={self.collection_name!r}, "
            f"dense={_model_name(self.dense)}, colbert={_model_name(self.colbert)})"
        )

    # ---------------------------------------------------------------- public, sync

    def add(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
        *,
        skip_existing: bool = False,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Encode and upsert texts, one batch at a time; idempotent.

        Point ids are the caller's ``ids`` or ``point_id(text)``, so adding the same input
        again overwrites the same points: an interrupted run is completed by running it
        again, without duplicates. Everything is validated before the first write.

        Args:
            texts: the documents (any iterable of ``str``; a generator is read once).
            ids: one id per text: ``int`` >= 0, a UUID string, or any other string (stored
                as ``point_id(key)``). Default: ``point_id(text)``.
            metadata: one mapping (or ``None``) per text, merged into the payload next to
                ``"text"``; it must not have a ``"text"`` key itself.
            skip_existing: before encoding a batch, fetch its ids and skip the points stored
                with exactly this payload. Makes resuming a long run cheap; only correct
                if the stored points were written by the same models.
            show_progress: overrides the writer's ``show_progress`` for this call.

        Returns:
            The point ids (``str``) in input order, also for skipped points.

        Raises:
            TypeError: a text is not a ``str``, an id not ``str``/``int``, a metadata item
                not a mapping; or the client is async (use :meth:`aadd`).
            InputError: ``ids``/``metadata`` length differs from ``texts``; two texts share
                an id; a metadata item has a ``"text"`` key.
            CollectionError: the collection exists with another layout.
        """
        self._require_sync("add", "aadd")
        return self._run(self._add_steps(texts, ids, metadata, skip_existing, show_progress))

    def search(
        self,
        query: str,
        limit: int = 10,
        prefetch_limit: int = 100,
        query_filter: models.Filter | None = None,
    ) -> list[models.ScoredPoint]:
        """Two-stage search in one ``query_points`` call: dense prefetch, ColBERT MaxSim rerank.

        With only a dense model it is a dense search; with only a ColBERT model, MaxSim
        over the whole (filtered) collection.

        Args:
            query: the query text; the encoders apply their query prompt or prefix.
            limit: how many points to return.
            prefetch_limit: candidates the dense stage hands to the rerank (>= ``limit``);
                unused without both models.
            query_filter: a Qdrant filter on the payload, applied to both stages.

        Returns:
            Best first; ``point.payload["text"]`` is the text, ``point.score`` the MaxSim
            score (or the cosine similarity without ColBERT).

        Raises:
            TypeError: ``query`` is not a ``str``, or the client is async (use :meth:`asearch`).
            InputError: ``limit`` or ``prefetch_limit`` below 1, or ``prefetch_limit < limit``.
            CollectionError: the collection does not exist or has another layout.
        """
        self._require_sync("search", "asearch")
        return self._run(self._search_steps(query, limit, prefetch_limit, query_filter))

    # --------------------------------------------------------------- public, async

    async def aadd(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
        *,
        skip_existing: bool = False,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Async :meth:`add`: awaits an ``AsyncQdrantClient``, encodes in a worker thread.

        With a sync client the whole :meth:`add` runs in a worker thread.
        """
        steps = self._add_steps(texts, ids, metadata, skip_existing, show_progress)
        if not self._is_async:
            return await asyncio.to_thread(self._run, steps)
        return await self._arun(steps)

    async def asearch(
        self,
        query: str,
        limit: int = 10,
        prefetch_limit: int = 100,
        query_filter: models.Filter | None = None,
    ) -> list[models.ScoredPoint]:
        """Async :meth:`search`; same arguments and results."""
        steps = self._search_steps(query, limit, prefetch_limit, query_filter)
        if not self._is_async:
            return await asyncio.to_thread(self._run, steps)
        return await self._arun(steps)

    # ------------------------------------------------------------------- the steps

    def _add_steps(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None,
        metadata: Iterable[Mapping[str, Any] | None] | None,
        skip_existing: bool,
        show_progress: bool | None,
    ) -> _Steps[list[str]]:
        texts = validate_texts(texts)
        keys, point_ids = _validate_ids(ids, texts)
        payloads = _payloads(metadata, texts)
        if not texts:
            return []
        yield from self._ensure_collection(create=True)
        show = self._show_progress if show_progress is None else show_progress
        truncated = without_colbert = 0
        with tqdm(total=len(texts), unit="doc", disable=_tqdm_disable(show)) as bar:
            for start in range(0, len(texts), self._batch_size):
                todo = list(range(start, min(start + self._batch_size, len(texts))))
                if skip_existing:
                    todo = yield from self._not_stored(todo, keys, payloads)
                    bar.update(min(self._batch_size, len(texts) - start) - len(todo))
                if not todo:
                    continue
                batch = yield _Work(
                    self._encode_batch,
                    (
                        [texts[i] for i in todo],
                        [keys[i] for i in todo],
                        [payloads[i] for i in todo],
                    ),
                )
                truncated += batch.truncated
                without_colbert += batch.without_colbert
                for part in split_requests(batch.sizes, self._max_request_bytes, self._batch_size):
                    points = batch.points[part]
                    yield _Call(
                        "upsert",
                        {"collection_name": self.collection_name, "points": points, "wait": True},
                    )
                    bar.update(len(points))
        _log_cuts(truncated, without_colbert, self._layout.colbert_dim)
        return point_ids

    def _not_stored(
        self, todo: list[int], keys: list[str | int], payloads: list[dict[str, Any]]
    ) -> _Steps[list[int]]:
        records = yield _Call(
            "retrieve",
            {
                "collection_name": self.collection_name,
                "ids": [keys[i] for i in todo],
                "with_payload": True,
                "with_vectors": False,
            },
        )
        stored = {str(record.id): record.payload for record in records}
        return [i for i in todo if stored.get(str(keys[i])) != payloads[i]]

    def _encode_batch(
        self, texts: list[str], keys: list[str | int], payloads: list[dict[str, Any]]
    ) -> _Batch:
        dense = (
            None if self.dense is None else self.dense.encode_documents(texts, show_progress=False)
        )
        colbert = (
            None
            if self.colbert is None
            else self.colbert.encode_documents(texts, show_progress=False)
        )
        batch = _Batch(points=[], sizes=[])
        for j, key in enumerate(keys):
            vector: dict[str, Any] = {}
            n_floats = 0
            if dense is not None:
                vector[DENSE] = np.asarray(dense[j], dtype=np.float32).tolist()
                n_floats += len(vector[DENSE])
            if colbert is not None:
                rows, cut = fit_multivector(np.asarray(colbert[j], dtype=np.float32))
                batch.truncated += cut
                if rows.shape[0] == 0:
                    # Qdrant refuses an empty multivector; the point keeps its dense vector.
                    batch.without_colbert += 1
                else:
                    vector[COLBERT] = rows.tolist()
                    n_floats += rows.size
            # Unvalidated: the id is checked, the vectors are lists of Python floats from
            # numpy; pydantic's per-number check of the vector union would double our time.
            point = models.PointStruct.model_construct(id=key, vector=vector, payload=payloads[j])
            batch.points.append(point)
            batch.sizes.append(estimate_point_bytes(n_floats, payloads[j]))
        return batch

    def _search_steps(
        self,
        query: str,
        limit: int,
        prefetch_limit: int,
        query_filter: models.Filter | None,
    ) -> _Steps[list[models.ScoredPoint]]:
        if not isinstance(query, str):
            what = "None" if query is None else f"a {type(query).__name__}"
            raise TypeError(f"query is {what}; expected str")
        for name, value in (("limit", limit), ("prefetch_limit", prefetch_limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an int >= 1, got {value!r}")
        two_stage = self.dense is not None and self.colbert is not None
        if two_stage and prefetch_limit < limit:
            raise InputError(
                f"prefetch_limit ({prefetch_limit}) is smaller than limit ({limit}); the "
                "rerank can only return candidates the dense stage found"
            )
        yield from self._ensure_collection(create=False)
        request = yield _Work(self._query_request, (query, limit, prefetch_limit, query_filter))
        response = yield _Call("query_points", request)
        return list(response.points)

    def _query_request(
        self, query: str, limit: int, prefetch_limit: int, query_filter: models.Filter | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "collection_name": self.collection_name,
            "limit": limit,
            # The server pushes this filter down into the prefetch too.
            "query_filter": query_filter,
            "with_payload": True,
        }
        dense = None
        if self.dense is not None:
            dense = self.dense.encode_queries([query], show_progress=False)[0].tolist()
        if self.colbert is None:
            return {**request, "query": dense, "using": DENSE}
        colbert = self.colbert.encode_queries([query], show_progress=False)[0].tolist()
        request.update(query=colbert, using=COLBERT)
        if dense is not None:
            request["prefetch"] = models.Prefetch(query=dense, using=DENSE, limit=prefetch_limit)
        return request

    def _ensure_collection(self, *, create: bool) -> _Steps[None]:
        if self._layout_checked:
            return
        name = self.collection_name
        exists = yield _Call("collection_exists", {"collection_name": name})
        if not exists and not create:
            raise CollectionError(
                f"collection {name!r} does not exist; write to it with add() first"
            )
        if not exists:
            # Another writer may create it between our check and our create: then the
            # create fails (ValueError in local mode, 409 from a server) and we check theirs.
            error = yield _Call(
                "create_collection",
                self._layout.create_kwargs(name),
                returns_errors=(ValueError, *CLIENT_ERRORS),
            )
            if isinstance(error, Exception):
                if not (yield _Call("collection_exists", {"collection_name": name})):
                    raise error
                exists = True
        if exists:
            info = yield _Call("get_collection", {"collection_name": name})
            check_layout(info, self._layout, name)
        self._layout_checked = True

    # ------------------------------------------------------------------ the drivers

    def _require_sync(self, method: str, async_method: str) -> None:
        if self._is_async:
            raise TypeError(
                f"{method}() needs a sync QdrantClient; with {type(self.client).__name__} "
                f"use `await writer.{async_method}(...)`"
            )

    def _run(self, steps: _Steps[T]) -> T:
        result: Any = None
        while True:
            try:
                step = steps.send(result)
            except StopIteration as done:
                return done.value
            if isinstance(step, _Work):
                result = step.fn(*step.args)
                continue
            try:
                result = self._call(step)
            except step.returns_errors as error:
                result = error

    def _call(self, step: _Call) -> Any:
        method = getattr(self.client, step.method)
        attempt = 0
        while True:
            try:
                return method(**step.kwargs)
            except CLIENT_ERRORS as error:
                delay = self._retry.delay(attempt, error)
                if delay is None:
                    raise
                self._retry.log_retry(
                    f"{step.method} on {self.collection_name!r}", attempt, error, delay
                )
                time.sleep(delay)
                attempt += 1

    async def _arun(self, steps: _Steps[T]) -> T:
        result: Any = None
        while True:
            try:
                step = steps.send(result)
            except StopIteration as done:
                return done.value
            if isinstance(step, _Work):
                result = await asyncio.to_thread(step.fn, *step.args)
                continue
            try:
                result = await self._acall(step)
            except step.returns_errors as error:
                result = error

    async def _acall(self, step: _Call) -> Any:
        method = getattr(self.client, step.method)
        attempt = 0
        while True:
            try:
                return await method(**step.kwargs)
            except CLIENT_ERRORS as error:
                delay = self._retry.delay(attempt, error)
                if delay is None:
                    raise
                self._retry.log_retry(
                    f"{step.method} on {self.collection_name!r}", attempt, error, delay
                )
                await asyncio.sleep(delay)
                attempt += 1


# ---------------------------------------------------------------------- validation


def _load_encoder(value: Any, kind: str, device: str) -> Any:
    """An encoder object from what the caller passed as ``dense=`` or ``colbert=``."""
    if value is None:
        return None
    from lfm_core import DenseEncoder, LateInteractionEncoder

    cls, other = (
        (DenseEncoder, LateInteractionEncoder)
        if kind == "dense"
        else (LateInteractionEncoder, DenseEncoder)
    )
    if isinstance(value, (str, os.PathLike)):
        return cls.from_pretrained(value, device=device)
    if isinstance(value, other):
        raise TypeError(f"{kind}= got a {type(value).__name__}; pass it as the other argument")
    missing = [a for a in ("dim", "encode_queries", "encode_documents") if not hasattr(value, a)]
    if missing:
        raise TypeError(
            f"{kind} must be a {cls.__name__}, a model name or folder, or None; "
            f"got {type(value).__name__} (no {', '.join(missing)})"
        )
    return value


def _validate_ids(
    ids: Iterable[str | int] | None, texts: list[str]
) -> tuple[list[str | int], list[str]]:
    """The ids as sent to Qdrant and as returned to the caller; refuses duplicates."""
    if ids is None:
        keys: list[str | int] = [point_id(text) for text in texts]
        returned = [str(key) for key in keys]
        given = None
    else:
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a list of str or int, not a single str")
        given = list(ids)
        if len(given) != len(texts):
            raise InputError(
                f"ids has {len(given)} items but texts has {len(texts)}; pass one id per text"
            )
        returned = []
        for i, key in enumerate(given):
            try:
                returned.append(point_id(key))
            except (TypeError, InputError) as error:
                raise type(error)(f"ids[{i}]: {error}") from None
        keys = [_stored_id(key, norm) for key, norm in zip(given, returned, strict=True)]
    first_seen: dict[str, int] = {}
    for i, norm in enumerate(returned):
        j = first_seen.setdefault(norm, i)
        if j != i:
            if given is None:
                raise InputError(
                    f"texts[{j}] and texts[{i}] are the same text, so they get the same point "
                    "id; drop the duplicate, or pass ids= to store both"
                )
            raise InputError(
                f"ids[{j}] and ids[{i}] are the same point id ({norm}); ids must be unique"
            )
    return keys, returned


def _payloads(
    metadata: Iterable[Mapping[str, Any] | None] | None, texts: list[str]
) -> list[dict[str, Any]]:
    """``{"text": text, **metadata}`` for each text."""
    if metadata is None:
        return [{"text": text} for text in texts]
    if isinstance(metadata, Mapping):
        raise TypeError("metadata must be a list with one mapping per text, not a single mapping")
    items = list(metadata)
    if len(items) != len(texts):
        raise InputError(
            f"metadata has {len(items)} items but texts has {len(texts)}; "
            "pass one mapping (or None) per text"
        )
    payloads = []
    for i, (text, meta) in enumerate(zip(texts, items, strict=True)):
        if meta is None:
            meta = {}
        if not isinstance(meta, Mapping):
            raise TypeError(f"metadata[{i}] is a {type(meta).__name__}; expected a mapping or None")
        bad = [key for key in meta if not isinstance(key, str)]
        if bad:
            raise TypeError(f"metadata[{i}] has a non-str key {bad[0]!r}; payload keys are str")
        if "text" in meta:
            raise InputError(
                f"metadata[{i}] has a 'text' key, but payload['text'] holds the document "
                "text; rename that metadata key"
            )
        payloads.append({"text": text, **meta})
    return payloads


def _log_cuts(truncated: int, without_colbert: int, colbert_dim: int | None) -> None:
    if truncated:
        logger.warning(
            "%d document(s) had more token vectors than Qdrant stores in one multivector "
            "(%d numbers); kept the first %d vectors of each",
            truncated,
            MAX_MULTIVECTOR_FLOATS,
            MAX_MULTIVECTOR_FLOATS // (colbert_dim or 1),
        )
    if without_colbert:
        logger.warning(
            "%d document(s) got no ColBERT vectors (empty, or only skiplisted tokens); "
            "they are stored without a 'colbert' vector and a rerank cannot return them",
            without_colbert,
        )


def _tqdm_disable(show: bool | None) -> bool | None:
    # tqdm: disable=None hides the bar when stderr is not a terminal.
    return None if show is None else not show


def _model_name(encoder: Any) -> str | None:
    if encoder is None:
        return None
    return repr(getattr(encoder, "model_name", type(encoder).__name__))

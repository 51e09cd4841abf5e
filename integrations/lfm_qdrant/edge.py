"""``EdgeStore``: Qdrant's own engine in-process (Qdrant Edge), behind the client calls we use.

A store is a folder with one Edge shard per collection::

    STORE/
      lfm-store.json            {"format": "lfm-qdrant-edge", "version": 1}
      .lock                     held by the one process that has the store open
      collections/NAME/
        collection.json         vectors config + collection metadata (the model record)
        shard/                  the Edge shard (segments, WAL, edge_config.json)

:class:`EdgeStore` answers the ``QdrantClient`` methods :class:`~lfm_qdrant.MultiVectorWriter`
calls (``collection_exists``, ``create_collection``, ``get_collection``, ``upsert``,
``retrieve``, ``query_points``, ``query_batch_points``, ``delete``, ``count``, ...), taking
and returning ``qdrant_client.models`` objects. So the writer drives it exactly as it drives
a server, and code written against a client reads the same.

Durability: every update goes through the shard's write-ahead log before it returns, so a
process killed after ``upsert`` returned loses nothing; ``close()`` (also on exit of a
``with`` block) flushes the segments. One process at a time may open a store: a second one
gets :class:`StoreError` naming the folder. Within a process, calls are serialized by a lock.

Edge (``qdrant-edge-py``) raises plain ``Exception`` for engine errors; they are turned into
:class:`StoreError` with the collection named, at the one place where the engine is called.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import models
from qdrant_client.http import models as rest

from lfm_core import CollectionError

from .layout import validate_collection_name

__all__ = ["EdgeStore", "StoreError", "is_local_mode_folder"]

STORE_FORMAT = "lfm-qdrant-edge"
STORE_VERSION = 1
_MARKER = "lfm-store.json"
_RECORD = "collection.json"
# The engine plans HNSW for segments above this many KB; below it a segment is scanned.
_HNSW_DEFAULTS = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000}


class StoreError(CollectionError):
    """An Edge store that cannot be opened or written: not a store, in use, disk errors."""


def is_local_mode_folder(path: Path) -> bool:
    """Whether ``path`` was written by qdrant-client's local mode (``QdrantClient(path=...)``)."""
    return (path / "meta.json").is_file() and not (path / _MARKER).exists()


class EdgeStore:
    """A folder of Qdrant Edge shards, one per collection, used like a ``QdrantClient``.

    Args:
        path: the store folder; created if missing. A folder that holds other files, or
            one written by qdrant-client's local mode, is refused.

    Raises:
        StoreError: the folder is not a store, is in use by another process, or cannot be
            created.

    Example::

        from lfm_qdrant import EdgeStore, MultiVectorWriter

        with EdgeStore("./index") as store:
            writer = MultiVectorWriter(store, "faq", dense=dense, colbert=colbert)
            writer.add(texts)
            hits = writer.search("where is my order?")
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._shards: dict[str, qe.EdgeShard] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._mutex = threading.RLock()
        self._lock_file: Any = None
        self._closed = False
        self._open_folder()
        # A store the caller forgets to close is still flushed when the interpreter exits.
        weakref.finalize(self, _flush_all, self._shards)

    # ------------------------------------------------------------------ lifecycle

    def _open_folder(self) -> None:
        path = self.path
        try:
            if path.exists() and not path.is_dir():
                raise StoreError(f"{str(path)!r} is a file, not a Qdrant Edge store folder")
            marker = path / _MARKER
            if path.is_dir() and not marker.is_file():
                if is_local_mode_folder(path):
                    raise StoreError(
                        f"{str(path)!r} was written by qdrant-client's local mode (lfm-retrieval "
                        "0.1); the embedded store is now Qdrant Edge. Re-index into a new folder: "
                        "`lfm-retrieval index CORPUS --collection NAME --path NEW_FOLDER`, then "
                        "delete the old one"
                    )
                if any(path.iterdir()):
                    raise StoreError(
                        f"{str(path)!r} is not a Qdrant Edge store (no {_MARKER}) and is not "
                        "empty; pass an empty or new folder"
                    )
            path.mkdir(parents=True, exist_ok=True)
            self._lock()
            if not marker.is_file():
                _write_json(marker, {"format": STORE_FORMAT, "version": STORE_VERSION})
            else:
                meta = _read_json(marker)
                if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
                    raise StoreError(f"{marker} is not an lfm-retrieval store marker")
                if meta.get("version") != STORE_VERSION:
                    raise StoreError(
                        f"{str(path)!r} is a store of version {meta.get('version')!r}; this "
                        f"lfm-retrieval reads version {STORE_VERSION}"
                    )
            (path / "collections").mkdir(exist_ok=True)
        except OSError as error:
            self._unlock()
            raise StoreError(
                f"cannot open the Qdrant Edge store {str(path)!r}: {error.strerror or error}"
            ) from None
        except StoreError:
            self._unlock()
            raise

    def _lock(self) -> None:
        lock_path = self.path / ".lock"
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the store's lifetime
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise StoreError(
                    f"the Qdrant Edge store {str(self.path)!r} is in use by another process; "
                    "wait for it to finish, or use another folder"
                ) from None
        self._lock_file = handle

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    def flush(self) -> None:
        """Write every shard's pending changes to its segments."""
        with self._mutex:
            for name, shard in self._shards.items():
                self._engine(name, shard.flush)

    def close(self, **kwargs: Any) -> None:
        """Flush and close every shard and release the folder; safe to call twice."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                for name, shard in self._shards.items():
                    self._engine(name, shard.flush)
                    self._engine(name, shard.close)
            finally:
                self._shards.clear()
                self._unlock()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EdgeStore({str(self.path)!r})"

    # ---------------------------------------------------------------- collections

    def get_collections(self) -> models.CollectionsResponse:
        """All collections of the store."""
        with self._mutex:
            folder = self.path / "collections"
            names = sorted(p.name for p in folder.iterdir() if (p / _RECORD).is_file())
        return models.CollectionsResponse(
            collections=[models.CollectionDescription(name=n) for n in names]
        )

    def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        """Whether the collection has been created."""
        validate_collection_name(collection_name)
        return (self._folder(collection_name) / _RECORD).is_file()

    def create_collection(
        self,
        collection_name: str,
        vectors_config: Mapping[str, models.VectorParams],
        *,
        on_disk_payload: bool | None = None,
        metadata: Mapping[str, Any] | None = None,
        **cluster: Any,
    ) -> bool:
        """Create a collection of named vectors.

        Cluster settings (``shard_number``, ``replication_factor``, ...) are accepted and
        ignored: an embedded store is one shard on one machine.

        Raises:
            ValueError: the collection exists (as local mode does; a server answers 409).
            StoreError: the folder cannot be written.
        """
        validate_collection_name(collection_name)
        if not isinstance(vectors_config, Mapping):
            raise TypeError("an Edge store needs named vectors: vectors_config={name: params}")
        with self._mutex:
            self._check_open()
            folder = self._folder(collection_name)
            if (folder / _RECORD).is_file():
                raise ValueError(f"Collection {collection_name} already exists")
            record = {
                "vectors": {
                    name: params.model_dump(mode="json", exclude_none=True)
                    for name, params in vectors_config.items()
                },
                "on_disk_payload": on_disk_payload,
                "metadata": dict(metadata or {}),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            try:
                if folder.exists():  # a create that died before its record was written
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                _write_json(folder / _RECORD, record)
            except OSError as error:
                raise StoreError(
                    f"cannot create collection {collection_name!r} in {str(self.path)!r}: "
                    f"{error.strerror or error}"
                ) from None
            self._records[collection_name] = record
            self._shard(collection_name)
        return True

    def get_collection(self, collection_name: str, **kwargs: Any) -> models.CollectionInfo:
        """The collection's vectors config, metadata and counts, as a server reports them."""
        with self._mutex:
            record = self._record(collection_name)
            shard = self._shard(collection_name)
            info = self._engine(collection_name, shard.info)
        vectors = {
            name: models.VectorParams.model_validate(params)
            for name, params in record["vectors"].items()
        }
        config: dict[str, Any] = {
            "params": models.CollectionParams(
                vectors=vectors, on_disk_payload=record.get("on_disk_payload")
            ),
            "hnsw_config": models.HnswConfig(**_HNSW_DEFAULTS),
            "metadata": record.get("metadata") or None,
        }
        return models.CollectionInfo(
            status=models.CollectionStatus.GREEN,
            optimizer_status=models.OptimizersStatusOneOf.OK,
            points_count=info.points_count,
            indexed_vectors_count=info.indexed_vectors_count,
            segments_count=info.segments_count,
            payload_schema={},
            # Built without validation: Edge has no server optimizer config to report.
            config=models.CollectionConfig.model_construct(**config),
        )

    def update_collection(
        self, collection_name: str, *, metadata: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> bool:
        """Merge ``metadata`` into the collection's metadata (as a server does)."""
        with self._mutex:
            record = dict(self._record(collection_name))
            if metadata is not None:
                record["metadata"] = {**(record.get("metadata") or {}), **metadata}
            try:
                _write_json(self._folder(collection_name) / _RECORD, record)
            except OSError as error:
                raise StoreError(
                    f"cannot write the record of collection {collection_name!r}: "
                    f"{error.strerror or error}"
                ) from None
            self._records[collection_name] = record
        return True

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        """Delete a collection and its files; ``False`` if it did not exist."""
        validate_collection_name(collection_name)
        with self._mutex:
            self._check_open()
            folder = self._folder(collection_name)
            if not folder.exists():
                return False
            shard = self._shards.pop(collection_name, None)
            if shard is not None:
                self._engine(collection_name, shard.close)
            self._records.pop(collection_name, None)
            shutil.rmtree(folder)
        return True

    def optimize(self, collection_name: str) -> bool:
        """Build the collection's indexes now (HNSW of the dense vector), blocking.

        Returns:
            Whether any segment was rebuilt.
        """
        with self._mutex:
            shard = self._shard(collection_name)
            return bool(self._engine(collection_name, shard.optimize))

    def create_payload_index(
        self,
        collection_name: str,
        field_name: str,
        field_schema: models.PayloadSchemaType = models.PayloadSchemaType.KEYWORD,
        wait: bool = True,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Index a payload field (keyword only), so filters on it need no full scan."""
        if field_schema != models.PayloadSchemaType.KEYWORD:
            raise TypeError(f"an Edge store indexes keyword fields only, not {field_schema!r}")
        operation = qe.UpdateOperation.create_field_index(field_name, qe.PayloadSchemaType.Keyword)
        with self._mutex:
            shard = self._shard(collection_name)
            self._engine(collection_name, shard.update, operation)
        return models.UpdateResult(status=models.UpdateStatus.COMPLETED)

    # --------------------------------------------------------------------- points

    def upsert(
        self,
        collection_name: str,
        points: Sequence[models.PointStruct],
        wait: bool = True,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Insert or overwrite points; durable (in the WAL) when it returns."""
        edge_points = [qe.Point(_edge_id(p.id), _edge_vector(p.vector), p.payload) for p in points]
        with self._mutex:
            shard = self._shard(collection_name)
            self._engine(
                collection_name, shard.update, qe.UpdateOperation.upsert_points(edge_points)
            )
        return models.UpdateResult(status=models.UpdateStatus.COMPLETED)

    def delete(
        self,
        collection_name: str,
        points_selector: models.PointIdsList
        | models.FilterSelector
        | Sequence[Any]
        | models.Filter,
        wait: bool = True,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Delete points by id list or by filter."""
        if isinstance(points_selector, models.PointIdsList):
            operation = qe.UpdateOperation.delete_points(
                [_edge_id(i) for i in points_selector.points]
            )
        elif isinstance(points_selector, (models.FilterSelector, models.Filter)):
            flt = (
                points_selector.filter
                if isinstance(points_selector, models.FilterSelector)
                else points_selector
            )
            operation = qe.UpdateOperation.delete_points_by_filter(edge_filter(flt))
        else:
            operation = qe.UpdateOperation.delete_points([_edge_id(i) for i in points_selector])
        with self._mutex:
            shard = self._shard(collection_name)
            self._engine(collection_name, shard.update, operation)
        return models.UpdateResult(status=models.UpdateStatus.COMPLETED)

    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[Any],
        with_payload: bool = True,
        with_vectors: bool = False,
        **kwargs: Any,
    ) -> list[models.Record]:
        """The stored points among ``ids`` (missing ids are left out)."""
        with self._mutex:
            shard = self._shard(collection_name)
            records = self._engine(
                collection_name,
                shard.retrieve,
                [_edge_id(i) for i in ids],
                with_payload,
                with_vectors,
            )
        return [
            models.Record(
                id=_client_id(r.id), payload=r.payload, vector=r.vector if with_vectors else None
            )
            for r in records
        ]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: bool = True,
        with_vectors: bool = False,
        **kwargs: Any,
    ) -> tuple[list[models.Record], int | str | None]:
        """A page of points in id order, and the offset of the next page (``None`` at the end)."""
        request = qe.ScrollRequest(
            offset=None if offset is None else _edge_id(offset),
            limit=limit,
            filter=_maybe_filter(scroll_filter),
            with_payload=with_payload,
            with_vector=with_vectors,
        )
        with self._mutex:
            shard = self._shard(collection_name)
            records, next_offset = self._engine(collection_name, shard.scroll, request)
        return (
            [
                models.Record(
                    id=_client_id(r.id),
                    payload=r.payload,
                    vector=r.vector if with_vectors else None,
                )
                for r in records
            ],
            None if next_offset is None else _client_id(next_offset),
        )

    def count(
        self,
        collection_name: str,
        count_filter: models.Filter | None = None,
        exact: bool = True,
        **kwargs: Any,
    ) -> models.CountResult:
        """Points in the collection, or those matching ``count_filter``."""
        request = qe.CountRequest(exact=True, filter=_maybe_filter(count_filter))
        with self._mutex:
            shard = self._shard(collection_name)
            n = self._engine(collection_name, shard.count, request)
        return models.CountResult(count=int(n))

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        *,
        using: str | None = None,
        prefetch: models.Prefetch | list[models.Prefetch] | None = None,
        query_filter: models.Filter | None = None,
        limit: int = 10,
        with_payload: bool = True,
        with_vectors: bool = False,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> rest.QueryResponse:
        """One query: nearest by a dense vector or a multivector, optionally over a prefetch."""
        request = models.QueryRequest(
            query=query,
            using=using,
            prefetch=prefetch,
            filter=query_filter,
            limit=limit,
            with_payload=with_payload,
            with_vector=with_vectors,
            score_threshold=score_threshold,
        )
        (points,) = self.query_batch_points(collection_name, [request])
        return points

    def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any
    ) -> list[rest.QueryResponse]:
        """Several queries planned as one batch by the engine; one response per request."""
        batch = qe.QueryBatchRequest([_edge_query(r) for r in requests])
        with self._mutex:
            shard = self._shard(collection_name)
            results = self._engine(collection_name, shard.query_batch, batch)
        return [
            rest.QueryResponse(
                points=[
                    models.ScoredPoint(
                        id=_client_id(p.id),
                        version=p.version,
                        score=p.score,
                        payload=p.payload,
                        vector=p.vector,
                    )
                    for p in points
                ]
            )
            for points in results
        ]

    # ------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the Qdrant Edge store {str(self.path)!r} is closed")

    def _folder(self, collection_name: str) -> Path:
        return self.path / "collections" / collection_name

    def _record(self, collection_name: str) -> dict[str, Any]:
        self._check_open()
        validate_collection_name(collection_name)
        record = self._records.get(collection_name)
        if record is not None:
            return record
        path = self._folder(collection_name) / _RECORD
        if not path.is_file():
            raise CollectionError(
                f"collection {collection_name!r} does not exist in {str(self.path)!r}"
            )
        record = _read_json(path)
        if not isinstance(record, dict) or not isinstance(record.get("vectors"), dict):
            raise StoreError(f"{path} is not a collection record (no 'vectors' mapping)")
        self._records[collection_name] = record
        return record

    def _shard(self, collection_name: str) -> qe.EdgeShard:
        shard = self._shards.get(collection_name)
        if shard is not None:
            return shard
        record = self._record(collection_name)
        folder = self._folder(collection_name) / "shard"
        if (folder / "edge_config.json").is_file():
            shard = self._engine(collection_name, qe.EdgeShard.load, str(folder))
        else:
            config = _edge_config(record)
            shard = self._engine(collection_name, qe.EdgeShard.create, str(folder), config)
        self._shards[collection_name] = shard
        return shard

    def _engine(self, collection_name: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ValueError:
            raise  # bad ids and the like: the caller's input
        except Exception as error:  # the engine raises plain Exception for all its errors
            message = " ".join(str(error).split()) or type(error).__name__
            if "WouldBlock" in message:
                message = "the shard is open in another process"
            raise StoreError(
                f"Qdrant Edge, collection {collection_name!r} in {str(self.path)!r}: {message}"
            ) from error


# ----------------------------------------------------------------- conversions


def _flush_all(shards: dict[str, qe.EdgeShard]) -> None:
    for shard in shards.values():
        with contextlib.suppress(Exception):  # at exit: nothing left to report to
            shard.flush()


def _edge_config(record: Mapping[str, Any]) -> qe.EdgeConfig:
    vectors = {}
    for name, raw in record["vectors"].items():
        params = models.VectorParams.model_validate(raw)
        vectors[name] = qe.EdgeVectorParams(
            size=params.size,
            distance=_DISTANCES[params.distance],
            multivector_config=(
                qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
                if params.multivector_config is not None
                else None
            ),
            datatype=_DATATYPES.get(params.datatype) if params.datatype else None,
            hnsw_config=_edge_hnsw(params.hnsw_config),
            quantization_config=_edge_quantization(params.quantization_config),
            on_disk=params.on_disk,
        )
    return qe.EdgeConfig(vectors=vectors, on_disk_payload=record.get("on_disk_payload"))


_DISTANCES = {
    models.Distance.COSINE: qe.Distance.Cosine,
    models.Distance.DOT: qe.Distance.Dot,
    models.Distance.EUCLID: qe.Distance.Euclid,
    models.Distance.MANHATTAN: qe.Distance.Manhattan,
}
_DATATYPES = {
    models.Datatype.FLOAT32: qe.VectorStorageDatatype.Float32,
    models.Datatype.FLOAT16: qe.VectorStorageDatatype.Float16,
    models.Datatype.UINT8: qe.VectorStorageDatatype.Uint8,
    models.Datatype.TURBO8: qe.VectorStorageDatatype.Turbo8,
    models.Datatype.TURBO16: qe.VectorStorageDatatype.Turbo16,
}


def _edge_hnsw(config: models.HnswConfigDiff | None) -> qe.HnswIndexConfig | None:
    if config is None:
        return None

    def value(key: str) -> int:
        own = getattr(config, key)
        return _HNSW_DEFAULTS[key] if own is None else int(own)

    return qe.HnswIndexConfig(
        m=value("m"),
        ef_construct=value("ef_construct"),
        full_scan_threshold=value("full_scan_threshold"),
    )


def _edge_quantization(config: Any) -> Any:
    if config is None:
        return None
    if isinstance(config, models.ScalarQuantization):
        return qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8, quantile=config.scalar.quantile, always_ram=config.scalar.always_ram
        )
    if isinstance(config, models.BinaryQuantization):
        return qe.BinaryQuantizationConfig(always_ram=config.binary.always_ram)
    raise TypeError(
        f"an Edge store supports scalar and binary quantization, not {type(config).__name__}"
    )


def _edge_id(point_id: Any) -> int | uuid.UUID:
    if isinstance(point_id, bool):
        raise TypeError("a point id must be a str or an int, not bool")
    if isinstance(point_id, int):
        return point_id
    if isinstance(point_id, uuid.UUID):
        return point_id
    return uuid.UUID(str(point_id))


def _client_id(point_id: Any) -> int | str:
    return point_id if isinstance(point_id, int) else str(point_id)


def _edge_vector(vector: Any) -> Any:
    if isinstance(vector, Mapping):
        return dict(vector)
    raise TypeError("an Edge store holds named vectors: pass vector={name: values}")


def _edge_query(request: models.QueryRequest) -> qe.QueryRequest:
    return qe.QueryRequest(
        limit=request.limit or 10,
        query=_nearest(request.query, request.using),
        prefetches=[_edge_prefetch(p) for p in _as_list(request.prefetch)] or None,
        filter=_maybe_filter(request.filter),
        with_payload=bool(request.with_payload) if request.with_payload is not None else True,
        with_vector=bool(request.with_vector) if request.with_vector is not None else False,
        score_threshold=request.score_threshold,
    )


def _edge_prefetch(prefetch: models.Prefetch) -> qe.Prefetch:
    return qe.Prefetch(
        limit=prefetch.limit or 10,
        query=_nearest(prefetch.query, prefetch.using),
        prefetches=[_edge_prefetch(p) for p in _as_list(prefetch.prefetch)] or None,
        filter=_maybe_filter(prefetch.filter),
        score_threshold=prefetch.score_threshold,
    )


def _nearest(query: Any, using: str | None) -> qe.Query | None:
    if query is None:
        return None
    if isinstance(query, models.NearestQuery):
        query = query.nearest
    if isinstance(query, list):
        return qe.Query.Nearest(query, using=using)
    raise TypeError(
        f"an Edge store answers nearest-vector queries (a vector or a multivector), not "
        f"{type(query).__name__}"
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _maybe_filter(flt: models.Filter | None) -> qe.Filter | None:
    return None if flt is None else edge_filter(flt)


def edge_filter(flt: models.Filter) -> qe.Filter:
    """A ``qdrant_client`` filter as an Edge filter (the conditions our users write).

    Raises:
        TypeError: a condition Edge has no counterpart for here (geo polygons, ...).
    """
    return qe.Filter(
        must=_conditions(flt.must),
        should=_conditions(flt.should),
        must_not=_conditions(flt.must_not),
        min_should=(
            qe.MinShould(_conditions(flt.min_should.conditions) or [], flt.min_should.min_count)
            if flt.min_should is not None
            else None
        ),
    )


def _conditions(conditions: Any) -> list[Any] | None:
    if conditions is None:
        return None
    items = conditions if isinstance(conditions, list) else [conditions]
    return [_condition(c) for c in items]


def _condition(c: Any) -> Any:
    if isinstance(c, models.Filter):
        return edge_filter(c)
    if isinstance(c, models.FieldCondition):
        return qe.FieldCondition(
            key=c.key,
            match=_match(c.match),
            range=_range(c.range),
            values_count=(
                qe.ValuesCount(
                    lt=c.values_count.lt,
                    gt=c.values_count.gt,
                    lte=c.values_count.lte,
                    gte=c.values_count.gte,
                )
                if c.values_count is not None
                else None
            ),
            is_empty=c.is_empty,
            is_null=c.is_null,
            **_geo(c),
        )
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, models.IsNullCondition):
        return qe.IsNullCondition(c.is_null.key)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition({_edge_id(i) for i in c.has_id})
    if isinstance(c, models.HasVectorCondition):
        return qe.HasVectorCondition(c.has_vector)
    if isinstance(c, models.NestedCondition):
        return qe.NestedCondition(c.nested.key, edge_filter(c.nested.filter))
    raise TypeError(f"filter condition {type(c).__name__} is not supported by an Edge store")


def _match(match: Any) -> Any:
    if match is None:
        return None
    if isinstance(match, models.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(list(match.any))  # type: ignore[arg-type]
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(list(match.except_))  # type: ignore[arg-type]
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, models.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    if isinstance(match, models.MatchTextAny):
        return qe.MatchTextAny(match.text_any)
    raise TypeError(f"match {type(match).__name__} is not supported by an Edge store")


def _range(r: Any) -> Any:
    if r is None:
        return None
    if isinstance(r, models.DatetimeRange):
        iso = {
            k: None if v is None else _iso(v)
            for k, v in (("gte", r.gte), ("gt", r.gt), ("lte", r.lte), ("lt", r.lt))
        }
        return qe.RangeDateTime(**iso)
    return qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _geo(c: models.FieldCondition) -> dict[str, Any]:
    geo: dict[str, Any] = {}
    if c.geo_radius is not None:
        center = qe.GeoPoint(lon=c.geo_radius.center.lon, lat=c.geo_radius.center.lat)
        geo["geo_radius"] = qe.GeoRadius(center, c.geo_radius.radius)
    if c.geo_bounding_box is not None:
        box = c.geo_bounding_box
        geo["geo_bounding_box"] = qe.GeoBoundingBox(
            qe.GeoPoint(lon=box.top_left.lon, lat=box.top_left.lat),
            qe.GeoPoint(lon=box.bottom_right.lon, lat=box.bottom_right.lat),
        )
    if c.geo_polygon is not None:
        raise TypeError("geo_polygon filters are not supported by an Edge store")
    return geo


# ------------------------------------------------------------------------ files


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically: a crash leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StoreError(f"cannot read {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise StoreError(
            f"{path} is corrupt ({type(error).__name__}: {str(error)[:80]}); restore it from a "
            "backup, or re-index into a new folder"
        ) from None

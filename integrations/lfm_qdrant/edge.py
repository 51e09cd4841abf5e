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

Space: the engine writes through memory-mapped files, and a disk that fills under a mapped
page kills the process with a bus error. So every write, index build and (on tmpfs) open
first checks the free space against what it will need (:mod:`lfm_qdrant.space`) and
raises :class:`~lfm_qdrant.space.StoreFullError` (an ``OSError`` with ``ENOSPC``) instead.

Read-only: ``EdgeStore(path, read_only=True)`` writes no lock file, no marker and no flush;
a shard on a filesystem the process cannot write is opened from a private sparse copy
(the engine opens its data files read-write), removed on close.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import models
from qdrant_client.http import models as rest

from lfm_core import CollectionError

from .edge_convert import (
    _HNSW_DEFAULTS,
    _client_id,
    _client_vector,
    _edge_config,
    _edge_id,
    _edge_query,
    _edge_vector,
    _maybe_filter,
    edge_filter,
)
from .layout import validate_collection_name
from .shardfiles import (
    foreign_entries,
    remove_shard_leftovers,
    remove_store_leftovers,
    sparse_copy_tree,
)
from .space import (
    MARGIN_BYTES,
    MARGIN_INODES,
    OPTIMIZE_RESERVE,
    WRITE_AMPLIFICATION,
    StoreError,
    StoreFullError,
    free_space,
    human_bytes,
    point_bytes,
    shard_usage,
)

__all__ = ["EdgeStore", "StoreError", "StoreFullError", "is_local_mode_folder"]

logger = logging.getLogger("lfm_qdrant")

STORE_FORMAT = "lfm-qdrant-edge"
STORE_VERSION = 1
_MARKER = "lfm-store.json"
_RECORD = "collection.json"


def is_local_mode_folder(path: Path) -> bool:
    """Whether ``path`` was written by qdrant-client's local mode (``QdrantClient(path=...)``)."""
    return (path / "meta.json").is_file() and not (path / _MARKER).exists()


class EdgeStore:
    """A folder of Qdrant Edge shards, one per collection, used like a ``QdrantClient``.

    Args:
        path: the store folder; created if missing. A folder that holds other files, or
            one written by qdrant-client's local mode, is refused.
        read_only: open for searching only: nothing is written to the folder (no lock
            file, no marker, no flush), any write raises :class:`StoreError`, and other
            read-only processes may open the same store at once (a writer may not). A
            missing folder reads as a store without collections.

    Raises:
        StoreError: the folder is not a store, is in use by another process, or cannot be
            created.
        StoreFullError: on tmpfs, too little space to map a collection (see
            ``docs/qdrant.md``); also an ``OSError`` with ``errno.ENOSPC``.

    Example::

        from lfm_qdrant import EdgeStore, MultiVectorWriter

        with EdgeStore("./index") as store:
            writer = MultiVectorWriter(store, "faq", dense=dense, colbert=colbert)
            writer.add(texts)
            hits = writer.search("where is my order?")
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.read_only = read_only
        self._shards: dict[str, qe.EdgeShard] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._mutex = threading.RLock()
        self._lock_file: Any = None
        self._closed = False
        # Read-only shards on an unwritable filesystem are opened from copies made here.
        self._scratch: list[str] = []
        if read_only:
            self._open_read_only()
        else:
            self._open_folder()
        # A store the caller forgets to close is still flushed when the interpreter exits.
        weakref.finalize(self, _flush_all, self._shards, not read_only, self._scratch)

    # ------------------------------------------------------------------ lifecycle

    def _open_folder(self) -> None:
        path = self.path
        try:
            if path.exists() and not path.is_dir():
                raise StoreError(f"{str(path)!r} is a file, not a Qdrant Edge store folder")
            marker = path / _MARKER
            if path.is_dir() and not marker.is_file():
                self._refuse_foreign()
            path.mkdir(parents=True, exist_ok=True)
            self._lock()
            # Our own leftovers (a first open that died on a full disk) are not foreign.
            remove_store_leftovers(path)
            if not marker.is_file():
                _write_json(marker, {"format": STORE_FORMAT, "version": STORE_VERSION})
            else:
                self._check_marker(marker)
            (path / "collections").mkdir(exist_ok=True)
        except OSError as error:
            self._unlock()
            with contextlib.suppress(OSError):  # a draft the full disk cut short
                (path / f".{_MARKER}.tmp").unlink()
            raise _os_error(
                f"cannot open the Qdrant Edge store {str(path)!r}", error, path
            ) from None
        except StoreError:
            self._unlock()
            raise

    def _refuse_foreign(self) -> None:
        path = self.path
        if is_local_mode_folder(path):
            raise StoreError(
                f"{str(path)!r} was written by qdrant-client's local mode (lfm-retrieval "
                "0.1); the embedded store is now Qdrant Edge. Re-index into a new folder: "
                "`lfm-retrieval index CORPUS --collection NAME --path NEW_FOLDER`, then "
                "delete the old one"
            )
        if foreign_entries(path):
            raise StoreError(
                f"{str(path)!r} is not a Qdrant Edge store (no {_MARKER}) and is not "
                "empty; pass an empty or new folder"
            )

    def _check_marker(self, marker: Path) -> None:
        meta = _read_json(marker)
        if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{marker} is not an lfm-retrieval store marker")
        if meta.get("version") != STORE_VERSION:
            raise StoreError(
                f"{str(self.path)!r} is a store of version {meta.get('version')!r}; this "
                f"lfm-retrieval reads version {STORE_VERSION}"
            )

    def _open_read_only(self) -> None:
        """Open without writing: a shared lock when the lock file can be read, no marker."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise StoreError(f"{str(path)!r} is a file, not a Qdrant Edge store folder")
        if not path.exists():
            return  # reads as a store without collections; nothing is created
        marker = path / _MARKER
        if not marker.is_file():
            self._refuse_foreign()
            return  # empty, or a failed first open's leftovers: no collections
        self._check_marker(marker)
        try:
            handle = open(path / ".lock", "rb")  # noqa: SIM115 - held for the store's lifetime
        except OSError:
            return  # no lock file (a copied store) or not readable: nothing to share
        self._lock_file = handle
        self._flock(shared=True)

    def _lock(self) -> None:
        lock_path = self.path / ".lock"
        self._lock_file = open(lock_path, "a+")  # noqa: SIM115 - held for the store's lifetime
        self._flock(shared=False)

    def _flock(self, *, shared: bool) -> None:
        """Exclusive for a writer; shared among read-only processes, which a writer excludes."""
        if sys.platform == "win32":
            return
        import fcntl

        try:
            fcntl.flock(
                self._lock_file.fileno(),
                (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB,
            )
        except BlockingIOError:
            self._unlock()
            raise StoreError(
                f"the Qdrant Edge store {str(self.path)!r} is in use by another process"
                + (" writing to it" if shared else "")
                + "; wait for it to finish, or use another folder"
            ) from None

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    def flush(self) -> None:
        """Write every shard's pending changes to its segments (nothing when read-only)."""
        with self._mutex:
            if self.read_only:
                return
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
                    if not self.read_only:
                        self._engine(name, shard.flush)
                    self._engine(name, shard.close)
            finally:
                self._shards.clear()
                self._unlock()
                _remove_scratch(self._scratch)

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        flag = ", read_only=True" if self.read_only else ""
        return f"EdgeStore({str(self.path)!r}{flag})"

    # ---------------------------------------------------------------- collections

    def get_collections(self) -> models.CollectionsResponse:
        """All collections of the store."""
        with self._mutex:
            folder = self.path / "collections"
            if not folder.is_dir():  # a read-only view of a store not written yet
                return models.CollectionsResponse(collections=[])
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
        sparse_vectors_config: Mapping[str, models.SparseVectorParams] | None = None,
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
            self._check_writable()
            folder = self._folder(collection_name)
            if (folder / _RECORD).is_file():
                raise ValueError(f"Collection {collection_name} already exists")
            record = {
                "vectors": {
                    name: params.model_dump(mode="json", exclude_none=True)
                    for name, params in vectors_config.items()
                },
                "sparse_vectors": {
                    name: params.model_dump(mode="json", exclude_none=True)
                    for name, params in (sparse_vectors_config or {}).items()
                },
                "on_disk_payload": on_disk_payload,
                "metadata": dict(metadata or {}),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            try:
                if folder.exists():  # a create that died before its record was written
                    shutil.rmtree(folder)
                self._check_free(collection_name, MARGIN_BYTES, "creating it")
                folder.mkdir(parents=True)
                _write_json(folder / _RECORD, record)
            except OSError as error:
                with contextlib.suppress(OSError):  # half a collection would block a rerun
                    shutil.rmtree(folder)
                raise _os_error(
                    f"cannot create collection {collection_name!r} in {str(self.path)!r}",
                    error,
                    self.path,
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
        sparse = {
            name: models.SparseVectorParams.model_validate(params)
            for name, params in (record.get("sparse_vectors") or {}).items()
        }
        config: dict[str, Any] = {
            "params": models.CollectionParams(
                vectors=vectors,
                sparse_vectors=sparse or None,
                on_disk_payload=record.get("on_disk_payload"),
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
            self._check_writable()
            record = dict(self._record(collection_name))
            if metadata is not None:
                record["metadata"] = {**(record.get("metadata") or {}), **metadata}
            try:
                _write_json(self._folder(collection_name) / _RECORD, record)
            except OSError as error:
                raise _os_error(
                    f"cannot write the record of collection {collection_name!r}", error, self.path
                ) from None
            self._records[collection_name] = record
        return True

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        """Delete a collection and its files; ``False`` if it did not exist."""
        validate_collection_name(collection_name)
        with self._mutex:
            self._check_writable()
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
            self._check_writable()
            shard = self._shard(collection_name)
            usage = shard_usage(self._folder(collection_name) / "shard")
            free = free_space(self.path)
            self._check_free(
                collection_name,
                int(usage.segments_allocated * OPTIMIZE_RESERVE) + MARGIN_BYTES,
                "building its index",
                free=free,
            )
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
        """Insert or overwrite points; durable (in the WAL) when it returns.

        Raises:
            StoreFullError: the disk has too little space for these points and the index
                build after them; nothing of this call was written.
        """
        edge_points = [qe.Point(_edge_id(p.id), _edge_vector(p.vector), p.payload) for p in points]
        with self._mutex:
            self._check_writable()
            shard = self._shard(collection_name)
            self.check_space(collection_name, points)
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
            self._check_writable()
            shard = self._shard(collection_name)
            self._check_free(collection_name, MARGIN_BYTES, "deleting points")
            self._engine(collection_name, shard.update, operation)
        return models.UpdateResult(status=models.UpdateStatus.COMPLETED)

    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[Any],
        with_payload: bool = True,
        with_vectors: bool | list[str] = False,
        **kwargs: Any,
    ) -> list[models.Record]:
        """The stored points among ``ids`` (missing ids are left out); ``with_vectors``:
        ``True`` for all their vectors, or the names of some (``["colbert"]``)."""
        with self._mutex:
            shard = self._shard(collection_name)
            records = self._engine(
                collection_name,
                shard.retrieve,
                [_edge_id(i) for i in ids],
                with_payload,
                list(with_vectors) if isinstance(with_vectors, list) else with_vectors,
            )
        # Unvalidated: the engine's own values; pydantic's check of every vector number
        # would double the time of a retrieve with vectors (explain_hits reads 10 of them).
        return [
            models.Record.model_construct(
                id=_client_id(r.id),
                payload=r.payload,
                vector=_client_vector(r.vector) if with_vectors else None,
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
                    vector=_client_vector(r.vector) if with_vectors else None,
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
        # Unvalidated points: the engine's own values (as in ``retrieve``); pydantic's check
        # of every number of a point's vectors would cost more than the query.
        return [
            rest.QueryResponse.model_construct(
                points=[
                    models.ScoredPoint.model_construct(
                        id=_client_id(p.id),
                        version=p.version,
                        score=p.score,
                        payload=p.payload,
                        vector=_client_vector(p.vector),
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

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise StoreError(
                f"the Qdrant Edge store {str(self.path)!r} is open read-only; open it with "
                "EdgeStore(path) to write"
            )

    def check_space(
        self, collection_name: str, points: Sequence[models.PointStruct] = (), n_points: int = 0
    ) -> None:
        """Raise :class:`StoreFullError` unless the disk can take these points and an index build.

        The need is measured on the collection: ``points`` count by their raw bytes times
        the write amplification, ``n_points`` more by the bytes each stored point takes
        now; then room for the index build over everything, and a margin. On tmpfs the
        holes of the mapped files count too (a read of them allocates memory).

        Args:
            collection_name: an existing collection.
            points: a batch about to be written.
            n_points: points still to come after it (e.g. the rest of a corpus).
        """
        with self._mutex:
            shard = self._folder(collection_name) / "shard"
            usage = shard_usage(shard)
            free = free_space(self.path)
            batch = int(point_bytes(points) * WRITE_AMPLIFICATION)
            # On tmpfs an opened shard's holes are filled, so blocks per point mean nothing
            # there; each batch is still checked before it is written.
            if n_points and not free.fills_holes:
                info = self._engine(collection_name, self._shard(collection_name).info)
                if info.points_count:  # bytes per point as this collection stores them
                    batch += int(n_points * usage.allocated / info.points_count)
            need = batch + int((usage.segments_allocated + batch) * OPTIMIZE_RESERVE) + MARGIN_BYTES
            if free.fills_holes:
                need += usage.segment_holes
            self._check_free(collection_name, need, "this write and the index build after it", free)

    def _check_free(self, collection_name: str, need: int, doing: str, free: Any = None) -> None:
        free = free or free_space(self.path)
        short_of_inodes = free.inodes is not None and free.inodes < MARGIN_INODES
        if free.bytes >= need and not short_of_inodes:
            return
        what = (
            f"{free.inodes} inodes free, {MARGIN_INODES} needed"
            if short_of_inodes and free.bytes >= need
            else f"needs {human_bytes(need)}, {human_bytes(free.bytes)} free"
        )
        tmpfs = (
            " (tmpfs: the segments' mapped files count at their full size)"
            if free.fills_holes
            else ""
        )
        raise StoreFullError(
            f"not enough space for collection {collection_name!r} in {str(self.path)!r}: "
            f"{doing} {what}{tmpfs}; nothing was written: free space (or move the store) "
            "and run the same command again",
            path=self.path,
            needed=need,
            free=free.bytes,
        )

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
            if self.read_only:
                folder = self._readable_shard(collection_name, folder)
            else:
                remove_shard_leftovers(self._folder(collection_name))
            self._check_mappable(collection_name, folder)
            shard = self._engine(collection_name, qe.EdgeShard.load, str(folder))
        elif self.read_only:
            raise StoreError(
                f"collection {collection_name!r} in {str(self.path)!r} has no data yet, and "
                "the store is open read-only"
            )
        else:
            self._check_free(collection_name, MARGIN_BYTES, "creating its shard")
            config = _edge_config(record)
            shard = self._engine(collection_name, qe.EdgeShard.create, str(folder), config)
        self._shards[collection_name] = shard
        return shard

    def _check_mappable(self, collection_name: str, folder: Path) -> None:
        """On tmpfs, refuse to open a shard whose mapped holes do not fit (a read allocates)."""
        free = free_space(folder)
        if free.fills_holes:
            need = shard_usage(folder).segment_holes + MARGIN_BYTES
            self._check_free(collection_name, need, "opening it", free)

    def _readable_shard(self, collection_name: str, folder: Path) -> Path:
        """The shard itself when this process may write it, else a private sparse copy."""
        if os.access(folder, os.W_OK) and not _read_only_mount(folder):
            return folder
        usage = shard_usage(folder)
        scratch = Path(tempfile.mkdtemp(prefix=f"lfm-edge-{collection_name}-"))
        self._scratch.append(str(scratch))
        free = free_space(scratch)
        need = (usage.apparent if free.fills_holes else usage.allocated) + MARGIN_BYTES
        if free.bytes < need:
            raise StoreFullError(
                f"collection {collection_name!r} in {str(self.path)!r} is on a read-only "
                f"filesystem; Qdrant Edge opens its files for writing, so it is opened from a "
                f"copy in {scratch.parent}, which needs {human_bytes(need)} and has "
                f"{human_bytes(free.bytes)} free: set TMPDIR to a folder with room",
                path=scratch,
                needed=need,
                free=free.bytes,
            )
        try:
            sparse_copy_tree(folder, scratch / "shard")
        except OSError as error:
            raise _os_error(
                f"cannot copy collection {collection_name!r} to {scratch}", error, scratch
            ) from None
        logger.info(
            "collection %r: %s is read-only; searching a private copy in %s (removed on close)",
            collection_name,
            folder,
            scratch,
        )
        return scratch / "shard"

    def _engine(self, collection_name: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ValueError:
            raise  # bad ids and the like: the caller's input
        except Exception as error:  # the engine raises plain Exception for all its errors
            message = " ".join(str(error).split()) or type(error).__name__
            if "WouldBlock" in message:
                message = "the shard is open in another process"
            if "No space left on device" in message or "os error 28" in message:
                free = free_space(self.path)
                raise StoreFullError(
                    f"Qdrant Edge, collection {collection_name!r} in {str(self.path)!r}: "
                    f"{message} ({human_bytes(free.bytes)} free); nothing acknowledged is "
                    "lost: free space and run the same command again",
                    path=self.path,
                    needed=0,
                    free=free.bytes,
                ) from error
            if "Read-only file system" in message or "os error 30" in message:
                message += "; open the store read-only to search it"
            raise StoreError(
                f"Qdrant Edge, collection {collection_name!r} in {str(self.path)!r}: {message}"
            ) from error


# ---------------------------------------------------------------------- helpers


def _flush_all(shards: dict[str, qe.EdgeShard], flush: bool, scratch: list[str]) -> None:
    if flush:
        for shard in shards.values():
            with contextlib.suppress(Exception):  # at exit: nothing left to report to
                shard.flush()
    _remove_scratch(scratch)


def _remove_scratch(scratch: list[str]) -> None:
    while scratch:
        shutil.rmtree(scratch.pop(), ignore_errors=True)


def _read_only_mount(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _os_error(what: str, error: OSError, path: Path) -> StoreError:
    """A ``StoreError`` for a failed file operation; a full disk becomes ``StoreFullError``."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_space(path)
        return StoreFullError(
            f"{what}: {reason} ({human_bytes(free.bytes)} free); nothing was lost: free space "
            "and run the same command again",
            path=path,
            needed=0,
            free=free.bytes,
        )
    if error.errno == errno.EROFS:
        reason += "; open it read-only to search it (EdgeStore(path, read_only=True))"
    return StoreError(f"{what}: {reason}")


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

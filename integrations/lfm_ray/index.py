"""``index_dataset``: validate, encode on Ray actors, write to Qdrant; resumable and exact.

The run, for a dataset of rows ``{text, id?, metadata?}``:

1. **Record the models**: the driver (for CPU workers) or one GPU Ray task loads them as a
   worker would and takes their records and chunk settings (the chunk size their window
   holds); every actor checks its own models against them.
2. **Check every row on the driver** (one pass over the text, id and metadata columns,
   no encoding): the same checks as ``MultiVectorWriter.add``, each error naming the row,
   and each document's fingerprint compared with the stored one
   (``MultiVectorWriter.changed_documents``). Nothing is written if a row is bad; the
   unchanged documents are left out, so a rerun after a crash encodes only what is
   missing. Then the driver creates (or checks) the collection.
3. **Chunk and encode** with :class:`~lfm_ray.EncodeBatch` on an actor pool (``concurrency``
   actors, ``num_gpus`` each): each actor splits its rows with the writer's chunker and
   encodes the chunks; a row stays one row (one document, all its chunks). Point ids come
   from the row (``lfm_qdrant.point_id`` of its id, or ``text_point_id`` of its text),
   never from a worker or a position, so a task Ray retries or an actor it restarts writes
   the same points again: nothing is duplicated.
4. **Write** through ``MultiVectorWriter.add_encoded``, each batch of documents in the
   writer's kill-safe order (chunks after the first, the documents' other points deleted,
   chunk 0s last): to a server (``url=``) from Ray tasks, through :class:`QdrantDatasink`;
   to an embedded Edge store (``path=``), which one process only may open, from the driver.
5. With ``delete_missing``, the stored documents whose id is not in the dataset are deleted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from ray.data import ActorPoolStrategy, Datasink
from ray.data.block import BlockAccessor

from lfm_core import InputError, LoadOptions
from lfm_qdrant import (
    ChunkingOptions,
    EdgeStore,
    ModelRecord,
    MultiVectorWriter,
    SyncReport,
    point_id,
    text_point_id,
)
from lfm_qdrant.points import PointId, payloads

from .encode import (
    COLBERT_COLUMN,
    COLBERT_ROWS_COLUMN,
    DENSE_COLUMN,
    SPANS_COLUMN,
    EncodeBatch,
)

__all__ = ["IndexResult", "QdrantDatasink", "index_dataset"]

logger = logging.getLogger("lfm_ray")

POINT_ID_COLUMN = "_lfm_point_id"
PAYLOAD_COLUMN = "_lfm_metadata"
_CHECK_BATCH = 4096


@dataclass(frozen=True)
class IndexResult:
    """What one :func:`index_dataset` run did.

    Attributes:
        rows: rows (documents) in the dataset.
        encoded: rows encoded and written by this run.
        skipped_existing: rows stored with the same fingerprint (text, metadata, models,
            chunk settings), not encoded again (``skip_existing=True``).
        points: points in the collection afterwards (one per chunk).
        added: rows whose id was not stored.
        updated: rows stored with another fingerprint, rewritten with all their chunks.
        deleted: stored documents absent from the dataset, deleted (``delete_missing``).
    """

    rows: int
    encoded: int
    skipped_existing: int
    points: int
    added: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class _Target:
    """Where the points go: a server (url) or an embedded store (path)."""

    url: str | None
    path: str | None
    api_key: str | None

    def open(self) -> Any:
        if self.url is not None:
            from qdrant_client import QdrantClient

            return QdrantClient(url=self.url, api_key=self.api_key, check_compatibility=False)
        assert self.path is not None
        return EdgeStore(self.path)


def index_dataset(
    ds: Any,
    *,
    collection: str,
    url: str | None = None,
    path: str | Path | None = None,
    api_key: str | None = None,
    dense: str | None = None,
    colbert: str | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    metadata_column: str | None = None,
    concurrency: int = 1,
    num_gpus: float | None = None,
    batch_size: int = 64,
    options: LoadOptions | None = None,
    pool_factor: int = 1,
    skip_existing: bool = True,
    encoder_class: type[EncodeBatch] = EncodeBatch,
    progress: Callable[[int], None] | None = None,
    writer_options: Mapping[str, Any] | None = None,
    chunking: ChunkingOptions | bool = True,
    delete_missing: bool = False,
) -> IndexResult:
    """Encode a Ray dataset on many workers and write it into a Qdrant collection.

    Args:
        ds: a ``ray.data.Dataset`` with a text column (and optionally id and metadata).
        collection: the collection to write (created if missing, else checked).
        url: a Qdrant server or cluster; workers write to it directly.
        path: an embedded Qdrant Edge store folder instead; the driver writes.
        api_key: the server's API key.
        dense: dense model name or folder (``None``: no dense vectors).
        colbert: ColBERT model name or folder (``None``: no ColBERT vectors).
        text_column: column of the texts.
        id_column: column of the ids (``int`` or ``str`` keys, as ``add(ids=)``); default:
            ids derived from the texts.
        metadata_column: column of metadata mappings, or of JSON objects as strings. Use
            strings when rows have different keys: Arrow stores mappings as one struct type
            and fills a key a row lacks with null.
        concurrency: encoder actors.
        num_gpus: GPUs per actor (``None``: CPU).
        batch_size: rows per encoded batch (and per write request group).
        options: how the models load on the workers (dtype, batching...).
        pool_factor: ColBERT token pooling.
        skip_existing: leave out rows stored with the same fingerprint (a rerun finishes
            an interrupted one without encoding everything again).
        encoder_class: the ``map_batches`` class (a subclass of :class:`EncodeBatch`).
        progress: called on the driver with the number of rows written (embedded store).
        writer_options: more ``MultiVectorWriter`` options for the collection it creates
            (``colbert_datatype``, ``lexical``, ``shard_number``, ``replication_factor`` ...).
        chunking: how texts longer than the models' window are split, as the writer's
            ``chunking=``: the same chunks, chunk ids and fingerprints as one process.
        delete_missing: afterwards, delete the stored documents whose id is not in the
            dataset (``MultiVectorWriter.sync``'s ``delete_missing``).

    Returns:
        An :class:`IndexResult`.

    Raises:
        TypeError / InputError: a bad row (naming it), or bad arguments; nothing written.
        CollectionError: the collection exists with another layout or other models.
    """
    import ray

    if (url is None) == (path is None):
        raise InputError("index_dataset takes url= (a Qdrant server) or path= (an Edge store)")
    if dense is None and colbert is None:
        raise InputError("index_dataset needs dense=, colbert= or both")
    if "chunking" in (writer_options or {}):
        raise InputError("pass chunking= to index_dataset, not in writer_options")
    target = _Target(url, None if path is None else str(path), api_key)
    options = options or LoadOptions()
    # The models first: one that cannot load fails before the store is opened (an Edge
    # store's folder is created by its first open).
    if num_gpus:
        # As a GPU worker loads them (its device, its copy of the checkpoint).
        remote = ray.remote(_record_models).options(num_gpus=num_gpus, num_cpus=1)
        records, settings = ray.get(remote.remote(dense, colbert, options, chunking))
    else:
        records, settings = _record_models(dense, colbert, options, chunking)
    client = target.open()
    try:
        # The chunk size the models' window holds, fixed here: the workers cut at it and
        # the writers fingerprint with it, as one process would.
        fixed: ChunkingOptions | bool = (
            False
            if settings is None
            else ChunkingOptions(
                max_tokens=settings["max_tokens"], overlap_tokens=settings["overlap_tokens"]
            )
        )
        writer_kwargs = {"batch_size": batch_size, **(writer_options or {}), "chunking": fixed}
        writer = MultiVectorWriter(
            client,
            collection,
            dense=records[DENSE_COLUMN],
            colbert=records[COLBERT_COLUMN],
            **writer_kwargs,
        )
        checker = _RowChecker(text_column, id_column, metadata_column)
        rows, keys, stored, report = checker.check(ds, writer)
        skip = stored if skip_existing else frozenset()
        writer.ensure_collection()
        # The stored ids travel inside the stage's arguments, not as an object ref: Ray
        # warns about a stage whose arguments hold a ref (a restart could lose it). They are
        # pickled with each task; the driver holds the rows themselves anyway.
        prepare = partial(_prepare, checker=checker, skip=skip)
        encoded = ds.map_batches(
            encoder_class,
            fn_constructor_kwargs={
                "dense": dense,
                "colbert": colbert,
                "text_column": text_column,
                "options": options,
                "pool_factor": pool_factor,
                "expect": records,
                "prepare": prepare,
                "chunking": fixed,
            },
            batch_format="numpy",
            batch_size=batch_size,
            compute=ActorPoolStrategy(size=concurrency),
            num_gpus=num_gpus,
            # Ray Data restarts a dead actor and retries its batch (its actor pool default,
            # max_restarts=-1, max_task_retries=-1): same rows, same ids.
        )
        todo = rows - len(skip)
        if todo:
            if url is not None:
                sink = QdrantDatasink(
                    collection,
                    url=url,
                    api_key=api_key,
                    records=records,
                    text_column=text_column,
                    writer_options=writer_kwargs,
                )
                encoded.write_datasink(sink)
                if progress is not None:
                    progress(todo)
            else:
                for batch in encoded.iter_batches(batch_size=batch_size, batch_format="numpy"):
                    n = _write_batch(writer, batch, text_column)
                    if progress is not None:
                        progress(n)
        # Last, as sync() does: a run killed before here deletes them when run again.
        deleted = writer.delete_missing(keys) if delete_missing else 0
        return IndexResult(
            rows,
            todo,
            len(skip),
            writer.count(),
            added=report.added,
            updated=report.updated,
            deleted=deleted,
        )
    finally:
        client.close()


class QdrantDatasink(Datasink[int]):
    """``Dataset.write_datasink`` target: batches encoded by :class:`EncodeBatch` into a
    Qdrant server collection, written with lfm_qdrant's ids, payloads, request splitting
    and retries. Each write task opens its own client; a retried task rewrites the same
    points.

    Args:
        collection: the collection (created by the driver: see :func:`index_dataset`).
        url: the Qdrant server.
        api_key: its API key.
        records: the model records (``{"dense": ModelRecord | None, "colbert": ...}``).
        text_column: the column of the texts.
        writer_options: ``MultiVectorWriter`` options (``batch_size``, the ``chunking``
            the workers cut at ...).
    """

    def __init__(
        self,
        collection: str,
        *,
        url: str,
        api_key: str | None = None,
        records: Mapping[str, ModelRecord | None],
        text_column: str = "text",
        writer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.collection = collection
        self.target = _Target(url, None, api_key)
        self.records = dict(records)
        self.text_column = text_column
        self.writer_options = dict(writer_options or {})

    def write(self, blocks: Iterable[Any], ctx: Any) -> int:
        """Ray's write task: the encoded blocks through ``MultiVectorWriter.add_encoded``.

        Returns:
            The points written.
        """
        client = self.target.open()
        written = 0
        try:
            writer = MultiVectorWriter(
                client,
                self.collection,
                dense=self.records[DENSE_COLUMN],
                colbert=self.records[COLBERT_COLUMN],
                **self.writer_options,
            )
            for block in blocks:
                batch = BlockAccessor.for_block(block).to_batch_format("numpy")
                written += _write_batch(writer, batch, self.text_column)
        finally:
            client.close()
        return written

    @property
    def supports_distributed_writes(self) -> bool:
        """Each write task opens its own client: the server takes writes from every node."""
        return True


# ------------------------------------------------------------------ the row checks


class _RowChecker:
    """Turns a dataset batch into (texts, point ids, metadata) with add()'s checks."""

    def __init__(self, text_column: str, id_column: str | None, metadata_column: str | None):
        self.text_column = text_column
        self.id_column = id_column
        self.metadata_column = metadata_column

    def columns(self) -> list[str]:
        return [c for c in (self.text_column, self.id_column, self.metadata_column) if c]

    def rows(
        self, batch: Mapping[str, Any], first: int
    ) -> tuple[list[str], list[PointId], list[dict[str, Any]]]:
        """Checked texts, ids and metadata of a batch whose first row is row ``first``."""
        for column in self.columns():
            if column not in batch:
                raise InputError(
                    f"the dataset has no column {column!r} (columns: {', '.join(sorted(batch))})"
                )
        raw_texts = list(batch[self.text_column])
        texts: list[str] = []
        for i, text in enumerate(raw_texts):
            if not isinstance(text, str):
                what = "None" if text is None else f"a {type(text).__name__}"
                raise TypeError(f"row {first + i}: {self.text_column!r} is {what}; expected str")
            texts.append(text)
        keys: list[PointId] = []
        for i, text in enumerate(texts):
            if self.id_column is None:
                keys.append(text_point_id(text))
                continue
            key = _plain(batch[self.id_column][i])
            try:
                keys.append(point_id(key))
            except (TypeError, InputError) as error:
                raise type(error)(f"row {first + i}: {self.id_column!r}: {error}") from None
        stored_payloads: list[dict[str, Any]] = []
        for i in range(len(texts)):
            item: Any = None
            if self.metadata_column is not None:
                item = _plain(batch[self.metadata_column][i])
                if isinstance(item, str):
                    try:
                        item = json.loads(item)
                    except json.JSONDecodeError as error:
                        raise InputError(
                            f"row {first + i}: {self.metadata_column!r} is a string but not "
                            f"JSON ({error})"
                        ) from None
            if item is not None and not isinstance(item, Mapping):
                raise TypeError(
                    f"row {first + i}: {self.metadata_column!r} is a {type(item).__name__}; "
                    "expected a mapping (or a JSON object string)"
                )
            try:
                # The writer's own conversion: what add_encoded() will store.
                stored_payloads += payloads([item], [texts[i]])
            except (TypeError, InputError) as error:
                raise type(error)(f"row {first + i}: {error}") from None
        return texts, keys, stored_payloads

    def check(
        self, ds: Any, writer: MultiVectorWriter
    ) -> tuple[int, list[PointId], frozenset[str], SyncReport]:
        """Check every row and compare it with what is stored.

        Returns:
            The row count, every row's point id, the ids stored with the same fingerprint,
            and the counts of added, updated and unchanged rows.
        """
        seen: dict[str, int] = {}
        keys: list[PointId] = []
        stored: set[str] = set()
        report = SyncReport()
        first = 0
        with _ordered():
            for batch in ds.select_columns(self.columns()).iter_batches(
                batch_size=_CHECK_BATCH, batch_format="numpy"
            ):
                texts, batch_keys, stored_payloads = self.rows(batch, first)
                for i, key in enumerate(batch_keys):
                    other = seen.setdefault(str(key), first + i)
                    if other != first + i:
                        raise InputError(
                            f"rows {other} and {first + i} have the same point id {key!r}"
                            + (
                                " (the same text, and no id column)"
                                if self.id_column is None
                                else ""
                            )
                        )
                changed, counts = writer.changed_documents(
                    texts, batch_keys, [_metadata(p) for p in stored_payloads]
                )
                report += counts
                changed_set = set(changed)
                stored |= {str(k) for i, k in enumerate(batch_keys) if i not in changed_set}
                keys += batch_keys
                first += len(texts)
        return first, keys, frozenset(stored), report


def _record_models(
    dense: str | None,
    colbert: str | None,
    options: LoadOptions,
    chunking: ChunkingOptions | bool,
) -> tuple[dict[str, ModelRecord | None], dict[str, int] | None]:
    """The models' records and chunk settings, as a worker loads them."""
    stage = EncodeBatch(dense, colbert, options=options, chunking=chunking)
    return stage.records(), None if stage.chunker is None else stage.chunker.settings()


def _metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A checked payload less its text: the metadata as ``add`` takes it."""
    return {k: v for k, v in payload.items() if k != "text"}


def _prepare(batch: dict[str, Any], checker: _RowChecker, skip: frozenset[str]) -> dict[str, Any]:
    """Add each row's point id and metadata JSON; drop the rows already stored."""
    if not len(batch[checker.text_column]):
        return dict(batch)
    texts, keys, stored_payloads = checker.rows(batch, 0)
    keep = np.array([str(k) not in skip for k in keys], dtype=bool)
    out = {checker.text_column: np.array(texts, dtype=object)[keep]}
    out[POINT_ID_COLUMN] = np.array([str(k) for k in keys], dtype=object)[keep]
    metadata = [_metadata(p) for p in stored_payloads]
    out[PAYLOAD_COLUMN] = np.array([json.dumps(m) for m in metadata], dtype=object)[keep]
    return out


def _write_batch(writer: MultiVectorWriter, batch: Mapping[str, Any], text_column: str) -> int:
    """Write one encoded batch of documents (each row one document, all its chunks)."""
    texts = [str(t) for t in batch[text_column]]
    if not texts:
        return 0
    dense = batch.get(DENSE_COLUMN)
    colbert = None if COLBERT_COLUMN not in batch else list(batch[COLBERT_COLUMN])
    chunks: list[list[tuple[int, int]]] | None = None
    if SPANS_COLUMN in batch:
        # Chunked rows: the vectors of every chunk, document by document.
        chunks = [
            [(int(a), int(b)) for a, b in np.asarray(spans).reshape(-1, 2)]
            for spans in batch[SPANS_COLUMN]
        ]
        if dense is not None:
            dense = [vector for rows in dense for vector in rows]
        if colbert is not None:
            colbert = [
                matrix
                for stacked, counts in zip(colbert, batch[COLBERT_ROWS_COLUMN], strict=True)
                for matrix in np.split(np.asarray(stacked), np.cumsum(counts)[:-1])
            ]
    writer.add_encoded(
        texts,
        dense_vectors=dense,
        colbert_vectors=colbert,
        ids=[_as_point_id(k) for k in batch[POINT_ID_COLUMN]],
        metadata=[json.loads(m) for m in batch[PAYLOAD_COLUMN]],
        chunk_spans=chunks,
    )
    return len(texts)


def _as_point_id(value: str) -> PointId:
    # Ids travel as strings; an int id never looks like a UUID, nor a UUID like an int.
    return int(value) if value.isdigit() else value


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values (what point_id and payloads expect)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


@contextmanager
def _ordered() -> Iterator[None]:
    """Rows in dataset order while checking, so an error's row number means something."""
    from ray.data import DataContext

    context = DataContext.get_current()
    before = context.execution_options.preserve_order
    context.execution_options.preserve_order = True
    try:
        yield
    finally:
        context.execution_options.preserve_order = before

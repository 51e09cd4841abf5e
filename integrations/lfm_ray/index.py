"""``index_dataset``: validate, encode on Ray actors, write to Qdrant; resumable and exact.

The run, for a dataset of rows ``{text, id?, metadata?}``:

1. **Check every row on the driver** (one pass over the text, id and metadata columns,
   no encoding): the same checks as ``MultiVectorWriter.add``, each error naming the row.
   Nothing is written if a row is bad. Rows already stored with the same payload are
   noted, so a rerun after a crash encodes only what is missing.
2. **Record the models**: the driver (for CPU workers) or one GPU Ray task loads them as a
   worker would and takes their records; the driver creates (or checks) the collection
   with them, and every actor checks its own models against them.
3. **Encode** with :class:`~lfm_ray.EncodeBatch` on an actor pool (``concurrency``
   actors, ``num_gpus`` each). Point ids come from the row (``lfm_qdrant.point_id`` of its
   id, or ``text_point_id`` of its text), never from a worker or a position, so a task
   Ray retries or an actor it restarts writes the same points again: nothing is duplicated.
4. **Write**: to a server (``url=``) from Ray tasks, through :class:`QdrantDatasink`; to an
   embedded Edge store (``path=``), which one process only may open, from the driver.
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
from lfm_qdrant import EdgeStore, ModelRecord, MultiVectorWriter, point_id, text_point_id
from lfm_qdrant.points import PointId, payloads

from .encode import COLBERT_COLUMN, DENSE_COLUMN, EncodeBatch, model_records

__all__ = ["IndexResult", "QdrantDatasink", "index_dataset"]

logger = logging.getLogger("lfm_ray")

POINT_ID_COLUMN = "_lfm_point_id"
PAYLOAD_COLUMN = "_lfm_metadata"
_CHECK_BATCH = 4096


@dataclass(frozen=True)
class IndexResult:
    """What one :func:`index_dataset` run did.

    Attributes:
        rows: rows in the dataset.
        encoded: rows encoded and written by this run.
        skipped_existing: rows already stored with the same payload (not encoded again).
        points: points in the collection afterwards.
    """

    rows: int
    encoded: int
    skipped_existing: int
    points: int


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
        skip_existing: leave out rows already stored with the same payload (a rerun
            finishes an interrupted one without encoding everything again).
        encoder_class: the ``map_batches`` class (a subclass of :class:`EncodeBatch`).
        progress: called on the driver with the number of rows written (embedded store).
        writer_options: more ``MultiVectorWriter`` options for the collection it creates
            (``colbert_datatype``, ``shard_number``, ``replication_factor`` ...).

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
    target = _Target(url, None if path is None else str(path), api_key)
    options = options or LoadOptions()
    client = target.open()
    try:
        writer_kwargs = {"batch_size": batch_size, **(writer_options or {})}
        checker = _RowChecker(text_column, id_column, metadata_column)
        rows, stored = checker.check(ds, client, collection, skip_existing)
        if num_gpus:
            # As a GPU worker loads them (its device, its copy of the checkpoint).
            remote = ray.remote(_record_models).options(num_gpus=num_gpus, num_cpus=1)
            records = ray.get(remote.remote(dense, colbert, options))
        else:
            records = model_records(dense, colbert, options)
        writer = MultiVectorWriter(
            client,
            collection,
            dense=records[DENSE_COLUMN],
            colbert=records[COLBERT_COLUMN],
            **writer_kwargs,
        )
        writer.ensure_collection()
        # The stored ids travel inside the stage's arguments, not as an object ref: Ray
        # warns about an actor pool whose arguments hold a ref (a restart could lose it).
        prepare = partial(_prepare, checker=checker, skip=stored)
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
            },
            batch_format="numpy",
            batch_size=batch_size,
            compute=ActorPoolStrategy(size=concurrency),
            num_gpus=num_gpus,
            # Ray Data restarts a dead actor and retries its batch (its actor pool default,
            # max_restarts=-1, max_task_retries=-1): same rows, same ids.
        )
        todo = rows - len(stored)
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
        return IndexResult(rows, todo, len(stored), writer.count())
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
        writer_options: ``MultiVectorWriter`` options (``batch_size`` ...).
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
        self, ds: Any, client: Any, collection: str, skip_existing: bool
    ) -> tuple[int, frozenset[str]]:
        """Check every row; returns the row count and the ids stored with the same payload."""
        seen: dict[str, int] = {}
        stored: set[str] = set()
        first = 0
        exists = skip_existing and client.collection_exists(collection)
        with _ordered():
            for batch in ds.select_columns(self.columns()).iter_batches(
                batch_size=_CHECK_BATCH, batch_format="numpy"
            ):
                texts, keys, stored_payloads = self.rows(batch, first)
                for i, key in enumerate(keys):
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
                if exists:
                    stored |= _stored_same(client, collection, keys, stored_payloads)
                first += len(texts)
        return first, frozenset(stored)


def _record_models(
    dense: str | None, colbert: str | None, options: LoadOptions
) -> dict[str, ModelRecord | None]:
    return model_records(dense, colbert, options)


def _prepare(batch: dict[str, Any], checker: _RowChecker, skip: frozenset[str]) -> dict[str, Any]:
    """Add each row's point id and metadata JSON; drop the rows already stored."""
    if not len(batch[checker.text_column]):
        return dict(batch)
    texts, keys, stored_payloads = checker.rows(batch, 0)
    keep = np.array([str(k) not in skip for k in keys], dtype=bool)
    out = {checker.text_column: np.array(texts, dtype=object)[keep]}
    out[POINT_ID_COLUMN] = np.array([str(k) for k in keys], dtype=object)[keep]
    metadata = [{k: v for k, v in p.items() if k != "text"} for p in stored_payloads]
    out[PAYLOAD_COLUMN] = np.array([json.dumps(m) for m in metadata], dtype=object)[keep]
    return out


def _write_batch(writer: MultiVectorWriter, batch: Mapping[str, Any], text_column: str) -> int:
    texts = [str(t) for t in batch[text_column]]
    if not texts:
        return 0
    writer.add_encoded(
        texts,
        dense_vectors=batch.get(DENSE_COLUMN),
        colbert_vectors=None if COLBERT_COLUMN not in batch else list(batch[COLBERT_COLUMN]),
        ids=[_as_point_id(k) for k in batch[POINT_ID_COLUMN]],
        metadata=[json.loads(m) for m in batch[PAYLOAD_COLUMN]],
    )
    return len(texts)


def _as_point_id(value: str) -> PointId:
    # Ids travel as strings; an int id never looks like a UUID, nor a UUID like an int.
    return int(value) if value.isdigit() else value


def _stored_same(
    client: Any, collection: str, keys: list[PointId], wanted: list[dict[str, Any]]
) -> set[str]:
    records = client.retrieve(
        collection_name=collection, ids=keys, with_payload=True, with_vectors=False
    )
    # The writer's chunk record (_lfm) is not part of what a row asks to store.
    stored = {
        str(r.id): {k: v for k, v in (r.payload or {}).items() if k != "_lfm"} for r in records
    }
    return {str(k) for k, p in zip(keys, wanted) if stored.get(str(k)) == p}


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

"""Documents as points: one point per chunk, ids per document, and the document fingerprint.

Every point the writer stores carries, next to ``"text"`` (the chunk) and the document's
metadata, one reserved payload key::

    "_lfm": {"doc": "<the document's point id, as a str>", "chunk": 0, "chunks": 3,
             "start": 0, "end": 1873, "fingerprint": "sha256:..."}

- **Ids.** Chunk 0 has the document's own point id (what :meth:`~MultiVectorWriter.add`
  returns), so a document that fits one chunk is stored exactly as before chunking. Chunk
  ``i > 0`` has ``uuid5(CHUNK_NAMESPACE, f"{document point id}/{i}")``:
  :func:`chunk_point_id` of ``(doc, chunk)`` gives a point's id back.
- **Spans.** ``start``/``end`` index the document text (``text[start:end]`` is the chunk).
- **Fingerprint.** A digest of the document's id, full text, metadata, models and chunk
  settings, computed from the caller's values before anything is stored. Resume and sync
  compare fingerprints, never payloads: the engine may store a float a bit differently
  (``90.33333333333333`` comes back as ``90.33333333333331``).

Writes are ordered so that a run killed at any point leaves the document marked changed:
chunks ``1..n-1`` first, then the document's other chunks (stale or old) are deleted, then
chunk 0 with the new fingerprint. A document whose chunk 0 has the new fingerprint is
therefore complete.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from qdrant_client import models

from lfm_core import InputError

from .points import PointId
from .steps import Call, Steps

__all__ = [
    "CHUNK_KEY",
    "CHUNK_NAMESPACE",
    "SyncReport",
    "chunk_point_id",
    "document_filter",
    "document_key",
    "fingerprint",
]

CHUNK_KEY = "_lfm"
"""The payload key of a point's document, chunk, span and fingerprint."""
CHUNK_NAMESPACE = uuid.UUID("0d0f6c4e-3f1c-5b8e-9d6f-6c6c1c9c2b51")
"""UUIDv5 namespace of the ids of chunks after the first."""

_SCROLL_PAGE = 1024  # points per scroll page and per delete request of a sync


@dataclass
class SyncReport:
    """What one :meth:`~MultiVectorWriter.sync` did, counted in documents.

    Attributes:
        added: documents that were not stored.
        updated: documents stored with another fingerprint (text, metadata, models or
            chunking changed), rewritten with all their chunks.
        unchanged: documents stored with the same fingerprint, not encoded again.
        deleted: stored documents absent from the input (``delete_missing=True`` only).
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def __add__(self, other: SyncReport) -> SyncReport:
        return SyncReport(
            self.added + other.added,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.deleted + other.deleted,
        )

    def to_json(self) -> dict[str, int]:
        """The counts as a JSON object (what ``lfm-retrieval index --json`` prints)."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


def chunk_point_id(document: PointId, index: int) -> PointId:
    """The point id of chunk ``index`` of a document with point id ``document``.

    >>> chunk_point_id(7, 0)
    7
    >>> chunk_point_id(7, 1) == chunk_point_id("7", 1) != chunk_point_id(7, 2)
    True
    """
    if index == 0:
        return document
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{document}/{index}"))


def document_key(point_id: PointId | uuid.UUID, payload: Mapping[str, Any] | None) -> PointId:
    """The document point id of a stored point: its ``_lfm.doc``, else its own id.

    Points written without chunk records (by ``add_encoded`` or an older version) are
    documents of their own.

    >>> document_key("c1", {"_lfm": {"doc": "42"}})
    42
    >>> document_key(5, {"text": "x"})
    5
    """
    record = (payload or {}).get(CHUNK_KEY)
    if isinstance(record, Mapping) and isinstance(record.get("doc"), str):
        doc = record["doc"]
        # Point ids are ints or canonical UUIDs, so the two read back unambiguously.
        return int(doc) if doc.isdigit() else doc
    return str(point_id) if isinstance(point_id, uuid.UUID) else point_id


def chunk_record(payload: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The ``_lfm`` record of a stored payload, if it has one."""
    record = (payload or {}).get(CHUNK_KEY)
    return record if isinstance(record, Mapping) else None


def own_point_id(point_id: PointId | uuid.UUID, payload: Mapping[str, Any] | None) -> Any:
    """The id a hit's own point is stored under. A grouped search hit carries its
    document's id, and its payload (text, ``_lfm``) is the best chunk's: that chunk's
    stored vectors are under the chunk's id, not the document's.

    >>> own_point_id(7, {"_lfm": {"doc": "7", "chunk": 0}})
    7
    >>> own_point_id(7, {"_lfm": {"doc": "7", "chunk": 2}}) == chunk_point_id(7, 2)
    True
    >>> own_point_id(5, {"text": "x"})
    5
    """
    record = chunk_record(payload)
    index = None if record is None else record.get("chunk")
    if not isinstance(index, int) or isinstance(index, bool):
        return point_id
    return chunk_point_id(document_key(point_id, payload), index)


def fingerprint(key: PointId, text: str, payload: Mapping[str, Any], models_and_chunks: Any) -> str:
    """A digest of everything a document's points are made from.

    Args:
        key: the document's point id.
        text: the whole document text, as embedded.
        payload: its payload as validated (JSON values), without ``_lfm``.
        models_and_chunks: the writer's model record and chunk settings, JSON data.

    >>> a = fingerprint(1, "t", {"x": 0.1}, {})
    >>> a == fingerprint(1, "t", {"x": 0.1}, {}) != fingerprint(2, "t", {"x": 0.1}, {})
    True
    """
    data = json.dumps(
        [str(key), text, payload, models_and_chunks],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(data.encode("utf-8")).hexdigest()


def document_filter(keys: list[PointId], keep_fingerprints: list[str]) -> models.Filter:
    """The points of these documents whose fingerprint is not among ``keep_fingerprints``."""
    return models.Filter(
        must=[
            models.FieldCondition(
                key=f"{CHUNK_KEY}.doc", match=models.MatchAny(any=[str(k) for k in keys])
            )
        ],
        must_not=[
            models.FieldCondition(
                key=f"{CHUNK_KEY}.fingerprint", match=models.MatchAny(any=keep_fingerprints)
            )
        ],
    )


@dataclass
class ChunkPoints:
    """The chunk points of some documents, in write order: chunks after the first come
    first, every document's chunk 0 last (``heads`` of them; see the module docstring).

    Attributes:
        texts, ids, payloads: one per point.
        heads: how many points at the end are chunk 0s.
        order: for each point, its position among the chunks in document order (document
            by document, chunk by chunk): where its vectors are in a list given that way.
    """

    texts: list[str]
    ids: list[PointId]
    payloads: list[dict[str, Any]]
    heads: int
    order: list[int]


Span = tuple[int, int]
"""A chunk's ``(start, end)`` in its document: ``text[start:end]`` is the chunk."""


def document_spans(chunker: Any, text: str) -> list[Span]:
    """The spans of a document's chunks; without a chunker, the whole text as one."""
    if chunker is None:
        return [(0, len(text))]
    return [(c.start, c.end) for c in chunker.split(text)]


def check_spans(chunks: Any, texts: list[str]) -> list[list[Span]]:
    """``chunks`` (one sequence of ``(start, end)`` pairs per text) checked and as ints.

    A text has one chunk or more, each inside the text, in order of their starts.

    Raises:
        TypeError: ``chunks`` is not a sequence per text, or a bound is not an int.
        InputError: the count differs from the texts, a text has no chunk, or a span is not
            inside its text or not after the one before it.
    """
    if isinstance(chunks, (str, bytes, Mapping)):
        raise TypeError("chunks must hold one list of (start, end) pairs per text")
    items = list(chunks)
    if len(items) != len(texts):
        raise InputError(f"chunks has {len(items)} entries for {len(texts)} texts")
    checked: list[list[Span]] = []
    for i, (text, spans) in enumerate(zip(texts, items, strict=True)):
        if isinstance(spans, (str, bytes, Mapping)) or not isinstance(spans, Iterable):
            raise TypeError(f"chunks[{i}] is a {type(spans).__name__}; expected (start, end) pairs")
        pairs: list[Span] = []
        for j, pair in enumerate(spans):
            where = f"chunks[{i}][{j}]"
            bounds = [v.item() if isinstance(v, np.integer) else v for v in _pair(pair, where)]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in bounds):
                raise TypeError(f"{where} is {pair!r}; start and end must be ints")
            start, end = bounds
            if not 0 <= start <= end <= len(text):
                raise InputError(
                    f"{where} = ({start}, {end}) is not inside texts[{i}] ({len(text)} characters)"
                )
            if pairs and start <= pairs[-1][0]:
                raise InputError(f"{where} starts at {start}, not after chunk {j - 1}")
            pairs.append((start, end))
        if not pairs:
            raise InputError(f"chunks[{i}] is empty; every text has one chunk or more")
        checked.append(pairs)
    return checked


def _pair(pair: Any, where: str) -> list[Any]:
    bounds = None
    if not isinstance(pair, (str, bytes)) and isinstance(pair, Iterable):
        bounds = list(pair)
    if bounds is None or len(bounds) != 2:
        raise TypeError(f"{where} is {pair!r}; expected a (start, end) pair")
    return bounds


def expand_documents(
    spans: list[list[Span]],
    texts: list[str],
    keys: list[PointId],
    payloads: list[dict[str, Any]],
    fingerprints: list[str],
) -> ChunkPoints:
    """The chunk points of some documents, cut at ``spans`` (one list per document)."""
    rest: list[tuple[str, PointId, dict[str, Any], int]] = []
    heads: list[tuple[str, PointId, dict[str, Any], int]] = []
    position = 0
    for text, key, payload, digest, cuts in zip(
        texts, keys, payloads, fingerprints, spans, strict=True
    ):
        for index, (start, end) in enumerate(cuts):
            record = {
                "doc": str(key),
                "chunk": index,
                "chunks": len(cuts),
                "start": start,
                "end": end,
                "fingerprint": digest,
            }
            piece = text[start:end]
            point = (
                piece,
                chunk_point_id(key, index),
                {**payload, "text": piece, CHUNK_KEY: record},
                position,
            )
            position += 1
            (heads if index == 0 else rest).append(point)
    points = rest + heads
    return ChunkPoints(
        texts=[p[0] for p in points],
        ids=[p[1] for p in points],
        payloads=[p[2] for p in points],
        heads=len(heads),
        order=[p[3] for p in points],
    )


def changed_steps(
    collection: str,
    todo: list[int],
    keys: list[PointId],
    digests: list[str],
    report: SyncReport | None,
) -> Steps[list[int]]:
    """The documents of ``todo`` whose chunk 0 is missing or has another fingerprint."""
    records = yield Call(
        "retrieve",
        {
            "collection_name": collection,
            "ids": [keys[i] for i in todo],
            "with_payload": True,
            "with_vectors": False,
        },
    )
    stored = {str(record.id): chunk_record(record.payload) for record in records}
    changed = []
    for i in todo:
        key = str(keys[i])
        record = stored.get(key)
        if record is not None and record.get("fingerprint") == digests[i]:
            if report is not None:
                report.unchanged += 1
            continue
        changed.append(i)
        if report is not None:
            if key in stored:
                report.updated += 1
            else:
                report.added += 1
    return changed


def delete_missing_steps(collection: str, keep: set[PointId]) -> Steps[int]:
    """Delete every point whose document is not in ``keep``; returns the documents deleted."""
    stale: list[Any] = []
    documents: set[PointId] = set()
    offset = None
    while True:
        records, offset = yield Call(
            "scroll",
            {
                "collection_name": collection,
                "limit": _SCROLL_PAGE,
                "offset": offset,
                "with_payload": True,
                "with_vectors": False,
            },
        )
        for record in records:
            doc = document_key(record.id, record.payload)
            if doc not in keep:
                stale.append(record.id)
                documents.add(doc)
        if offset is None:
            break
    for start in range(0, len(stale), _SCROLL_PAGE):
        yield Call(
            "delete",
            {
                "collection_name": collection,
                "points_selector": models.PointIdsList(points=stale[start : start + _SCROLL_PAGE]),
                "wait": True,
            },
        )
    return len(documents)

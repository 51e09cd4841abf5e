"""What the framework vector stores and :mod:`lfm_ray`'s workers need from a writer.

:class:`StoreMethods` is mixed into :class:`~lfm_qdrant.MultiVectorWriter`: stored points by
id or filter (``get``), queries by a vector the caller embedded (``search_vector``), writes
of vectors the caller already has (``add_dense``: the dense side given, ColBERT encoded
here; ``add_encoded``: every vector given, chunk by chunk), and the two ends of a sync whose
encoding runs elsewhere (``changed_documents``, ``delete_missing``). They reuse the writer's
steps (checks, point building, write order, request splitting, retries) and its sync/async
drivers, so a store written through them is the store ``add`` writes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from qdrant_client import models

from lfm_core import InputError, validate_texts
from lfm_core.validation import check_positive_int

from .documents import (
    SyncReport,
    changed_steps,
    check_spans,
    delete_missing_steps,
    expand_documents,
    fingerprint,
)
from .filters import as_filter
from .fingerprint import CollectionRecord
from .points import PointId, payloads, point_ids, validate_ids
from .search import Legs, QueryVectors, SearchPlan, encode_queries, query_kwargs, vector_request
from .steps import Call, Steps, Work
from .upload import log_cuts

if TYPE_CHECKING:
    from .layout import Layout
    from .lexical import LexicalConfig

T = TypeVar("T")


class StoreMethods:
    """Stored records by id, queries by a given vector, writes of given vectors."""

    if TYPE_CHECKING:
        # Provided by MultiVectorWriter.
        collection_name: str
        colbert: Any
        _layout: Layout
        _lexical: LexicalConfig | None
        _batch_size: int
        _pool_factor: int
        _is_async: bool
        _fingerprint_base: dict[str, Any]

        def _require_sync(self, method: str, asyncmethod: str) -> None: ...
        def _run(self, steps: Steps[T]) -> T: ...
        async def _drive(self, steps: Steps[T]) -> T: ...
        def _ensure_collection(self, *, write: bool, create: bool | None = None) -> Steps[None]: ...
        def _bm25(self, texts: list[str]) -> list[models.SparseVector | None] | None: ...
        def _points(
            self,
            keys: list[PointId],
            batch_payloads: list[dict[str, Any]],
            dense: Any,
            colbert: Any,
            bm25: list[models.SparseVector | None] | None = None,
        ) -> Any: ...
        def _upsert_steps(self, batch: Any, done: Any = None) -> Steps[None]: ...
        def _write_documents(
            self, batch: Any, keys: list[PointId], digests: list[str]
        ) -> Steps[None]: ...

    def add_encoded(
        self,
        texts: Iterable[str],
        *,
        dense_vectors: Any = None,
        colbert_vectors: Any = None,
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
        chunk_spans: Iterable[Iterable[tuple[int, int]]] | None = None,
    ) -> list[PointId]:
        """Upsert documents whose vectors were encoded elsewhere (by :mod:`lfm_ray`'s workers).

        The same ids, payloads, chunk records, fingerprints, collection checks, write order,
        request splitting and retries as :meth:`add`; only the splitting and the encoding
        are skipped. The vectors must come from the models this writer was built with
        (loaded encoders, or their :class:`~lfm_qdrant.ModelRecord`), encoded with
        ``encode_documents``; for the fingerprints to match :meth:`add`'s, build the writer
        with the chunk settings the chunks were cut with (see ``chunking``).

        Args:
            texts: the documents.
            dense_vectors: one ``[dim]`` float32 vector per chunk, when the writer has a dense
                model.
            colbert_vectors: one ``[n_tokens_i, dim]`` array per chunk, when it has ColBERT.
            ids: as for :meth:`add`.
            metadata: as for :meth:`add`.
            chunk_spans: per text, the ``(start, end)`` spans of its chunks in order
                (``text[start:end]`` is a chunk: ``Chunker.split``'s ``start``, ``end``); the
                vectors then follow the chunks, document by document. ``None``: each text is
                one chunk, all of it.

        Returns:
            The stored document ids in input order.

        Raises:
            TypeError: vectors for a model the writer lacks, or missing for one it has; a
                malformed chunk span.
            InputError: a vector count or width that does not match; a span outside its text.
        """
        if self._is_async:
            raise TypeError("add_encoded() needs a sync QdrantClient or an EdgeStore")
        texts = validate_texts(texts)
        keys = validate_ids(ids, texts)
        stored_payloads = payloads(metadata, texts)
        spans = (
            [[(0, len(t))] for t in texts]
            if chunk_spans is None
            else check_spans(chunk_spans, texts)
        )
        count = sum(len(s) for s in spans)
        what = f"{count} texts" if chunk_spans is None else f"{count} chunks"
        dense = self._check_vectors(
            "dense_vectors", dense_vectors, self._layout.dense_dim, count, what
        )
        colbert = self._check_vectors(
            "colbert_vectors", colbert_vectors, self._layout.colbert_dim, count, what
        )
        if not texts:
            return []
        digests = self._fingerprints(keys, texts, stored_payloads)
        points = expand_documents(spans, texts, keys, stored_payloads, digests)

        def steps() -> Steps[list[PointId]]:
            yield from self._ensure_collection(write=True)
            batch = self._points(
                points.ids,
                points.payloads,
                None if dense is None else [dense[i] for i in points.order],
                None if colbert is None else [colbert[i] for i in points.order],
                self._bm25(points.texts),
            )
            batch.heads = points.heads
            yield from self._write_documents(batch, keys, digests)
            log_cuts(batch.truncated, batch.without_colbert, self._layout.colbert_dim)
            return keys

        return self._run(steps())

    def changed_documents(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
    ) -> tuple[list[int], SyncReport]:
        """The documents :meth:`sync` would write, found without writing or encoding.

        A document is added when no point has its id, updated when its chunk 0 holds
        another fingerprint, unchanged otherwise (see :meth:`sync`). :mod:`lfm_ray`'s
        driver asks this before its workers encode anything.

        Args:
            texts, ids, metadata: as for :meth:`add`.

        Returns:
            The positions of the added and updated documents, in input order, and a
            :class:`~lfm_qdrant.SyncReport` of the added, updated and unchanged (``deleted``
            is 0).

        Raises:
            As :meth:`add`; ``TypeError`` with an async client.
        """
        if self._is_async:
            raise TypeError("changed_documents() needs a sync QdrantClient or an EdgeStore")
        texts = validate_texts(texts)
        keys = validate_ids(ids, texts)
        digests = self._fingerprints(keys, texts, payloads(metadata, texts))

        def steps() -> Steps[tuple[list[int], SyncReport]]:
            report = SyncReport()
            if not (yield Call("collection_exists", {"collection_name": self.collection_name})):
                report.added = len(texts)
                return list(range(len(texts))), report
            yield from self._ensure_collection(write=False)
            changed: list[int] = []
            for start in range(0, len(texts), self._batch_size):
                todo = list(range(start, min(start + self._batch_size, len(texts))))
                changed += yield from changed_steps(
                    self.collection_name, todo, keys, digests, report
                )
            return changed, report

        return self._run(steps())

    def delete_missing(self, ids: Iterable[str | int]) -> int:
        """Delete every stored document whose id is not among ``ids``, all its chunks.

        The last step of :meth:`sync`, for documents written another way (as
        :mod:`lfm_ray` writes them, with :meth:`add_encoded`). One scroll of the collection.

        Args:
            ids: the ids of the documents to keep, as :meth:`add` took or returned them.

        Returns:
            How many documents were deleted.

        Raises:
            TypeError / InputError: an id that is not a ``str``/``int``, naming it.
            CollectionError: the collection does not exist or does not fit this writer.
        """
        if self._is_async:
            raise TypeError("delete_missing() needs a sync QdrantClient or an EdgeStore")
        keep = set(point_ids(ids))

        def steps() -> Steps[int]:
            yield from self._ensure_collection(write=True, create=False)
            return (yield from delete_missing_steps(self.collection_name, keep))

        return self._run(steps())

    def _fingerprints(
        self, keys: list[PointId], texts: list[str], stored_payloads: list[dict[str, Any]]
    ) -> list[str]:
        """Each document's fingerprint: its id, text, payload, the models and chunk settings."""
        return [
            fingerprint(key, text, payload, self._fingerprint_base)
            for key, text, payload in zip(keys, texts, stored_payloads, strict=True)
        ]

    def _check_vectors(
        self, name: str, vectors: Any, dim: int | None, count: int, what: str
    ) -> list[np.ndarray] | None:
        if dim is None:
            if vectors is not None:
                raise TypeError(f"{name} given, but this writer has no such model")
            return None
        if vectors is None:
            raise TypeError(f"{name} missing: this writer's collection stores them")
        rows = [np.asarray(v, dtype=np.float32) for v in vectors]
        if len(rows) != count:
            raise InputError(f"{name} has {len(rows)} entries for {what}")
        ndim = 1 if name == "dense_vectors" else 2
        expected = f"[{dim}]" if ndim == 1 else f"[n_tokens, {dim}]"
        for i, row in enumerate(rows):
            if row.ndim != ndim or row.shape[-1] != dim:
                raise InputError(f"{name}[{i}] has shape {row.shape}; expected {expected}")
        return rows

    @staticmethod
    def stored_record(client: Any, collection_name: str) -> CollectionRecord | None:
        """The model record of an existing collection (``None``: no such collection or no
        record), to build a writer for the models that wrote it. Sync clients only.

        Raises:
            CollectionError: a record is there but malformed.
        """
        if not client.collection_exists(collection_name=collection_name):
            return None
        info = client.get_collection(collection_name=collection_name)
        return CollectionRecord.from_metadata(info.config.metadata, collection_name)

    def get(
        self,
        ids: Iterable[str | int] | None = None,
        *,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
    ) -> list[models.Record]:
        """The stored points among ``ids``, in the order of ``ids``; missing ones left out.

        Args:
            ids: ids as :meth:`add` took or returned them.
            query_filter: instead of ``ids``: every point that matches this payload filter
                (read page by page, in id order).

        Returns:
            ``models.Record`` s with their payload (no vectors).

        Raises:
            TypeError: an id that is not a ``str``/``int``.
            InputError: both or neither of ``ids`` and ``query_filter``.
            CollectionError: the collection does not exist or was written by other models.
        """
        self._require_sync("get", "aget")
        return self._run(self._get_steps(ids, query_filter))

    async def aget(
        self,
        ids: Iterable[str | int] | None = None,
        *,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
    ) -> list[models.Record]:
        """Async :meth:`get`."""
        return await self._drive(self._get_steps(ids, query_filter))

    def search_vector(
        self,
        vector: Any,
        limit: int = 10,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
        *,
        mmr_diversity: float | None = None,
        mmr_candidates: int | None = None,
        colbert_query: str | None = None,
        prefetch_limit: int = 100,
    ) -> list[models.ScoredPoint]:
        """Search the ``dense`` vectors with a query vector embedded by the caller.

        Args:
            vector: ``[dim]`` floats, from the writer's dense model (its query side).
            limit: how many points to return.
            query_filter: as for :meth:`search`.
            mmr_diversity: diversify the results by maximal marginal relevance, inside
                Qdrant: 0 is plain relevance, 1 the most diverse; ``None``: no MMR.
            mmr_candidates: nearest points MMR picks from (at least ``limit``).
            colbert_query: the query text: run the hybrid mode of :meth:`search` (its ColBERT
                and lexical legs from this text) with ``vector`` as the dense leg.
            prefetch_limit: candidates of that rerank (>= ``limit``).

        Returns:
            Best first (in MMR order with ``mmr_diversity``), scored by cosine (the hybrid
            score with ``colbert_query``).

        Raises:
            InputError: a vector of the wrong shape, a bad ``limit`` or diversity.
            TypeError: the writer has no dense model (or no ColBERT model for
                ``colbert_query``).
        """
        self._require_sync("search_vector", "asearch_vector")
        rerank = (colbert_query, prefetch_limit)
        return self._run(
            self._vector_steps(vector, limit, query_filter, mmr_diversity, mmr_candidates, rerank)
        )

    async def asearch_vector(
        self,
        vector: Any,
        limit: int = 10,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
        *,
        mmr_diversity: float | None = None,
        mmr_candidates: int | None = None,
        colbert_query: str | None = None,
        prefetch_limit: int = 100,
    ) -> list[models.ScoredPoint]:
        """Async :meth:`search_vector`."""
        rerank = (colbert_query, prefetch_limit)
        return await self._drive(
            self._vector_steps(vector, limit, query_filter, mmr_diversity, mmr_candidates, rerank)
        )

    def add_dense(
        self,
        texts: Iterable[str],
        dense_vectors: Any,
        *,
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
    ) -> list[PointId]:
        """Upsert texts whose dense vectors the caller has; ColBERT is encoded here.

        For frameworks that embed documents themselves (LlamaIndex nodes carry their
        embedding). Ids, payloads, checks and requests as :meth:`add`.

        Args:
            texts: the documents.
            dense_vectors: ``[len(texts), dim]`` floats from the writer's dense model.
            ids: as for :meth:`add`.
            metadata: as for :meth:`add`.

        Returns:
            The stored point ids in input order.

        Raises:
            TypeError: the writer has no dense model; a text or id of the wrong type.
            InputError: a vector count or width that does not match; as :meth:`add`.
        """
        self._require_sync("add_dense", "aadd_dense")
        return self._run(self._add_dense_steps(texts, dense_vectors, ids, metadata))

    async def aadd_dense(
        self,
        texts: Iterable[str],
        dense_vectors: Any,
        *,
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
    ) -> list[PointId]:
        """Async :meth:`add_dense`."""
        return await self._drive(self._add_dense_steps(texts, dense_vectors, ids, metadata))

    def _get_steps(
        self,
        ids: Iterable[str | int] | None,
        query_filter: models.Filter | Mapping[str, Any] | None,
    ) -> Steps[list[models.Record]]:
        if (ids is None) == (query_filter is None):
            raise InputError("get() takes ids or query_filter, one of the two")
        if ids is None:
            flt = as_filter(query_filter)
            yield from self._ensure_collection(write=False)
            found: list[models.Record] = []
            offset = None
            while True:
                page, offset = yield Call(
                    "scroll",
                    {
                        "collection_name": self.collection_name,
                        "scroll_filter": flt,
                        "limit": self._batch_size,
                        "offset": offset,
                        "with_payload": True,
                        "with_vectors": False,
                    },
                )
                found.extend(page)
                if offset is None:
                    return found
        keys = point_ids(ids)
        if not keys:
            return []
        yield from self._ensure_collection(write=False)
        records = yield Call(
            "retrieve",
            {
                "collection_name": self.collection_name,
                "ids": keys,
                "with_payload": True,
                "with_vectors": False,
            },
        )
        by_id = {str(record.id): record for record in records}
        return [by_id[str(key)] for key in keys if str(key) in by_id]

    def _vector_steps(
        self,
        vector: Any,
        limit: int,
        query_filter: models.Filter | Mapping[str, Any] | None,
        mmr_diversity: float | None,
        mmr_candidates: int | None,
        rerank: tuple[str | None, int],
    ) -> Steps[list[models.ScoredPoint]]:
        if self._layout.dense_dim is None:
            raise TypeError("search_vector() searches the dense vectors; this writer has none")
        limit = check_positive_int(limit, "limit")
        colbert_query, prefetch_limit = rerank
        prefetch_limit = check_positive_int(prefetch_limit, "prefetch_limit")
        if colbert_query is not None:
            if self.colbert is None:
                raise TypeError("colbert_query needs a writer with a ColBERT model")
            validate_texts([colbert_query], "colbert_query")
            if prefetch_limit < limit:
                raise InputError(
                    f"prefetch_limit ({prefetch_limit}) is smaller than limit ({limit})"
                )
        shape = np.shape(vector)
        if shape != (self._layout.dense_dim,):
            raise InputError(
                f"the query vector has shape {shape}; expected [{self._layout.dense_dim}]"
            )
        flt = as_filter(query_filter)
        yield from self._ensure_collection(write=False)
        if colbert_query is not None:
            if mmr_diversity is not None:
                raise InputError("MMR diversifies the dense results; it has no ColBERT rerank")
            # The hybrid plan of search(), with the caller's dense vector in the dense leg.
            legs = Legs(dense=None, colbert=self.colbert, lexical=self._lexical)
            (encoded,) = yield Work(encode_queries, ([colbert_query], "hybrid", legs))
            vectors = QueryVectors(
                dense=np.asarray(vector, dtype=np.float32).tolist(),
                colbert=encoded.colbert,
                lexical=encoded.lexical,
            )
            plan = SearchPlan("hybrid", limit, prefetch_limit, flt)
            request = plan.request(vectors)
        else:
            request = vector_request(
                vector, limit, flt, mmr_diversity=mmr_diversity, mmr_candidates=mmr_candidates
            )
        if request is None:
            return []
        response = yield Call(
            "query_points", {"collection_name": self.collection_name, **query_kwargs(request)}
        )
        return list(response.points)

    def _add_dense_steps(
        self,
        texts: Iterable[str],
        dense_vectors: Any,
        ids: Iterable[str | int] | None,
        metadata: Iterable[Mapping[str, Any] | None] | None,
    ) -> Steps[list[PointId]]:
        texts = validate_texts(texts)
        keys = validate_ids(ids, texts)
        stored_payloads = payloads(metadata, texts)
        dense = self._check_vectors(
            "dense_vectors",
            dense_vectors,
            self._layout.dense_dim,
            len(texts),
            f"{len(texts)} texts",
        )
        if dense is None:
            raise TypeError("add_dense() needs a writer with a dense model")
        if not texts:
            return []
        yield from self._ensure_collection(write=True)
        for start in range(0, len(texts), self._batch_size):
            part = slice(start, start + self._batch_size)
            colbert = None
            if self.colbert is not None:
                pooled = {"pool_factor": self._pool_factor} if self._pool_factor > 1 else {}
                encode = functools.partial(
                    self.colbert.encode_documents, show_progress=False, **pooled
                )
                colbert = yield Work(encode, (texts[part],))
            batch = self._points(
                keys[part], stored_payloads[part], dense[part], colbert, self._bm25(texts[part])
            )
            yield from self._upsert_steps(batch)
            log_cuts(batch.truncated, batch.without_colbert, self._layout.colbert_dim)
        return keys

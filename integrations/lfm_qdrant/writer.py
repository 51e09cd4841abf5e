"""``MultiVectorWriter``: index texts in Qdrant with dense + ColBERT vectors; search them.

The add, delete and search logic is written once, as generators of steps (client calls and
encoding work). A sync driver runs them on a ``QdrantClient`` or an
:class:`~lfm_qdrant.EdgeStore`, an async driver on an ``AsyncQdrantClient`` with the encoding
moved to a worker thread. So every store gets the same batching, checks and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from qdrant_client import models
from tqdm.auto import tqdm

from lfm_core import (
    CollectionError,
    InputError,
    LateInteractionEncoder,
    validate_texts,
)
from lfm_core.validation import check_positive_int

from .chunking import ChunkingOptions, chunk_settings, make_chunker
from .documents import (
    CHUNK_KEY,
    SyncReport,
    changed_steps,
    delete_missing_steps,
    document_filter,
    document_spans,
    expand_documents,
)
from .encoders import EncodedElsewhere, load_encoder, model_label
from .explain import explain_steps
from .filters import as_filter
from .fingerprint import CollectionRecord
from .grouping import MAX_FETCH, OVERFETCH, best_per_document, needs_more, widened
from .layout import (
    COLBERT,
    DENSE,
    ColbertDatatype,
    Layout,
    Quantization,
    check_layout,
    has_lexical,
    validate_collection_name,
)
from .lexical import LEXICAL, LexicalConfig
from .points import PointId, payloads, point_ids, validate_ids
from .search import (
    FUSIONS,
    Fusion,
    Legs,
    SearchMode,
    SearchPlan,
    encode_queries,
    explain_points,
    query_kwargs,
    resolve_mode,
)
from .steps import Call, StepDriver, Steps, Work
from .store_api import StoreMethods
from .upload import (
    CLIENT_ERRORS,
    DEFAULT_MAX_REQUEST_BYTES,
    RetryPolicy,
    estimate_point_bytes,
    fit_multivector,
    log_cuts,
    split_requests,
)

__all__ = ["EncodedElsewhere", "MultiVectorWriter", "SearchMode", "SyncReport"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Batch:
    """The points of one encoded batch, their size estimates and what had to be cut."""

    points: list[models.PointStruct]
    sizes: list[int]
    truncated: int = 0
    without_colbert: int = 0
    heads: int = 0  # the last ``heads`` points are chunk 0s, written after the rest


class MultiVectorWriter(StoreMethods):
    """Writes texts to a Qdrant collection with dense and ColBERT vectors, and searches it.

    The collection (created on the first :meth:`add` if missing) holds named vectors
    ``dense`` (cosine, HNSW) and ``colbert`` (multivector, ``MAX_SIM``, HNSW off), the
    payload ``{"text": text, **metadata}``, and in its metadata the record of the models
    that wrote it (:mod:`lfm_qdrant.fingerprint`): a writer with other models is refused.
    :meth:`search` finds candidates with ``dense`` and reranks them with ``colbert`` inside
    Qdrant, in one query. Either model may be left out.

    Thread safety: one writer may be shared by threads; with qdrant-client's local mode its
    client calls are serialized (that engine is not thread-safe), encoding still overlaps.

    Args:
        client: an :class:`~lfm_qdrant.EdgeStore` (Qdrant's engine in-process), a
            ``QdrantClient`` or ``AsyncQdrantClient`` you built: a server or cluster
            ``url=``, or the client's local mode (``":memory:"``, ``path=``; fine for tests
            and small data). With an async client use the ``a``-prefixed methods.
        collection_name: the collection to write and search (Qdrant's naming rules).
        dense: a loaded ``lfm_core.DenseEncoder``, a model name or local folder to load one
            from, a :class:`~lfm_qdrant.ModelRecord` of a model that runs elsewhere (the
            writer then only writes vectors: :meth:`add_encoded`), or ``None``.
        colbert: the same for ColBERT (``lfm_core.LateInteractionEncoder``).
        device: where to load models given by name (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
        quantization: ``"scalar"`` (int8) or ``"binary"`` quantization of both vectors, or
            ``None``; applied when the collection is created.
        on_disk: keep original vectors and payload on disk (memory-mapped) when the
            collection is created; quantized copies stay in RAM.
        colbert_datatype: storage of the ColBERT numbers when the collection is created:
            ``"float32"``, ``"float16"`` (half the bytes) or ``"turbo8"`` (a quarter).
        pool_factor: store about ``1 / pool_factor`` of each document's ColBERT vectors
            (token pooling, :func:`lfm_core.pooling.pool_tokens`); ``1`` keeps them all.
        lexical: give a new collection the ``bm25`` sparse vector (Qdrant's BM25, the
            ``lexical`` leg of :meth:`search`): ``True`` with the default
            :class:`~lfm_qdrant.LexicalConfig`, a ``LexicalConfig`` of your own, or ``False``
            for none. An existing collection keeps what it has: its recorded BM25 settings
            tokenize every document and query.
        shard_number: shards of a new collection on a Qdrant cluster (``None``: the
            server's default). Like the next two, applied only when the writer creates the
            collection, and ignored by an embedded store (one shard on one machine).
        replication_factor: copies of each shard on a cluster.
        write_consistency_factor: replicas that must acknowledge a write.
        batch_size: texts encoded and written per step, and the most points in one request.
            A crash loses at most one step's work; memory stays bounded by it.
        max_request_bytes: cap on the (estimated, REST-encoded) size of one upsert request;
            the server refuses requests over 32 MB by default.
        max_retries: retries of a client call that failed with a transient error (network,
            rate limit, 502/503/504, gRPC UNAVAILABLE ...), with exponential backoff.
        retry_backoff_s: wait before the first retry, doubled after each.
        show_progress: progress bar for :meth:`add`; ``None`` shows it on a terminal only.
        chunking: how documents longer than the models' window are split
            (:class:`~lfm_qdrant.ChunkingOptions`); ``True``: the defaults, ``False``: one
            point per document, cut at the window. A writer given only
            :class:`~lfm_qdrant.ModelRecord` objects cannot count tokens: it splits nothing
            (:meth:`add_encoded` takes the chunks with their vectors) and records the
            settings of a ``ChunkingOptions`` with ``max_tokens``, the size they were cut at.

    Attributes:
        client: the Qdrant client or store.
        collection_name: the collection's name.
        dense: the dense encoder, or ``None``.
        colbert: the ColBERT encoder, or ``None``.

    Raises:
        TypeError: an encoder argument of the wrong kind, or no encoder at all.
        InputError: a batch or size setting below 1, or a name Qdrant refuses.

    Example::

        from lfm_qdrant import EdgeStore, MultiVectorWriter

        writer = MultiVectorWriter(
            EdgeStore("index"), "docs",
            dense="LiquidAI/LFM2.5-Embedding-350M", colbert="LiquidAI/LFM2.5-ColBERT-350M",
        )
        ids = writer.add(["first doc", "second doc"], metadata=[{"n": 1}, {"n": 2}])
        best = writer.search("which doc?", limit=1)[0].payload["text"]
        writer.delete(ids[:1])
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
        colbert_datatype: ColbertDatatype = "float32",
        pool_factor: int = 1,
        lexical: bool | LexicalConfig = True,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        batch_size: int = 64,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_retries: int = 5,
        retry_backoff_s: float = 0.5,
        show_progress: bool | None = None,
        chunking: ChunkingOptions | bool = True,
    ) -> None:
        validate_collection_name(collection_name)
        batch_size = check_positive_int(batch_size, "batch_size")
        max_request_bytes = check_positive_int(max_request_bytes, "max_request_bytes")
        if quantization not in (None, "scalar", "binary"):
            raise InputError(
                f"quantization must be 'scalar', 'binary' or None, not {quantization!r}"
            )
        if colbert_datatype == "uint8":
            raise InputError(
                "colbert_datatype='uint8' would store each number cast to an integer 0..255 "
                "(Qdrant's uint8 is for embeddings quantized beforehand): ColBERT's unit-length "
                "rows would become zeros. Use 'turbo8' (1 byte a number) or 'float16'"
            )
        if colbert_datatype not in ("float32", "float16", "turbo8"):
            raise InputError(
                "colbert_datatype must be 'float32', 'float16' or 'turbo8', "
                f"not {colbert_datatype!r}"
            )
        self.client = client
        self.collection_name = collection_name
        self.dense = load_encoder(dense, "dense", device)
        self.colbert = load_encoder(colbert, "colbert", device)
        if self.dense is None and self.colbert is None and not lexical:
            raise TypeError(
                "MultiVectorWriter needs dense=, colbert=, or the lexical leg; got none of them"
            )
        cluster = {
            name: None if value is None else check_positive_int(value, name)
            for name, value in (
                ("shard_number", shard_number),
                ("replication_factor", replication_factor),
                ("write_consistency_factor", write_consistency_factor),
            )
        }
        if not isinstance(lexical, (bool, LexicalConfig)):
            raise TypeError(
                f"lexical must be True, False or a LexicalConfig, not {type(lexical).__name__}"
            )
        # The BM25 settings this writer uses: its own until it has read the collection's.
        self._lexical: LexicalConfig | None = (
            (LexicalConfig() if lexical is True else lexical) if lexical else None
        )
        self._layout = Layout(
            dense_dim=None if self.dense is None else int(self.dense.dim),
            colbert_dim=None if self.colbert is None else int(self.colbert.dim),
            lexical=self._lexical is not None,
            quantization=quantization,
            on_disk=on_disk,
            colbert_datatype=colbert_datatype,
            **cluster,
        )
        self._chunker = make_chunker(chunking, self.dense, self.colbert)
        settings = chunk_settings(chunking, self._chunker)
        self._record = CollectionRecord.of(
            self.dense, self.colbert, lexical=self._lexical, chunking=settings
        )
        # What every document fingerprint includes besides the document itself.
        self._fingerprint_base = {
            "models": [
                None if m is None else (m.digest or m.model, m.dim)
                for m in (self._record.dense, self._record.colbert)
            ],
            "chunking": settings,
        }
        self._pool_factor = check_positive_int(pool_factor, "pool_factor")
        self._batch_size = batch_size
        self._max_request_bytes = max_request_bytes
        self._show_progress = show_progress
        self._driver = StepDriver(
            client,
            collection_name,
            RetryPolicy(max_retries=max_retries, backoff_s=retry_backoff_s),
        )
        self._is_async = self._driver.is_async
        self._checked: set[bool] = set()  # which checks passed: True = for writing

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(collection_name={self.collection_name!r}, "
            f"dense={model_label(self.dense)}, colbert={model_label(self.colbert)})"
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
    ) -> list[PointId]:
        """Encode and upsert texts, one batch at a time; idempotent.

        Point ids are the caller's ``ids`` or derived from the text (see
        :mod:`lfm_qdrant.points`), so adding the same input again overwrites the same points:
        an interrupted run is completed by running it again, without duplicates. Ids, texts
        and metadata are all validated (and metadata converted to JSON) before the first write.

        Args:
            texts: the documents (any iterable of ``str``; a generator is read once).
            ids: one id per text: an ``int`` >= 0, a UUID string, or any other string key.
                Default: derived from the text.
            metadata: one mapping (or ``None``) per text, merged into the payload next to
                ``"text"``; it must not have a ``"text"`` key itself. numpy values and dates
                are converted; other values without a JSON form are refused.
            skip_existing: before encoding a batch, fetch its ids and skip the points stored
                with exactly this payload. Makes resuming a long run cheap.
            show_progress: overrides the writer's ``show_progress`` for this call.

        Returns:
            The stored point ids in input order (``int``, or a UUID ``str``), also for
            skipped points. Passed back as ``ids=`` (or to :meth:`delete`), they name the
            same points; search results carry them as ``point.id``.

        Raises:
            TypeError: a text is not a ``str``, an id not ``str``/``int``, a metadata item
                not a mapping or a value with no JSON form; or the client is async.
            InputError: ``ids``/``metadata`` length differs from ``texts``; two texts share
                an id; a metadata item has a ``"text"`` key.
            CollectionError: the collection exists with another layout or other models.
        """
        self._require_sync("add", "aadd")
        return self._run(self._add_steps(texts, ids, metadata, skip_existing, show_progress))

    def sync(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
        *,
        delete_missing: bool = True,
        show_progress: bool | None = None,
        progress: Callable[[int], Any] | None = None,
    ) -> SyncReport:
        """Make the collection hold exactly these documents; unchanged ones are not encoded.

        Each document's fingerprint (its id, text, metadata, the models and the chunk
        settings) is compared with the one stored with its first chunk: new documents are
        added, changed ones rewritten with all their chunks, the same ones skipped. With
        ``delete_missing``, stored documents whose id is not among ``ids`` are then deleted,
        all their chunks. Everything is validated before the first write; a run stopped at
        any point and run again ends as one clean run would.

        Args:
            texts: the whole corpus's texts, as for :meth:`add`.
            ids: their ids, as for :meth:`add`.
            metadata: their metadata, as for :meth:`add`.
            delete_missing: delete stored documents absent from the input. ``False`` is
                resume: add and update only.
            show_progress: overrides the writer's ``show_progress`` for this call.
            progress: called with the number of documents done (written or found
                unchanged) after each batch, for a progress display of your own.

        Returns:
            A :class:`~lfm_qdrant.SyncReport`: documents added, updated, unchanged, deleted.

        Raises:
            As :meth:`add`.
        """
        self._require_sync("sync", "async_")
        return self._run(
            self._sync_steps(texts, ids, metadata, delete_missing, show_progress, progress)
        )

    async def async_(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
        *,
        delete_missing: bool = True,
        show_progress: bool | None = None,
        progress: Callable[[int], Any] | None = None,
    ) -> SyncReport:
        """Async :meth:`sync`."""
        return await self._drive(
            self._sync_steps(texts, ids, metadata, delete_missing, show_progress, progress)
        )

    def search(
        self,
        query: str,
        limit: int = 10,
        prefetch_limit: int = 100,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
        *,
        mode: SearchMode | None = None,
        fusion: Fusion = "rrf",
        explain: bool = False,
        chunks: bool = False,
    ) -> list[models.ScoredPoint]:
        """Search the collection for one query.

        Args:
            query: the query text; the encoders apply their query prompt or prefix.
            limit: how many points to return.
            prefetch_limit: candidates the dense stage hands to the rerank in hybrid mode
                (>= ``limit``).
            query_filter: a Qdrant filter on the payload (a ``models.Filter`` or the same as
                a dict), applied to every stage.
            mode: ``"hybrid"`` (every leg the collection has: dense and lexical candidates
                fused, then ColBERT MaxSim over them, fused again with the legs' rankings),
                ``"dense"``, ``"lexical"`` (BM25) or ``"colbert"`` (exact MaxSim over the
                whole collection). Default: hybrid with two legs or more, else the one there is.
            fusion: ``"rrf"`` (reciprocal rank fusion, k=60) or ``"dbsf"`` (distribution-based
                score fusion), for the hybrid stages.
            explain: return :class:`~lfm_qdrant.ExplainedPoint` hits whose ``legs`` say which
                legs found each hit, at what rank and score, and whose ``explanation`` gives
                the ColBERT token matches (with a loaded ColBERT model; from the final hits'
                stored vectors, read in one call, and the search's own query vectors:
                nothing is encoded twice).
            chunks: return chunks (several may come from one document) instead of at most
                one hit per document.

        Returns:
            Best first, one per document (its best chunk) unless ``chunks``;
            ``point.payload["text"]`` is the chunk's text and ``payload["_lfm"]`` its index
            and span in the document, ``point.id`` the document's id as ``add`` returned it
            (with ``chunks``: the chunk's point id), ``point.score`` the mode's score: the fused score in hybrid mode with a
            lexical leg, the MaxSim score in hybrid mode without one and in colbert mode, the
            cosine in dense mode, the BM25 score in lexical mode. A lexical query with no
            token left (only punctuation or stopwords) has no hit.

        Raises:
            TypeError: ``query`` is not a ``str``, a filter of the wrong type, or an async client.
            InputError: bad ``limit``/``prefetch_limit``/``mode``, or a malformed filter.
            CollectionError: the collection does not exist, lacks the mode's vector, or was
                written by other models.
        """
        self._require_sync("search", "asearch")
        return self._run(
            self._search_steps(
                [query], limit, prefetch_limit, query_filter, mode, True, fusion, explain, chunks
            )
        )[0]

    def search_batch(
        self,
        queries: Iterable[str],
        limit: int = 10,
        prefetch_limit: int = 100,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
        *,
        mode: SearchMode | None = None,
        fusion: Fusion = "rrf",
        explain: bool = False,
        chunks: bool = False,
    ) -> list[list[models.ScoredPoint]]:
        """Search for many queries: one encoding pass, one ``query_batch_points`` round trip.

        Arguments and results as :meth:`search`, one result list per query, in order.
        """
        self._require_sync("search_batch", "asearch_batch")
        return self._run(
            self._search_steps(
                queries, limit, prefetch_limit, query_filter, mode, False, fusion, explain, chunks
            )
        )

    def delete(
        self,
        ids: Iterable[str | int] | None = None,
        *,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
    ) -> None:
        """Delete points by id (as :meth:`add` returned them, or the keys given to it) or by filter.

        Args:
            ids: the points to delete; ids that are not stored are ignored.
            query_filter: delete every point that matches this payload filter instead.

        Raises:
            InputError: both or neither of ``ids`` and ``query_filter``.
            CollectionError: the collection does not exist or was written by other models.
        """
        self._require_sync("delete", "adelete")
        self._run(self._delete_steps(ids, query_filter))

    def ensure_collection(self) -> None:
        """Create the collection if it is missing, else check that this writer fits it.

        What :meth:`add` does before its first write; call it to fail early (before a long
        distributed encoding, say) or to create an empty collection.

        Raises:
            CollectionError: the collection exists with another layout or other models.
        """
        self._require_sync("ensure_collection", "aensure_collection")
        self._run(self._ensure_collection(write=True))

    async def aensure_collection(self) -> None:
        """Async :meth:`ensure_collection`."""
        await self._drive(self._ensure_collection(write=True))

    def count(self, query_filter: models.Filter | Mapping[str, Any] | None = None) -> int:
        """Exact number of points in the collection, or of those matching ``query_filter``.

        Raises:
            CollectionError: the collection does not exist.
        """
        self._require_sync("count", "acount")
        return self._run(self._count_steps(query_filter))

    # --------------------------------------------------------------- public, async

    async def aadd(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
        *,
        skip_existing: bool = False,
        show_progress: bool | None = None,
    ) -> list[PointId]:
        """Async :meth:`add`: awaits an ``AsyncQdrantClient``, encodes in a worker thread.

        With a sync client (or an EdgeStore) the whole :meth:`add` runs in a worker thread.
        """
        return await self._drive(
            self._add_steps(texts, ids, metadata, skip_existing, show_progress)
        )

    async def asearch(
        self,
        query: str,
        limit: int = 10,
        prefetch_limit: int = 100,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
        *,
        mode: SearchMode | None = None,
        fusion: Fusion = "rrf",
        explain: bool = False,
        chunks: bool = False,
    ) -> list[models.ScoredPoint]:
        """Async :meth:`search`; same arguments and results."""
        steps = self._search_steps(
            [query], limit, prefetch_limit, query_filter, mode, True, fusion, explain, chunks
        )
        return (await self._drive(steps))[0]

    async def asearch_batch(
        self,
        queries: Iterable[str],
        limit: int = 10,
        prefetch_limit: int = 100,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
        *,
        mode: SearchMode | None = None,
        fusion: Fusion = "rrf",
        explain: bool = False,
        chunks: bool = False,
    ) -> list[list[models.ScoredPoint]]:
        """Async :meth:`search_batch`; same arguments and results."""
        return await self._drive(
            self._search_steps(
                queries, limit, prefetch_limit, query_filter, mode, False, fusion, explain, chunks
            )
        )

    async def adelete(
        self,
        ids: Iterable[str | int] | None = None,
        *,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
    ) -> None:
        """Async :meth:`delete`."""
        await self._drive(self._delete_steps(ids, query_filter))

    async def acount(self, query_filter: models.Filter | Mapping[str, Any] | None = None) -> int:
        """Async :meth:`count`."""
        return await self._drive(self._count_steps(query_filter))

    # ------------------------------------------------------------------- the steps

    def _add_steps(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None,
        metadata: Iterable[Mapping[str, Any] | None] | None,
        skip_existing: bool,
        show_progress: bool | None,
        report: SyncReport | None = None,
        progress: Callable[[int], Any] | None = None,
    ) -> Steps[list[PointId]]:
        texts = validate_texts(texts)
        keys = validate_ids(ids, texts)
        stored_payloads = payloads(metadata, texts)
        if not texts:
            return []
        digests = self._fingerprints(keys, texts, stored_payloads)
        yield from self._ensure_collection(write=True)
        show = self._show_progress if show_progress is None else show_progress
        truncated = without_colbert = 0
        with tqdm(total=len(texts), unit="doc", disable=_tqdm_disable(show)) as bar:
            for start in range(0, len(texts), self._batch_size):
                todo = list(range(start, min(start + self._batch_size, len(texts))))
                if skip_existing:
                    todo = yield from changed_steps(
                        self.collection_name, todo, keys, digests, report
                    )
                    bar.update(min(self._batch_size, len(texts) - start) - len(todo))
                if not todo:
                    if progress is not None:
                        progress(min(self._batch_size, len(texts) - start))
                    continue
                batch = yield Work(
                    self._encode_documents,
                    (
                        [texts[i] for i in todo],
                        [keys[i] for i in todo],
                        [stored_payloads[i] for i in todo],
                        [digests[i] for i in todo],
                    ),
                )
                truncated += batch.truncated
                without_colbert += batch.without_colbert
                yield from self._write_documents(
                    batch, [keys[i] for i in todo], [digests[i] for i in todo]
                )
                bar.update(len(todo))
                if progress is not None:
                    progress(min(self._batch_size, len(texts) - start))
        log_cuts(truncated, without_colbert, self._layout.colbert_dim)
        return keys

    def _sync_steps(
        self,
        texts: Iterable[str],
        ids: Iterable[str | int] | None,
        metadata: Iterable[Mapping[str, Any] | None] | None,
        delete_missing: bool,
        show_progress: bool | None,
        progress: Callable[[int], Any] | None,
    ) -> Steps[SyncReport]:
        report = SyncReport()
        keys = yield from self._add_steps(
            texts, ids, metadata, True, show_progress, report, progress
        )
        if delete_missing:
            yield from self._ensure_collection(write=True)
            report.deleted = yield from delete_missing_steps(self.collection_name, set(keys))
        return report

    def _write_documents(
        self, batch: _Batch, keys: list[PointId], digests: list[str]
    ) -> Steps[None]:
        """Write a batch's chunks so that a run killed at any step leaves no doubt.

        Chunks after the first, then the delete of the documents' other points (stale
        chunks of a longer old version, the old chunk 0), then the chunk 0s: a document
        whose chunk 0 carries the new fingerprint is complete (see ``documents.py``).
        """
        cut = len(batch.points) - batch.heads
        yield from self._upsert_steps(_slice(batch, 0, cut))
        yield Call(
            "delete",
            {
                "collection_name": self.collection_name,
                "points_selector": models.FilterSelector(filter=document_filter(keys, digests)),
                "wait": True,
            },
        )
        yield from self._upsert_steps(_slice(batch, cut, len(batch.points)))

    def _upsert_steps(self, batch: _Batch, done: Callable[[int], Any] | None = None) -> Steps[None]:
        """Upsert a batch's points in requests under the size and count caps."""
        for part in split_requests(batch.sizes, self._max_request_bytes, self._batch_size):
            points = batch.points[part]
            yield Call(
                "upsert",
                {"collection_name": self.collection_name, "points": points, "wait": True},
            )
            if done is not None:
                done(len(points))

    def _encode_documents(
        self,
        texts: list[str],
        keys: list[PointId],
        batch_payloads: list[dict[str, Any]],
        digests: list[str],
    ) -> _Batch:
        """Split documents into chunks, then encode the chunks as any texts."""
        spans = [document_spans(self._chunker, text) for text in texts]
        points = expand_documents(spans, texts, keys, batch_payloads, digests)
        batch = self._encode_batch(points.texts, points.ids, points.payloads)
        batch.heads = points.heads
        return batch

    def _encode_batch(
        self, texts: list[str], keys: list[PointId], batch_payloads: list[dict[str, Any]]
    ) -> _Batch:
        dense = (
            None if self.dense is None else self.dense.encode_documents(texts, show_progress=False)
        )
        colbert = None
        if self.colbert is not None:
            pooled = {"pool_factor": self._pool_factor} if self._pool_factor > 1 else {}
            colbert = self.colbert.encode_documents(texts, show_progress=False, **pooled)
        return self._points(keys, batch_payloads, dense, colbert, self._bm25(texts))

    def _bm25(self, texts: list[str]) -> list[models.SparseVector | None] | None:
        return None if self._lexical is None else self._lexical.embed_documents(texts)

    def _points(
        self,
        keys: list[PointId],
        batch_payloads: list[dict[str, Any]],
        dense: Any,
        colbert: Any,
        bm25: list[models.SparseVector | None] | None = None,
    ) -> _Batch:
        batch = _Batch(points=[], sizes=[])
        for j, key in enumerate(keys):
            vector: dict[str, Any] = {}
            n_floats = 0
            terms = None if bm25 is None else bm25[j]
            if terms is not None:
                # A text with no token left (punctuation, stopwords) gets no bm25 vector.
                vector[LEXICAL] = terms
                n_floats += 2 * len(terms.indices)
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
            # Unvalidated: the id and payload are checked, the vectors are lists of Python
            # floats from numpy; pydantic's per-number check would double our time.
            point = models.PointStruct.model_construct(
                id=key, vector=vector, payload=batch_payloads[j]
            )
            batch.points.append(point)
            batch.sizes.append(estimate_point_bytes(n_floats, batch_payloads[j]))
        return batch

    def _search_steps(
        self,
        queries: Iterable[str],
        limit: int,
        prefetch_limit: int,
        query_filter: models.Filter | Mapping[str, Any] | None,
        mode: SearchMode | None,
        single: bool,
        fusion: Fusion = "rrf",
        explain: bool = False,
        chunks: bool = False,
    ) -> Steps[list[list[models.ScoredPoint]]]:
        if single:
            (query,) = queries
            if not isinstance(query, str):
                what = "None" if query is None else f"a {type(query).__name__}"
                raise TypeError(f"query is {what}; expected str")
            items = validate_texts([query], "query")
        else:
            items = validate_texts(queries, "queries")
        for i, item in enumerate(items):
            if not item.strip():
                where = "query" if single else f"queries[{i}]"
                raise InputError(f"{where} is blank; a search needs some text to look for")
        limit = check_positive_int(limit, "limit")
        prefetch_limit = check_positive_int(prefetch_limit, "prefetch_limit")
        if fusion not in FUSIONS:
            raise InputError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
        if not isinstance(explain, bool):
            raise TypeError(f"explain must be a bool, not {type(explain).__name__}")
        # The mode is checked against the models now, against the collection once read.
        if resolve_mode(mode, self._legs(), collection_known=False) == "hybrid" and (
            prefetch_limit < limit
        ):
            raise InputError(
                f"prefetch_limit ({prefetch_limit}) is smaller than limit ({limit}); the "
                "rerank can only return candidates the first stage found"
            )
        flt = as_filter(query_filter)
        if not items:
            return []
        yield from self._ensure_collection(write=False)
        legs = self._legs()
        mode = resolve_mode(mode, legs)
        # Grouped: ask for more chunks than documents wanted (grouping.py); a two-stage
        # rerank returns at most its prefetch_limit candidates.
        fetch = limit if chunks else max(limit, min(limit * OVERFETCH, MAX_FETCH))
        if mode == "hybrid":
            fetch = min(fetch, max(prefetch_limit, limit))
        plan = SearchPlan(mode, fetch, prefetch_limit, flt, fusion)
        vectors = yield Work(encode_queries, (items, mode, legs))
        planned = [plan.request(v) for v in vectors]
        matches = explain and isinstance(self.colbert, LateInteractionEncoder)
        # A query that can have no hit (lexical, no token left) sends no request.
        requests = {i: r for i, r in enumerate(planned) if r is not None}
        per_leg = [plan.leg_requests(v) if explain else {} for v in vectors]
        extra = [r for legs_of_query in per_leg for r in legs_of_query.values()]
        answers = yield from self._query_steps([*requests.values(), *extra], single)
        results: list[list[Any]] = [[] for _ in planned]
        for i, points in zip(requests, answers, strict=False):
            results[i] = points
        leg_points = iter(answers[len(requests) :])
        found_by = [{leg: next(leg_points) for leg in legs_of_query} for legs_of_query in per_leg]
        if explain:  # chunk by chunk, before grouping (a grouped hit keeps its chunk's legs)
            results = [explain_points(r, f) for r, f in zip(results, found_by, strict=True)]
        if chunks:
            results = [points[:limit] for points in results]
            if matches:
                results = yield from explain_steps(
                    self.colbert, self.collection_name, items, vectors, results
                )
            return results
        hits: list[list[models.ScoredPoint]] = [[] for _ in planned]
        todo = list(requests)
        while todo:
            again = []
            for i in todo:
                hits[i] = best_per_document(results[i], limit)
                asked = int(requests[i].limit or 0)
                if needs_more(len(results[i]), asked, len(hits[i]), limit):
                    requests[i] = widened(requests[i], min(2 * asked, MAX_FETCH))
                    again.append(i)
            if again:
                more = yield from self._query_steps([requests[i] for i in again], single)
                for i, points in zip(again, more, strict=True):
                    results[i] = explain_points(points, found_by[i]) if explain else points
            todo = again
        if matches:
            hits = yield from explain_steps(
                self.colbert, self.collection_name, items, vectors, hits
            )
        return hits

    def _query_steps(
        self, requests: list[models.QueryRequest], single: bool
    ) -> Steps[list[list[models.ScoredPoint]]]:
        if not requests:
            return []
        if single and len(requests) == 1:
            response = yield Call(
                "query_points",
                {"collection_name": self.collection_name, **query_kwargs(requests[0])},
            )
            return [list(response.points)]
        responses = yield Call(
            "query_batch_points",
            {"collection_name": self.collection_name, "requests": requests},
        )
        return [list(response.points) for response in responses]

    def _legs(self) -> Legs:
        return Legs(dense=self.dense, colbert=self.colbert, lexical=self._lexical)

    def _delete_steps(
        self,
        ids: Iterable[str | int] | None,
        query_filter: models.Filter | Mapping[str, Any] | None,
    ) -> Steps[None]:
        if (ids is None) == (query_filter is None):
            raise InputError("delete() takes ids or query_filter, one of the two")
        selector: models.PointIdsList | models.FilterSelector
        if ids is not None:
            keys = point_ids(ids)
            if not keys:
                return
            # A document's chunk 0 has its id; the other chunks name it in their payload.
            selector = models.FilterSelector(
                filter=models.Filter(
                    should=[
                        models.HasIdCondition(has_id=keys),
                        models.FieldCondition(
                            key=f"{CHUNK_KEY}.doc",
                            match=models.MatchAny(any=[str(k) for k in keys]),
                        ),
                    ]
                )
            )
        else:
            selector = models.FilterSelector(filter=as_filter(query_filter) or models.Filter())
        yield from self._ensure_collection(write=True, create=False)
        yield Call(
            "delete",
            {"collection_name": self.collection_name, "points_selector": selector, "wait": True},
        )

    def _count_steps(self, query_filter: models.Filter | Mapping[str, Any] | None) -> Steps[int]:
        flt = as_filter(query_filter)
        yield from self._ensure_collection(write=False)
        result = yield Call(
            "count", {"collection_name": self.collection_name, "count_filter": flt, "exact": True}
        )
        return int(result.count)

    def _ensure_collection(self, *, write: bool, create: bool | None = None) -> Steps[None]:
        """Create the collection (when writing), or check that it fits this writer.

        Writing needs exactly this writer's vectors; searching needs only the ones the
        writer has. Either way the model record must match.
        """
        if write in self._checked:
            return
        create = write if create is None else create
        name = self.collection_name
        exists = yield Call("collection_exists", {"collection_name": name})
        if not exists and not create:
            raise CollectionError(
                f"collection {name!r} does not exist; write to it with add() first"
            )
        if not exists:
            # Another writer may create it between our check and our create: then the
            # create fails (ValueError in local mode, 409 from a server) and we check theirs.
            error = yield Call(
                "create_collection",
                self._layout.create_kwargs(name, metadata=self._record.to_metadata()),
                returns_errors=(ValueError, *CLIENT_ERRORS),
            )
            if isinstance(error, Exception):
                if not (yield Call("collection_exists", {"collection_name": name})):
                    raise error
                exists = True
            elif type(getattr(self.client, "_client", None)).__name__ != "QdrantLocal":
                # Replacing a document deletes its points by this field: indexed, that is
                # 1 ms a batch instead of a scan of the collection (58 ms at 20k points on
                # Edge). qdrant-client's local mode has no payload indexes.
                yield Call(
                    "create_payload_index",
                    {
                        "collection_name": name,
                        "field_name": f"{CHUNK_KEY}.doc",
                        "field_schema": models.PayloadSchemaType.KEYWORD,
                        "wait": True,
                    },
                )
        if exists:
            info = yield Call("get_collection", {"collection_name": name})
            stored = CollectionRecord.from_metadata(info.config.metadata, name)
            if stored is None:  # not ours: what its layout lacks, then that it has no record
                check_layout(info, self._layout, name, exact=write)
                self._record.check(stored, name)
            else:  # other models first: the likeliest cause of another width
                self._record.check(stored, name)
                check_layout(info, self._layout, name, exact=write)
            # The collection decides the lexical leg: its own BM25 settings, or none.
            self._lexical = stored.lexical if stored is not None and has_lexical(info) else None
        self._checked.add(write)
        if write:
            self._checked.add(False)

    # ------------------------------------------------------------------ the drivers

    def _require_sync(self, method: str, asyncmethod: str) -> None:
        self._driver.require_sync(method, asyncmethod)

    def _run(self, steps: Steps[T]) -> T:
        return self._driver.run(steps)

    async def _drive(self, steps: Steps[T]) -> T:
        return await self._driver.drive(steps)


# ---------------------------------------------------------------------- helpers


def _slice(batch: _Batch, start: int, stop: int) -> _Batch:
    return _Batch(points=batch.points[start:stop], sizes=batch.sizes[start:stop])


def _tqdm_disable(show: bool | None) -> bool | None:
    # tqdm: disable=None hides the bar when stderr is not a terminal.
    return None if show is None else not show

"""``MultiVectorWriter``: index texts in Qdrant with dense + ColBERT vectors; search them.

The add, delete and search logic is written once, as generators of steps (client calls and
encoding work). A sync driver runs them on a ``QdrantClient`` or an
:class:`~lfm_qdrant.EdgeStore`, an async driver on an ``AsyncQdrantClient`` with the encoding
moved to a worker thread. So every store gets the same batching, checks and retries.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from qdrant_client import models
from tqdm.auto import tqdm

from lfm_core import (
    CollectionError,
    DenseEncoder,
    InputError,
    LateInteractionEncoder,
    LoadOptions,
    resolve_encoder,
    validate_texts,
)
from lfm_core.validation import check_positive_int

from .chunking import ChunkingOptions, make_chunker
from .documents import (
    CHUNK_KEY,
    SyncReport,
    changed_steps,
    delete_missing_steps,
    document_filter,
    expand_documents,
    fingerprint,
)
from .filters import as_filter
from .fingerprint import CollectionRecord, ModelRecord
from .grouping import MAX_FETCH, OVERFETCH, best_per_document, needs_more
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
from .points import PointId, payloads, point_id, validate_ids
from .search import (
    FUSIONS,
    Fusion,
    Legs,
    QueryVectors,
    SearchMode,
    SearchPlan,
    encode_queries,
    explain_points,
    query_kwargs,
    resolve_mode,
    vector_request,
)
from .steps import Call, StepDriver, Steps, Work
from .upload import (
    CLIENT_ERRORS,
    DEFAULT_MAX_REQUEST_BYTES,
    MAX_MULTIVECTOR_FLOATS,
    RetryPolicy,
    estimate_point_bytes,
    fit_multivector,
    split_requests,
)

__all__ = ["MultiVectorWriter", "SearchMode", "SyncReport"]

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


class MultiVectorWriter:
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
            :class:`~lfm_qdrant.ModelRecord` objects cannot count tokens and does not chunk.

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
        self.dense = _load_encoder(dense, "dense", device)
        self.colbert = _load_encoder(colbert, "colbert", device)
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
        settings = None if self._chunker is None else self._chunker.settings()
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

    def add_encoded(
        self,
        texts: Iterable[str],
        *,
        dense_vectors: Any = None,
        colbert_vectors: Any = None,
        ids: Iterable[str | int] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
    ) -> list[PointId]:
        """Upsert texts whose vectors were encoded elsewhere (by :mod:`lfm_ray`'s workers).

        The same ids, payloads, collection checks, request splitting and retries as
        :meth:`add`; only the encoding is skipped. The vectors must come from the models
        this writer was built with (loaded encoders, or their
        :class:`~lfm_qdrant.ModelRecord`), encoded with ``encode_documents``.

        Args:
            texts: the documents.
            dense_vectors: ``[len(texts), dim]`` float32, when the writer has a dense model.
            colbert_vectors: one ``[n_tokens_i, dim]`` array per text, when it has ColBERT.
            ids: as for :meth:`add`.
            metadata: as for :meth:`add`.

        Returns:
            The stored point ids in input order.

        Raises:
            TypeError: vectors for a model the writer lacks, or missing for one it has.
            InputError: a vector count or width that does not match.
        """
        if self._is_async:
            raise TypeError("add_encoded() needs a sync QdrantClient or an EdgeStore")
        texts = validate_texts(texts)
        keys = validate_ids(ids, texts)
        stored_payloads = payloads(metadata, texts)
        dense = self._check_vectors("dense_vectors", dense_vectors, self._layout.dense_dim, texts)
        colbert = self._check_vectors(
            "colbert_vectors", colbert_vectors, self._layout.colbert_dim, texts
        )
        if not texts:
            return []

        digests = [
            fingerprint(key, text, payload, self._fingerprint_base)
            for key, text, payload in zip(keys, texts, stored_payloads, strict=True)
        ]
        # One point per text (its vectors are given): chunk 0 of a one-chunk document.
        _, _, stored_payloads, _ = expand_documents(None, texts, keys, stored_payloads, digests)

        def steps() -> Steps[list[PointId]]:
            yield from self._ensure_collection(write=True)
            batch = self._points(keys, stored_payloads, dense, colbert, self._bm25(texts))
            yield from self._upsert_steps(batch)
            _log_cuts(batch.truncated, batch.without_colbert, self._layout.colbert_dim)
            return keys

        return self._run(steps())

    def _check_vectors(
        self, name: str, vectors: Any, dim: int | None, texts: list[str]
    ) -> list[np.ndarray] | None:
        if dim is None:
            if vectors is not None:
                raise TypeError(f"{name} given, but this writer has no such model")
            return None
        if vectors is None:
            raise TypeError(f"{name} missing: this writer's collection stores them")
        rows = [np.asarray(v, dtype=np.float32) for v in vectors]
        if len(rows) != len(texts):
            raise InputError(f"{name} has {len(rows)} entries for {len(texts)} texts")
        ndim = 1 if name == "dense_vectors" else 2
        expected = f"[{dim}]" if ndim == 1 else f"[n_tokens, {dim}]"
        for i, row in enumerate(rows):
            if row.ndim != ndim or row.shape[-1] != dim:
                raise InputError(f"{name}[{i}] has shape {row.shape}; expected {expected}")
        return rows

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
                legs found each hit, at what rank and score (the same query vectors: no
                second encoding).
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

    # ------------------------------------------ for the framework vector stores (lfm_langchain,
    # lfm_llamaindex): stored records by id, queries by a given vector, dense vectors given

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
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a list of str or int, not a single str")
        keys = []
        for i, key in enumerate(ids):
            try:
                keys.append(point_id(key))
            except (TypeError, InputError) as error:
                raise type(error)(f"ids[{i}]: {error}") from None
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
        dense = self._check_vectors("dense_vectors", dense_vectors, self._layout.dense_dim, texts)
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
            _log_cuts(batch.truncated, batch.without_colbert, self._layout.colbert_dim)
        return keys

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
        digests = [
            fingerprint(key, text, payload, self._fingerprint_base)
            for key, text, payload in zip(keys, texts, stored_payloads, strict=True)
        ]
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
        _log_cuts(truncated, without_colbert, self._layout.colbert_dim)
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
        chunk_texts, chunk_keys, chunk_payloads, heads = expand_documents(
            self._chunker, texts, keys, batch_payloads, digests
        )
        batch = self._encode_batch(chunk_texts, chunk_keys, chunk_payloads)
        batch.heads = heads
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
            return [points[:limit] for points in results]
        hits: list[list[models.ScoredPoint]] = [[] for _ in planned]
        todo = list(requests)
        while todo:
            again = []
            for i in todo:
                hits[i] = best_per_document(results[i], limit)
                asked = int(requests[i].limit or 0)
                if needs_more(len(results[i]), asked, len(hits[i]), limit):
                    requests[i] = _widened(requests[i], min(2 * asked, MAX_FETCH))
                    again.append(i)
            if again:
                more = yield from self._query_steps([requests[i] for i in again], single)
                for i, points in zip(again, more, strict=True):
                    results[i] = explain_points(points, found_by[i]) if explain else points
            todo = again
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
            if isinstance(ids, (str, bytes)):
                raise TypeError("ids must be a list of str or int, not a single str")
            keys: list[int | str | uuid.UUID] = []
            for i, key in enumerate(ids):
                try:
                    keys.append(point_id(key))
                except (TypeError, InputError) as error:
                    raise type(error)(f"ids[{i}]: {error}") from None
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
            check_layout(info, self._layout, name, exact=write)
            stored = CollectionRecord.from_metadata(info.config.metadata, name)
            self._record.check(stored, name)
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


class EncodedElsewhere:
    """Stands for a model that runs in other processes: the writer records and checks it,
    and writes its vectors (:meth:`MultiVectorWriter.add_encoded`), but cannot encode."""

    def __init__(self, record: ModelRecord) -> None:
        self.model_name = record.model
        self.dim = record.dim
        self.revision = record.revision
        self.checkpoint_digest = record.digest

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a model given as a ``ModelRecord`` cannot encode (``TypeError``)."""
        raise TypeError(
            f"{self.model_name} is given as a ModelRecord: this writer writes vectors encoded "
            "elsewhere (add_encoded) and cannot encode; pass a loaded encoder or a model name"
        )

    encode_documents = encode_queries = _refuse


def _widened(request: models.QueryRequest, fetch: int) -> models.QueryRequest:
    """The same query asking for ``fetch`` chunks, every stage under it for at least as many
    candidates (a fused hybrid query: each leg and the rerank)."""
    return request.model_copy(update={"limit": fetch, "prefetch": _wider(request.prefetch, fetch)})


def _wider(prefetch: Any, fetch: int) -> Any:
    if prefetch is None:
        return None
    if isinstance(prefetch, list):
        return [_wider(p, fetch) for p in prefetch]
    return prefetch.model_copy(
        update={
            "limit": max(prefetch.limit or 0, fetch),
            "prefetch": _wider(prefetch.prefetch, fetch),
        }
    )


def _slice(batch: _Batch, start: int, stop: int) -> _Batch:
    return _Batch(points=batch.points[start:stop], sizes=batch.sizes[start:stop])


def _load_encoder(value: Any, kind: str, device: str) -> Any:
    """An encoder from what the caller passed as ``dense=`` or ``colbert=`` (or ``None``)."""
    if value is None:
        return None
    if isinstance(value, ModelRecord):
        return EncodedElsewhere(value)
    options = LoadOptions(device=device)
    if kind == "dense":
        return resolve_encoder(
            DenseEncoder, value, options=options, owner="MultiVectorWriter dense="
        )
    return resolve_encoder(
        LateInteractionEncoder, value, options=options, owner="MultiVectorWriter colbert="
    )


def _log_cuts(truncated: int, without_colbert: int, colbert_dim: int | None) -> None:
    if truncated:
        logger.warning(
            "%d document(s) had more token vectors than Qdrant stores in one multivector "
            "(%d numbers); kept the first %d vectors of each",
            truncated,
            MAX_MULTIVECTOR_FLOATS,
            MAX_MULTIVECTOR_FLOATS // (colbert_dim or 1),
            extra={"lfm_summable_args": 1},
        )
    if without_colbert:
        logger.warning(
            "%d document(s) got no ColBERT vectors (empty, or only skiplisted tokens); "
            "they are stored without a 'colbert' vector and a rerank cannot return them",
            without_colbert,
            extra={"lfm_summable_args": 1},
        )


def _tqdm_disable(show: bool | None) -> bool | None:
    # tqdm: disable=None hides the bar when stderr is not a terminal.
    return None if show is None else not show


def _model_name(encoder: Any) -> str | None:
    if encoder is None:
        return None
    return repr(getattr(encoder, "model_name", type(encoder).__name__))

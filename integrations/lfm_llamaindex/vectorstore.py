"""``LFMQdrantVectorStore``: a LlamaIndex vector store over an lfm_qdrant multivector collection.

Thin over :class:`lfm_qdrant.MultiVectorWriter`: nodes arrive with their dense embedding
(computed by the index's embed model); the writer adds the ColBERT vectors, validates, writes
and runs every Qdrant query. This module converts LlamaIndex's types.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from qdrant_client import models

from lfm_core import InputError, check_positive_int
from lfm_qdrant import EdgeStore, ModelRecord, MultiVectorWriter, point_id
from lfm_qdrant.points import to_json
from lfm_qdrant.search import MODES

from ._nodes import to_node
from .embeddings import LFMEmbedding
from .filters import to_qdrant_filter

__all__ = ["LFMQdrantVectorStore"]

REF_DOC_KEY = "doc_id"
"""Payload key of a node's source document id (``node_to_metadata_dict`` writes it)."""


class LFMQdrantVectorStore(BasePydanticVectorStore):
    """Late interaction as a LlamaIndex vector store: dense candidates, ColBERT MaxSim, in Qdrant.

    Use it as any LlamaIndex vector store (``StorageContext.from_defaults(vector_store=...)``,
    ``IngestionPipeline(vector_store=...)``). Nodes are stored with the dense embedding the
    index computed (use :class:`LFMEmbedding`), a ColBERT multivector the store computes from
    the node's text, and the payload LlamaIndex stores write (``_node_content``, ``doc_id``,
    the metadata) next to ``"text"``. A query in the default ``hybrid`` mode takes the
    ``prefetch_limit`` nearest points by the query embedding and reranks them by MaxSim with
    the query text, in one Qdrant query.

    Example::

        from llama_index.core import Settings, StorageContext, VectorStoreIndex
        from lfm_llamaindex import LFMEmbedding, LFMQdrantVectorStore

        Settings.embed_model = LFMEmbedding(model_name="LiquidAI/LFM2.5-Embedding-350M")
        store = LFMQdrantVectorStore(
            collection_name="docs", path="./index", colbert="LiquidAI/LFM2.5-ColBERT-350M"
        )
        index = VectorStoreIndex.from_documents(
            documents, storage_context=StorageContext.from_defaults(vector_store=store)
        )
        nodes = index.as_retriever(similarity_top_k=5).retrieve("where is my order?")

    Args:
        collection_name: the collection (created on the first ``add``).
        client: an ``lfm_qdrant.EdgeStore`` or a ``QdrantClient``; or give ``path=`` (an
            embedded store folder) or ``url=`` (a Qdrant server, with ``api_key=``).
        colbert: an ``lfm_core.LateInteractionEncoder``, a model name or folder; ``None``:
            dense only.
        embed_model: the embedding model of the nodes, recorded in the collection (an
            :class:`LFMEmbedding` records its checkpoint); other models are recorded by
            class and width. ``None``: by width alone, or the record already stored.
        mode: default search mode (one of ``lfm_qdrant.search.MODES``); ``None``: hybrid
            with ColBERT, else dense. ``query(..., mode=...)`` (``vector_store_kwargs``)
            overrides it per query.
        prefetch_limit: dense candidates of the hybrid rerank.
        writer_kwargs: other :class:`lfm_qdrant.MultiVectorWriter` settings.

    Raises:
        InputError: not exactly one of ``client``, ``path``, ``url``; an unknown mode.
        TypeError: an ``AsyncQdrantClient`` (async methods run the sync client in threads).
    """

    stores_text: bool = True
    flat_metadata: bool = False
    collection_name: str
    mode: str | None = None
    prefetch_limit: int = 100

    _client: Any = PrivateAttr()
    _colbert: Any = PrivateAttr(default=None)
    _embed_model: Any = PrivateAttr(default=None)
    _writer_kwargs: dict[str, Any] = PrivateAttr(default_factory=dict)
    _writer: MultiVectorWriter | None = PrivateAttr(default=None)

    def __init__(
        self,
        collection_name: str,
        client: Any = None,
        *,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        api_key: str | None = None,
        colbert: Any = None,
        embed_model: Any = None,
        mode: str | None = None,
        prefetch_limit: int = 100,
        writer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        super().__init__(
            stores_text=True,
            collection_name=collection_name,
            mode=mode,
            prefetch_limit=check_positive_int(prefetch_limit, "prefetch_limit"),
        )
        self._client = _client(client, path, url, api_key)
        if inspect.iscoroutinefunction(getattr(self._client, "query_points", None)):
            raise TypeError(
                "LFMQdrantVectorStore takes an EdgeStore or a QdrantClient; its async methods "
                "run them in worker threads (an AsyncQdrantClient is not supported here)"
            )
        self._colbert = os.fspath(colbert) if isinstance(colbert, os.PathLike) else colbert
        self._embed_model = embed_model
        self._writer_kwargs = dict(writer_kwargs or {})

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex stores with a serialized store."""
        return "LFMQdrantVectorStore"

    @property
    def client(self) -> Any:
        """The ``EdgeStore`` or ``QdrantClient``."""
        return self._client

    @property
    def writer(self) -> MultiVectorWriter | None:
        """The writer underneath; ``None`` until the collection exists."""
        return self._get_writer(None)

    # ------------------------------------------------------------------------ writing

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert nodes with their embeddings; ColBERT vectors are computed here.

        Returns:
            The node ids.

        Raises:
            InputError: a node without an embedding, embeddings of two widths, metadata
                without a JSON form; nothing is written then.
        """
        texts, vectors, ids, payloads = _prepare(nodes, self.flat_metadata)
        if not texts:
            return []
        writer = self._get_writer(len(vectors[0]))
        if writer is None:  # unreachable: a width was given
            raise RuntimeError("no writer for a collection that can be created")
        writer.add_dense(texts, vectors, ids=ids, metadata=payloads)
        return ids

    async def async_add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Async :meth:`add`: encoding and writing run in a worker thread."""
        return await asyncio.to_thread(self.add, nodes, **add_kwargs)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        if not isinstance(ref_doc_id, str):
            raise TypeError(f"ref_doc_id must be a str, not {type(ref_doc_id).__name__}")
        writer = self._get_writer(None)
        if writer is not None:
            match = models.MatchValue(value=ref_doc_id)
            flt = models.Filter(must=[models.FieldCondition(key=REF_DOC_KEY, match=match)])
            writer.delete(query_filter=flt)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Async :meth:`delete`."""
        await asyncio.to_thread(self.delete, ref_doc_id)

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes among ``node_ids`` that match ``filters`` (either may be left out).

        Raises:
            InputError: neither ``node_ids`` nor ``filters`` (:meth:`clear` empties the store).
        """
        if node_ids is None and filters is None:
            raise InputError("delete_nodes() needs node_ids, filters or both; clear() empties")
        flt = _filter(filters, None, node_ids)
        writer = self._get_writer(None)
        if writer is not None:
            writer.delete(query_filter=flt)

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Async :meth:`delete_nodes`."""
        await asyncio.to_thread(self.delete_nodes, node_ids, filters)

    def clear(self) -> None:
        """Delete every node (the collection and its model record stay)."""
        writer = self._get_writer(None)
        if writer is not None:
            writer.delete(query_filter=models.Filter())

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await asyncio.to_thread(self.clear)

    # ------------------------------------------------------------------------ reading

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """The stored nodes among ``node_ids`` (in that order) that match ``filters``; all
        nodes when both are left out."""
        writer = self._get_writer(None)
        if writer is None:
            return []
        if filters is None and node_ids:
            records = writer.get(_point_ids(node_ids))
        else:
            records = writer.get(query_filter=_filter(filters, None, node_ids) or models.Filter())
        return [to_node(r, self.collection_name) for r in records]

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Async :meth:`get_nodes`."""
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` best nodes for a query.

        ``query.mode``: ``DEFAULT`` runs the store's mode (or ``mode=`` given here);
        ``MMR`` diversifies the dense results in Qdrant (``mmr_threshold``: 1 is plain
        relevance, 0 the most diversity). Filters, ``doc_ids`` and ``node_ids`` apply to
        every stage.

        Raises:
            InputError: a query mode Qdrant does not run here, a missing embedding or query
                text for the mode, a filter Qdrant cannot express.
        """
        unknown = sorted(set(kwargs) - {"mode"})
        if unknown:
            raise TypeError(f"query() got unknown arguments {unknown}; it takes mode=")
        k = check_positive_int(query.similarity_top_k, "similarity_top_k")
        flt = _filter(query.filters, query.doc_ids, query.node_ids)
        width = None if query.query_embedding is None else len(query.query_embedding)
        writer = self._get_writer(width)
        if writer is None:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        points = self._search(writer, query, k, flt, kwargs.get("mode"))
        nodes = [to_node(p, self.collection_name) for p in points]
        return VectorStoreQueryResult(
            nodes=nodes,
            similarities=[float(p.score) for p in points],
            ids=[n.node_id for n in nodes],
        )

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async :meth:`query`: encoding and the Qdrant query run in a worker thread."""
        return await asyncio.to_thread(self.query, query, **kwargs)

    # -------------------------------------------------------------------- internals

    def _search(
        self,
        writer: MultiVectorWriter,
        query: VectorStoreQuery,
        k: int,
        flt: models.Filter | None,
        mode: str | None,
    ) -> list[Any]:
        if query.mode == VectorStoreQueryMode.MMR:
            lam = 0.5 if query.mmr_threshold is None else query.mmr_threshold
            return writer.search_vector(
                _embedding(query), k, flt, mmr_diversity=1.0 - lam, mmr_candidates=k * 4
            )
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise InputError(
                f"query mode {query.mode.value!r} is not run by this store; use the default "
                f"mode with mode= one of {', '.join(MODES)}, or 'mmr'"
            )
        mode = mode or self.mode or ("hybrid" if writer.colbert is not None else "dense")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        prefetch = max(self.prefetch_limit, k)
        if mode == "dense":
            return writer.search_vector(_embedding(query), k, flt)
        if mode == "hybrid":
            return writer.search_vector(
                _embedding(query), k, flt, colbert_query=_text(query), prefetch_limit=prefetch
            )
        # Modes that encode the query text themselves (colbert, and any the writer adds).
        return writer.search(_text(query), k, prefetch, flt, mode=mode)  # type: ignore[arg-type]

    def _get_writer(self, width: int | None) -> MultiVectorWriter | None:
        """The writer, built once: for the models the collection records, else for the
        embed model (or the width of the first embeddings seen)."""
        if self._writer is not None:
            return self._writer
        stored = MultiVectorWriter.stored_record(self._client, self.collection_name)
        dense = stored.dense if stored is not None else None
        if dense is None:
            if width is None:
                return None  # nothing stored yet, and nothing to create the collection with
            dense = _record(self._embed_model, width)
        self._writer = MultiVectorWriter(
            self._client,
            self.collection_name,
            dense=dense,
            colbert=self._colbert,
            **self._writer_kwargs,
        )
        return self._writer


def _prepare(
    nodes: Sequence[BaseNode], flat_metadata: bool
) -> tuple[list[str], list[list[float]], list[str], list[dict[str, Any]]]:
    """Texts, embeddings, ids and payloads of the nodes, all checked before any write."""
    if isinstance(nodes, BaseNode):
        raise TypeError("nodes must be a list of nodes, not a single node")
    texts, vectors, ids, payloads = [], [], [], []
    for i, node in enumerate(nodes):
        where = f"nodes[{i}] (id {getattr(node, 'node_id', None)!r})"
        if not isinstance(node, BaseNode):
            raise TypeError(f"nodes[{i}] is a {type(node).__name__}; expected a LlamaIndex node")
        if node.embedding is None:
            raise InputError(
                f"{where} has no embedding; add nodes through an index or a pipeline with an "
                "embed model (LFMEmbedding), or set node.embedding"
            )
        for key, value in node.metadata.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}.metadata has a non-str key {key!r}")
            to_json(value, f"{where}.metadata[{key!r}]")
        texts.append(node.get_content(metadata_mode=MetadataMode.NONE))
        vectors.append(node.embedding)
        ids.append(node.node_id)
        payloads.append(node_to_metadata_dict(node, remove_text=True, flat_metadata=flat_metadata))
    return texts, vectors, ids, payloads


def _filter(
    filters: MetadataFilters | None, doc_ids: list[str] | None, node_ids: list[str] | None
) -> models.Filter | None:
    must: list[Any] = []
    if filters is not None and filters.filters:
        must.append(to_qdrant_filter(filters))
    # An empty list means "not given": LlamaIndex's retriever passes node_ids=[] by default.
    if doc_ids:
        must.append(models.FieldCondition(key=REF_DOC_KEY, match=models.MatchAny(any=doc_ids)))
    if node_ids:
        must.append(models.HasIdCondition(has_id=_point_ids(node_ids)))
    return models.Filter(must=must) if must else None


def _point_ids(node_ids: list[str]) -> list[Any]:
    if isinstance(node_ids, str):
        raise TypeError("node_ids must be a list of str, not a single str")
    ids = []
    for i, node_id in enumerate(node_ids):
        if not isinstance(node_id, str):
            raise TypeError(f"node_ids[{i}] is a {type(node_id).__name__}; node ids are str")
        ids.append(point_id(node_id))
    return ids


def _embedding(query: VectorStoreQuery) -> list[float]:
    if query.query_embedding is None:
        raise InputError("this query mode needs query.query_embedding (set an embed model)")
    return query.query_embedding


def _text(query: VectorStoreQuery) -> str:
    if not isinstance(query.query_str, str):
        raise InputError("this query mode needs query.query_str, the ColBERT query text")
    return query.query_str


def _record(embed_model: Any, width: int) -> ModelRecord:
    if isinstance(embed_model, LFMEmbedding):
        record = ModelRecord.of(embed_model.encoder)
    elif embed_model is None:
        record = ModelRecord(model="embeddings given with the nodes", dim=width)
    else:
        cls = type(embed_model)
        record = ModelRecord(model=f"{cls.__module__}.{cls.__qualname__}", dim=width)
    if record.dim != width:
        raise InputError(f"the embeddings have {width} numbers; the embed model makes {record.dim}")
    return record


def _client(client: Any, path: Any, url: str | None, api_key: str | None) -> Any:
    given = [name for name, v in (("client", client), ("path", path), ("url", url)) if v]
    if len(given) != 1:
        raise InputError(
            "pass exactly one of client=, path= (an embedded store folder) or url= (a Qdrant "
            f"server); got {', '.join(given) or 'none'}"
        )
    if path is not None:
        return EdgeStore(path)
    if url is not None:
        from qdrant_client import QdrantClient

        return QdrantClient(url=url, api_key=api_key)
    return client

"""``LFMQdrantVectorStore``: a LangChain ``VectorStore`` over an lfm_qdrant multivector collection.

Thin over :class:`lfm_qdrant.MultiVectorWriter`: the writer holds the models, the ids, the
validation, the batching and every Qdrant query; this module converts LangChain's types.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from lfm_core import DenseEncoder, InputError, LateInteractionEncoder, validate_text
from lfm_qdrant import EdgeStore, MultiVectorWriter, text_point_id
from lfm_qdrant.search import MODES

from ._documents import ID_KEY, to_document
from .embeddings import LFMEmbeddings

__all__ = ["LFMQdrantVectorStore"]

_SEARCH_KWARGS = frozenset({"filter", "mode", "prefetch_limit"})


class LFMQdrantVectorStore(VectorStore):
    """Late interaction as a LangChain vector store: dense candidates, ColBERT MaxSim, in Qdrant.

    Documents go in through ``add_documents`` / ``add_texts`` (or LangChain's indexing API,
    ``langchain_core.indexing.index``) and are stored as points with a ``dense`` vector, a
    ``colbert`` multivector when a ColBERT model is given, and the payload
    ``{"text": page_content, **metadata}``. ``similarity_search`` runs the writer's search:
    in ``hybrid`` mode the dense vectors find ``prefetch_limit`` candidates and ColBERT's
    MaxSim reranks them, in one Qdrant query.

    Ids: a ``Document.id`` or an ``ids=`` item (any ``str``) comes back unchanged as
    ``Document.id``; Qdrant stores it as a UUID derived from it, and the id itself in the
    payload under ``"lc_id"``. Without an id a document's id is a UUID derived from its text,
    so adding the same text again overwrites it instead of duplicating it.

    Example::

        from lfm_langchain import LFMEmbeddings, LFMQdrantVectorStore

        store = LFMQdrantVectorStore.from_documents(
            docs,
            LFMEmbeddings(model_name="LiquidAI/LFM2.5-Embedding-350M"),
            path="./index",
            collection_name="faq",
            colbert="LiquidAI/LFM2.5-ColBERT-350M",
        )
        hits = store.similarity_search("where is my order?", k=4)
        retriever = store.as_retriever(search_kwargs={"k": 4, "mode": "hybrid"})

    Args:
        client: an ``lfm_qdrant.EdgeStore``, a ``QdrantClient`` or an ``AsyncQdrantClient``
            (then only the ``a``-prefixed methods work).
        collection_name: the collection; created on construction when missing (sync clients).
        embedding: an :class:`LFMEmbeddings`, an ``lfm_core.DenseEncoder``, or any LangChain
            ``Embeddings``; the collection's model record then names its class and width.
            ``None`` for a ColBERT-only store.
        colbert: an ``lfm_core.LateInteractionEncoder``, a model name or folder, or ``None``.
        mode: default search mode (one of ``lfm_qdrant.search.MODES``); ``None``: hybrid
            with both models, else the one there is.
        prefetch_limit: default number of dense candidates of the hybrid mode.
        writer_kwargs: other :class:`lfm_qdrant.MultiVectorWriter` settings
            (``quantization``, ``on_disk``, ``batch_size``, ``device``, ...).

    Raises:
        TypeError: no model, or an ``embedding``/``colbert`` of the wrong kind.
        InputError: an unknown mode; a collection name Qdrant refuses.
        CollectionError: the collection exists with another layout or other models.
    """

    def __init__(
        self,
        client: Any,
        collection_name: str,
        embedding: Embeddings | DenseEncoder | None = None,
        colbert: LateInteractionEncoder | str | os.PathLike[str] | None = None,
        *,
        mode: str | None = None,
        prefetch_limit: int = 100,
        writer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self._embedding = embedding
        self.writer = MultiVectorWriter(
            client,
            collection_name,
            dense=_dense_encoder(embedding),
            colbert=os.fspath(colbert) if isinstance(colbert, os.PathLike) else colbert,
            **(writer_kwargs or {}),
        )
        self.mode = mode
        self.prefetch_limit = prefetch_limit
        if not _is_async(client):
            # As langchain-qdrant: the collection exists (and is checked) once the store does,
            # so an empty store searches to [] rather than failing.
            self.writer.ensure_collection()

    @property
    def embeddings(self) -> Embeddings | None:
        """The dense model as LangChain ``Embeddings`` (``None`` for a ColBERT-only store)."""
        if isinstance(self._embedding, Embeddings) or self._embedding is None:
            return self._embedding
        return LFMEmbeddings(encoder=self._embedding)

    # ------------------------------------------------------------------------ writing

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and upsert texts; idempotent by id.

        Args:
            texts: the documents' text (``None`` is refused, naming its position).
            metadatas: one dict (or ``None``) per text, stored as the payload; values must
                have a JSON form (numpy values and dates are converted).
            ids: one ``str`` (or ``None``: derived from the text) per text.
            **kwargs: ``batch_size`` (passed by LangChain's ``index``) is accepted and
                ignored: the writer's ``batch_size`` applies.

        Returns:
            The ids, as given or derived.

        Raises:
            TypeError: a text that is not a ``str``, an id that is not a ``str``, metadata
                without a JSON form; nothing is written then.
            InputError: lengths that differ, two texts with one id, a metadata key
                ``"text"`` or ``"lc_id"``.
        """
        texts, keys, payloads = self._prepare(texts, metadatas, ids, kwargs)
        stored = self.writer.add(texts, ids=keys, metadata=payloads)
        return _returned_ids(keys, stored)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts`: encoding runs in a worker thread."""
        texts, keys, payloads = self._prepare(texts, metadatas, ids, kwargs)
        await self._aensure()
        stored = await self.writer.aadd(texts, ids=keys, metadata=payloads)
        return _returned_ids(keys, stored)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete documents by id; ids that are not stored are ignored.

        Raises:
            InputError: ``ids`` is ``None`` (to empty the store, delete the collection).
        """
        self.writer.delete(_delete_ids(ids, kwargs))
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Async :meth:`delete`."""
        await self._aensure()
        await self.writer.adelete(_delete_ids(ids, kwargs))
        return True

    # ------------------------------------------------------------------------ reading

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among ``ids``, in that order; missing ids are left out."""
        records = self.writer.get(_str_ids(ids, "ids"))
        return [to_document(r, self.writer.collection_name, chunk_record=False) for r in records]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async :meth:`get_by_ids`."""
        await self._aensure()
        records = await self.writer.aget(_str_ids(ids, "ids"))
        return [to_document(r, self.writer.collection_name, chunk_record=False) for r in records]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` documents that best match ``query``, best first.

        Args:
            query: the query text.
            k: how many documents.
            **kwargs: ``filter`` (a Qdrant filter, ``models.Filter`` or its dict form),
                ``mode`` (``"hybrid"``, ``"dense"``, ``"colbert"``, ...), ``prefetch_limit``.
        """
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Async :meth:`similarity_search`."""
        pairs = await self.asimilarity_search_with_score(query, k, **kwargs)
        return [doc for doc, _ in pairs]

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search` with each document's score: MaxSim (hybrid and
        ``colbert`` modes) or the cosine (``dense``)."""
        points = self.writer.search(validate_text(query, "query"), **self._search_args(k, kwargs))
        return self._scored(points)

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`."""
        await self._aensure()
        args = self._search_args(k, kwargs)
        points = await self.writer.asearch(validate_text(query, "query"), **args)
        return self._scored(points)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` nearest documents to a query vector, by the dense vectors alone.

        Args:
            embedding: a query vector from this store's ``embeddings``.
            k: how many documents.
            **kwargs: ``filter``.
        """
        points = self.writer.search_vector(embedding, k, _filter_only(kwargs))
        return [doc for doc, _ in self._scored(points)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search_by_vector`."""
        await self._aensure()
        points = await self.writer.asearch_vector(embedding, k, _filter_only(kwargs))
        return [doc for doc, _ in self._scored(points)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Diverse results by maximal marginal relevance, computed by Qdrant on the dense vectors.

        Args:
            query: the query text.
            k: how many documents.
            fetch_k: nearest candidates MMR picks from.
            lambda_mult: 1 is plain relevance, 0 the most diversity.
            **kwargs: ``filter``.
        """
        vector = self._embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search`."""
        embeddings = self._require_embeddings()
        vector = await embeddings.aembed_query(validate_text(query, "query"))
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search` for a query vector."""
        points = self.writer.search_vector(
            embedding,
            k,
            _filter_only(kwargs),
            mmr_diversity=_diversity(lambda_mult),
            mmr_candidates=fetch_k,
        )
        return [doc for doc, _ in self._scored(points)]

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search_by_vector`."""
        await self._aensure()
        points = await self.writer.asearch_vector(
            embedding,
            k,
            _filter_only(kwargs),
            mmr_diversity=_diversity(lambda_mult),
            mmr_candidates=fetch_k,
        )
        return [doc for doc, _ in self._scored(points)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # Only the dense cosine has a fixed range; MaxSim sums one cosine per query token.
        if self.writer.colbert is None:
            return self._cosine_relevance_score_fn
        raise NotImplementedError(
            "relevance scores in [0, 1] exist for a dense-only store; MaxSim scores are "
            "unbounded sums, so use similarity_search_with_score"
        )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        client: Any = None,
        collection_name: str | None = None,
        colbert: LateInteractionEncoder | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> LFMQdrantVectorStore:
        """A store on a new or existing collection, with ``texts`` added.

        Args:
            texts: the documents' text.
            embedding: as for the constructor.
            metadatas: one dict per text.
            ids: one id per text.
            path: a folder for an embedded ``lfm_qdrant.EdgeStore`` (created if missing).
            url: a Qdrant server (``api_key=`` may be passed too).
            client: a client you built; exactly one of ``path``, ``url`` and ``client``.
            collection_name: the collection (required).
            colbert: as for the constructor.
            **kwargs: ``api_key`` (with ``url``), and the constructor's ``mode``,
                ``prefetch_limit``, ``writer_kwargs``.
        """
        store = cls(
            _client(path, url, client, kwargs.pop("api_key", None)),
            _required_name(collection_name),
            embedding,
            colbert,
            **kwargs,
        )
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        client: Any = None,
        collection_name: str | None = None,
        colbert: LateInteractionEncoder | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> LFMQdrantVectorStore:
        """Async :meth:`from_texts`."""
        store = cls(
            _client(path, url, client, kwargs.pop("api_key", None)),
            _required_name(collection_name),
            embedding,
            colbert,
            **kwargs,
        )
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    def _get_retriever_tags(self) -> list[str]:
        return [*super()._get_retriever_tags(), "lfm-retrieval"]

    # -------------------------------------------------------------------- internals

    def _prepare(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None,
        ids: list[str] | None,
        kwargs: dict[str, Any],
    ) -> tuple[list[str], list[str | int] | None, list[dict[str, Any]]]:
        """Texts, keys and payloads checked before any write (the writer checks the rest)."""
        unknown = sorted(set(kwargs) - {"batch_size"})
        if unknown:
            raise TypeError(f"add_texts() got unknown arguments {unknown}")
        if isinstance(texts, str):
            raise TypeError("texts must be a list of str, not a single str")
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InputError(
                f"metadatas has {len(metadatas)} items but texts has {len(texts)}; "
                "pass one dict (or None) per text"
            )
        metas: list[dict[str, Any]] = []
        given: list[Any] = list(metadatas) if metadatas is not None else [None] * len(texts)
        for i, meta in enumerate(given):
            if meta is not None and not isinstance(meta, Mapping):
                raise TypeError(f"metadatas[{i}] is a {type(meta).__name__}; expected a dict")
            metas.append(dict(meta or {}))
            if ID_KEY in metas[i]:
                raise InputError(
                    f"metadatas[{i}] has the key {ID_KEY!r}, which holds the document id; "
                    "rename that metadata key"
                )
        if ids is None or not any(i is not None for i in ids):
            return texts, None, metas
        if len(ids) != len(texts):
            raise InputError(f"ids has {len(ids)} items but texts has {len(texts)}")
        keys: list[str | int] = []
        for i, (key, text, meta) in enumerate(zip(ids, texts, metas, strict=True)):
            if key is None:
                # No id for this one: the writer's id from its text (validated there).
                keys.append(_text_id(text, i))
                continue
            if not isinstance(key, str):
                raise TypeError(f"ids[{i}] is a {type(key).__name__}; LangChain ids are str")
            keys.append(key)
            meta[ID_KEY] = key
        return texts, keys, metas

    def _search_args(self, k: int, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - _SEARCH_KWARGS)
        if unknown:
            raise TypeError(
                f"unknown search arguments {unknown}; this store takes "
                f"{', '.join(sorted(_SEARCH_KWARGS))}"
            )
        prefetch = kwargs.get("prefetch_limit") or self.prefetch_limit
        return {
            "limit": k,
            # A larger k widens the candidates rather than failing the writer's check.
            "prefetch_limit": max(prefetch, k) if isinstance(k, int) else prefetch,
            "query_filter": kwargs.get("filter"),
            "mode": kwargs.get("mode", self.mode),
        }

    def _scored(self, points: Sequence[Any]) -> list[tuple[Document, float]]:
        name = self.writer.collection_name
        return [(to_document(p, name, chunk_record=False), float(p.score)) for p in points]

    def _require_embeddings(self) -> Embeddings:
        embeddings = self.embeddings
        if embeddings is None:
            raise TypeError("this store has no dense model; vector and MMR searches need one")
        return embeddings

    def _embed_query(self, query: str) -> list[float]:
        return self._require_embeddings().embed_query(validate_text(query, "query"))

    async def _aensure(self) -> None:
        # Async clients cannot check the collection in __init__; the writer caches the check.
        if _is_async(self.writer.client):
            await self.writer.aensure_collection()


class _EmbeddingsEncoder:
    """Any LangChain ``Embeddings`` as the encoder the writer calls (``encode_documents``,
    ``encode_queries``, ``dim``); its record names the class, since it has no checkpoint."""

    def __init__(self, embeddings: Embeddings) -> None:
        self.embeddings = embeddings
        cls = type(embeddings)
        self.model_name = f"{cls.__module__}.{cls.__qualname__}"
        # The width is needed to create the collection; the only general way is to ask.
        self.dim = len(embeddings.embed_query("dimension probe"))

    def encode_documents(self, texts: list[str], **_: Any) -> np.ndarray:
        return self._rows(self.embeddings.embed_documents(list(texts)), "embed_documents")

    def encode_queries(self, texts: list[str], **_: Any) -> np.ndarray:
        return self._rows([self.embeddings.embed_query(t) for t in texts], "embed_query")

    def _rows(self, vectors: list[list[float]], method: str) -> np.ndarray:
        rows = np.asarray(vectors, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise InputError(
                f"{self.model_name}.{method} returned vectors of shape {rows.shape}; "
                f"expected [n, {self.dim}]"
            )
        return rows


def _is_async(client: Any) -> bool:
    # The writer's own test: an AsyncQdrantClient's methods are coroutine functions.
    return inspect.iscoroutinefunction(getattr(client, "query_points", None))


def _dense_encoder(embedding: Any) -> Any:
    if embedding is None or isinstance(embedding, DenseEncoder):
        return embedding
    if isinstance(embedding, LFMEmbeddings):
        return embedding.encoder  # the real model: its record carries the checkpoint digest
    if isinstance(embedding, Embeddings):
        return _EmbeddingsEncoder(embedding)
    raise TypeError(
        f"embedding is a {type(embedding).__name__}; expected LangChain Embeddings "
        "(LFMEmbeddings or any other) or an lfm_core.DenseEncoder"
    )


def _text_id(text: Any, i: int) -> str:
    if not isinstance(text, str):
        what = "None" if text is None else f"a {type(text).__name__}"
        raise TypeError(f"texts[{i}] is {what}; expected str")
    return text_point_id(text)


def _returned_ids(keys: list[str | int] | None, stored: list[Any]) -> list[str]:
    return [str(key) for key in (stored if keys is None else keys)]


def _str_ids(ids: Any, name: str) -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a list of str, not a single str")
    ids = list(ids)
    for i, key in enumerate(ids):
        if not isinstance(key, str):
            raise TypeError(f"{name}[{i}] is a {type(key).__name__}; LangChain ids are str")
    return ids


def _delete_ids(ids: list[str] | None, kwargs: dict[str, Any]) -> list[str]:
    if kwargs:
        raise TypeError(f"delete() got unknown arguments {sorted(kwargs)}")
    if ids is None:
        raise InputError(
            "delete() needs the ids to delete; to empty the store, delete its collection"
        )
    return _str_ids(ids, "ids")


def _filter_only(kwargs: dict[str, Any]) -> Any:
    unknown = sorted(set(kwargs) - {"filter"})
    if unknown:
        raise TypeError(f"unknown arguments {unknown}; vector searches take filter=")
    return kwargs.get("filter")


def _diversity(lambda_mult: float) -> float:
    if not 0.0 <= lambda_mult <= 1.0:
        raise InputError(f"lambda_mult must be in [0, 1]; got {lambda_mult}")
    return 1.0 - lambda_mult


def _client(path: Any, url: str | None, client: Any, api_key: str | None) -> Any:
    given = [name for name, v in (("path", path), ("url", url), ("client", client)) if v]
    if len(given) != 1:
        raise InputError(
            f"pass exactly one of path= (an embedded store folder), url= (a Qdrant server) "
            f"or client=; got {', '.join(given) or 'none'}"
        )
    if path is not None:
        return EdgeStore(path)
    if url is not None:
        from qdrant_client import QdrantClient

        return QdrantClient(url=url, api_key=api_key)
    return client


def _required_name(collection_name: str | None) -> str:
    if collection_name is None:
        raise InputError("collection_name= is required")
    return collection_name

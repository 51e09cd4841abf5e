"""LlamaIndex retriever over a Qdrant collection written by ``lfm_qdrant.MultiVectorWriter``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle

from lfm_core import InputError, check_positive_int, validate_text

from ._nodes import to_node

if TYPE_CHECKING:
    from qdrant_client.models import Filter, ScoredPoint


class _Writer(Protocol):
    """What this retriever uses of ``lfm_qdrant.MultiVectorWriter``.

    Typed structurally so this package does not import another adapter.
    """

    client: Any
    collection_name: str

    def search(
        self,
        query: str,
        limit: int = ...,
        prefetch_limit: int = ...,
        query_filter: Any = ...,
        *,
        chunks: bool = ...,
    ) -> list[ScoredPoint]: ...

    def asearch(
        self,
        query: str,
        limit: int = ...,
        prefetch_limit: int = ...,
        query_filter: Any = ...,
        *,
        chunks: bool = ...,
    ) -> Awaitable[list[ScoredPoint]]: ...


class LFMColBERTRetriever(BaseRetriever):
    """Two-stage retrieval inside Qdrant: dense prefetch, then ColBERT MaxSim.

    Both stages run in Qdrant, in one ``query_points`` call made by the writer's ``search``
    (``asearch`` for :meth:`aretrieve`), with the writer's own encoders, so queries are
    encoded by the same models and prompts as the documents were. Each hit becomes a
    ``NodeWithScore`` holding a ``TextNode`` whose id is the point id, whose text is
    ``payload["text"]`` and whose metadata is the rest of the payload; the score is the
    MaxSim score (the cosine similarity for a dense-only writer).

    ``retrieve`` needs a writer on a ``QdrantClient``; ``aretrieve`` works on both clients
    (awaiting an ``AsyncQdrantClient``, or running a sync client in a worker thread).

    Example:
        >>> writer = MultiVectorWriter(QdrantClient(":memory:"), "docs",  # doctest: +SKIP
        ...                            dense=LFM_DENSE, colbert=LFM_COLBERT)
        >>> writer.add(texts)  # doctest: +SKIP
        >>> nodes = LFMColBERTRetriever(writer, similarity_top_k=5).retrieve("q")  # doctest: +SKIP

    Args:
        writer: An ``lfm_qdrant.MultiVectorWriter`` (sync or async client) whose collection
            holds the documents.
        similarity_top_k: Nodes to return, best first.
        prefetch_limit: Candidates the dense stage hands to MaxSim; at least
            ``similarity_top_k``.
        query_filter: A Qdrant ``Filter`` on the payload, applied to both stages.
        chunks: Return chunks of long documents (several may come from one document)
            instead of one node per stored document (its best chunk).
        callback_manager: LlamaIndex callback manager.
        verbose: LlamaIndex's retriever verbosity flag.
    """

    def __init__(
        self,
        writer: _Writer,
        similarity_top_k: int = 10,
        *,
        prefetch_limit: int = 100,
        query_filter: Filter | None = None,
        chunks: bool = False,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not all(callable(getattr(writer, m, None)) for m in ("search", "asearch")):
            raise TypeError(
                f"writer must be an lfm_qdrant.MultiVectorWriter, not {type(writer).__name__}"
            )
        check_positive_int(similarity_top_k, "similarity_top_k")
        check_positive_int(prefetch_limit, "prefetch_limit")
        if prefetch_limit < similarity_top_k:
            raise InputError(
                f"prefetch_limit={prefetch_limit} is below similarity_top_k={similarity_top_k}; "
                "the dense stage must hand MaxSim at least as many candidates as are returned"
            )
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self.writer = writer
        self.similarity_top_k = similarity_top_k
        self.prefetch_limit = prefetch_limit
        self.query_filter = query_filter
        self.chunks = chunks

    @property
    def _is_async(self) -> bool:
        # The writer's own test: an AsyncQdrantClient's methods are coroutine functions.
        return inspect.iscoroutinefunction(getattr(self.writer.client, "query_points", None))

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self._is_async:
            # An async client's calls are coroutines bound to the caller's event loop;
            # driving them from here would need a second loop. Say so, in LlamaIndex terms.
            raise TypeError(
                "LFMColBERTRetriever: the writer's client is an AsyncQdrantClient; use "
                "`await retriever.aretrieve(...)` / `await query_engine.aquery(...)`, or build "
                "the writer on a QdrantClient for retrieve()"
            )
        points = self.writer.search(
            _query_str(query_bundle),
            limit=self.similarity_top_k,
            prefetch_limit=self.prefetch_limit,
            query_filter=self.query_filter,
            chunks=self.chunks,
        )
        return self._to_nodes(points)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # asearch awaits an AsyncQdrantClient (encoding in a worker thread); on a sync client
        # it runs the whole search in a worker thread. Either way the event loop stays free.
        points = await self.writer.asearch(
            _query_str(query_bundle),
            limit=self.similarity_top_k,
            prefetch_limit=self.prefetch_limit,
            query_filter=self.query_filter,
            chunks=self.chunks,
        )
        return self._to_nodes(points)

    def _to_nodes(self, points: Sequence[ScoredPoint]) -> list[NodeWithScore]:
        name = self.writer.collection_name
        return [NodeWithScore(node=to_node(p, name), score=float(p.score)) for p in points]


def _query_str(query_bundle: QueryBundle) -> str:
    return validate_text(query_bundle.query_str, "query_bundle.query_str")

"""LangChain retriever over a Qdrant collection written by ``lfm_qdrant.MultiVectorWriter``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Literal, Protocol

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from lfm_core import InputError, validate_text

from ._documents import to_document
from .reranker import SCORE_KEY


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
        mode: Any = ...,
        chunks: bool = ...,
    ) -> list[Any]: ...

    def asearch(
        self,
        query: str,
        limit: int = ...,
        prefetch_limit: int = ...,
        query_filter: Any = ...,
        *,
        mode: Any = ...,
        chunks: bool = ...,
    ) -> Awaitable[list[Any]]: ...


class LFMColBERTRetriever(BaseRetriever):
    """Late interaction in LangChain: dense prefetch, then ColBERT MaxSim, inside Qdrant.

    The twin of ``lfm_llamaindex.LFMColBERTRetriever``. Each query runs the writer's
    ``search`` (``asearch`` for ``ainvoke``) with the writer's own encoders, so queries are
    encoded by the same models and prompts as the documents. Each hit is a ``Document``
    whose ``page_content`` is ``payload["text"]``, whose ``id`` is the point id (or the id
    given to :class:`LFMQdrantVectorStore`, which builds the same documents) and whose
    metadata is the rest of the payload plus ``metadata["relevance_score"]`` (the MaxSim
    score; the cosine in dense mode).

    Example::

        from lfm_langchain import LFMColBERTRetriever
        from lfm_qdrant import EdgeStore, MultiVectorWriter

        writer = MultiVectorWriter(EdgeStore("./index"), "faq", dense=dense, colbert=colbert)
        retriever = LFMColBERTRetriever(writer=writer, k=5)
        docs = retriever.invoke("where is my order?")
        chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | llm

    Args:
        **data: the fields below, by keyword.

    Attributes:
        writer: an ``lfm_qdrant.MultiVectorWriter`` whose collection holds the documents.
        k: documents to return, best first.
        prefetch_limit: candidates of the dense stage (hybrid mode), at least ``k``.
        mode: ``"hybrid"``, ``"dense"``, ``"lexical"`` (BM25) or ``"colbert"``; ``None``: the
            writer's default.
        query_filter: a Qdrant filter on the payload (``models.Filter`` or its dict form),
            applied to every stage. ``invoke(query, filter=...)`` overrides it for one call.
        chunks: return chunks of long documents (several may come from one document)
            instead of one ``Document`` per stored document (its best chunk).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    writer: Any
    """The ``lfm_qdrant.MultiVectorWriter``."""
    k: int = Field(default=4, gt=0)
    """Documents to return."""
    prefetch_limit: int = Field(default=100, gt=0)
    """Candidates of the dense stage in hybrid mode."""
    mode: Literal["hybrid", "dense", "lexical", "colbert"] | None = None
    """Search mode; None: hybrid (every leg of the collection) with two legs or more."""
    query_filter: Any = None
    """A Qdrant filter applied to every query."""
    chunks: bool = False
    """Return chunks instead of one hit per document."""

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        # Checked after pydantic, so that the errors are ours and not a ValidationError.
        if not all(callable(getattr(self.writer, m, None)) for m in ("search", "asearch")):
            raise TypeError(
                f"writer must be an lfm_qdrant.MultiVectorWriter, not {type(self.writer).__name__}"
            )
        if self.prefetch_limit < self.k:
            raise InputError(
                f"prefetch_limit={self.prefetch_limit} is below k={self.k}; the dense stage must "
                "hand MaxSim at least as many candidates as are returned"
            )

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        **kwargs: Any,
    ) -> list[Document]:
        if inspect.iscoroutinefunction(getattr(self.writer.client, "query_points", None)):
            raise TypeError(
                "LFMColBERTRetriever: the writer's client is an AsyncQdrantClient; use "
                "`await retriever.ainvoke(...)`, or build the writer on a sync client for invoke()"
            )
        points = self.writer.search(validate_text(query), **self._search_args(kwargs))
        return self._to_documents(points)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        **kwargs: Any,
    ) -> list[Document]:
        # asearch awaits an AsyncQdrantClient (encoding in a worker thread), or runs a sync
        # client's search in a worker thread: the event loop stays free either way.
        points = await self.writer.asearch(validate_text(query), **self._search_args(kwargs))
        return self._to_documents(points)

    def _search_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - {"filter", "k"})
        if unknown:
            raise TypeError(f"LFMColBERTRetriever.invoke got unknown arguments {unknown}")
        k = kwargs.get("k", self.k)
        return {
            "limit": k,
            "prefetch_limit": max(self.prefetch_limit, k),
            "query_filter": kwargs.get("filter", self.query_filter),
            "mode": self.mode,
            "chunks": self.chunks,
        }

    def _to_documents(self, points: Sequence[Any]) -> list[Document]:
        name = self.writer.collection_name
        return [to_document(point, name, SCORE_KEY) for point in points]


__all__ = ["LFMColBERTRetriever"]

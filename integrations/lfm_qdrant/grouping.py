"""One hit per document: the best chunk of each, ``limit`` counting documents.

Qdrant Edge has no grouping query (``EdgeShard`` offers ``query``/``query_batch`` only), so
every store groups the same way, here: the query asks for ``OVERFETCH x limit`` chunks,
the first (best-scored) chunk of each document is kept, in score order, until ``limit``
documents. When the chunks fetched hold fewer documents and the store had more to give
(a full page came back), the query is repeated with twice the page, up to
:data:`MAX_FETCH` chunks. The result is then exactly "rank chunks, keep each document's
best, take ``limit``" over the chunks the search mode ranks (all of them for an exact
search; the HNSW or prefetch candidates otherwise), which is what Qdrant's
``query_points_groups`` with ``group_size=1`` returns too.

A grouped hit is the best chunk's ``ScoredPoint`` with ``id`` set to the document's point
id; its payload keeps the chunk text and ``_lfm`` (chunk index and span).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import models

from .documents import document_key

__all__ = ["MAX_FETCH", "OVERFETCH", "best_per_document", "needs_more"]

OVERFETCH = 4
"""Chunks asked for per document wanted on the first try."""
MAX_FETCH = 4096
"""Most chunks one grouped query asks for; past it a query may return fewer documents."""


def best_per_document(points: Sequence[models.ScoredPoint], limit: int) -> list[models.ScoredPoint]:
    """The first point of each document, in the given (best-first) order, at most ``limit``.

    >>> p = lambda i, doc, s: models.ScoredPoint(id=i, version=0, score=s,
    ...     payload={"_lfm": {"doc": doc}})
    >>> [(h.id, h.score) for h in best_per_document([p(9, "1", .9), p(8, "1", .8), p(7, "2", .7)], 5)]
    [(1, 0.9), (2, 0.7)]
    """
    seen: set[object] = set()
    hits: list[models.ScoredPoint] = []
    for point in points:
        doc = document_key(point.id, point.payload)
        if doc in seen:
            continue
        seen.add(doc)
        hits.append(point if point.id == doc else point.model_copy(update={"id": doc}))
        if len(hits) == limit:
            break
    return hits


def needs_more(fetched: int, asked: int, documents: int, limit: int) -> bool:
    """Whether a grouped query should be repeated with a larger page.

    >>> needs_more(fetched=40, asked=40, documents=7, limit=10)
    True
    >>> needs_more(fetched=23, asked=40, documents=7, limit=10)  # the store had no more
    False
    """
    return documents < limit and fetched >= asked and asked < MAX_FETCH


def widened(request: models.QueryRequest, fetch: int) -> models.QueryRequest:
    """The same query asking for ``fetch`` chunks, every stage under it for at least as many
    candidates (a fused hybrid query: each leg and the rerank)."""
    return request.model_copy(
        update={"limit": fetch, "prefetch": wider_prefetch(request.prefetch, fetch)}
    )


def wider_prefetch(prefetch: Any, fetch: int) -> Any:
    if prefetch is None:
        return None
    if isinstance(prefetch, list):
        return [wider_prefetch(p, fetch) for p in prefetch]
    return prefetch.model_copy(
        update={
            "limit": max(prefetch.limit or 0, fetch),
            "prefetch": wider_prefetch(prefetch.prefetch, fetch),
        }
    )

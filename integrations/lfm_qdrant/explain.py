"""Token matches of search hits, from the ColBERT vectors the collection stored.

A hit's explanation needs its text (``payload["text"]``, the embedded text) and its
``colbert`` vectors: read from the hit when it carries them, else retrieved by id, so the
documents are never encoded again; only the query is (once), unless its vectors are given.

Usage::

    hits = writer.search("when do orders ship", limit=10)
    for hit, why in zip(hits, explain_hits(colbert, "when do orders ship", hits,
                                           store=store, collection_name="docs")):
        print(hit.payload["text"], [(m.query_token, m.document_token) for m in why.matches])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lfm_core import Explanation, LateInteractionEncoder
from lfm_core.explain import explain_documents

from .documents import own_point_id
from .layout import COLBERT
from .search import QueryVectors
from .steps import Call, Steps, Work

__all__ = ["explain_hits", "stored_colbert_vectors"]


def stored_colbert_vectors(
    store: Any, collection_name: str, ids: Sequence[Any]
) -> dict[Any, np.ndarray]:
    """The stored ``colbert`` multivector of each point among ``ids`` that has one.

    Args:
        store: a sync ``QdrantClient`` or an :class:`EdgeStore`.
        collection_name: the collection.
        ids: point ids, as search results carry them.

    Returns:
        ``{point id: [n, dim] float32}``; points without ColBERT vectors are left out.
    """
    if not ids:
        return {}
    records = store.retrieve(collection_name, list(ids), with_payload=False, with_vectors=True)
    out = {}
    for record in records:
        rows = _colbert_of(record)
        if rows is not None:
            out[record.id] = rows
    return out


def explain_hits(
    encoder: LateInteractionEncoder,
    query: str,
    hits: Sequence[Any],
    *,
    store: Any = None,
    collection_name: str | None = None,
    query_vectors: np.ndarray | None = None,
    text_key: str = "text",
) -> list[Explanation | None]:
    """One :class:`~lfm_core.Explanation` per hit, from its stored ColBERT vectors.

    Args:
        encoder: the collection's ColBERT encoder (its tokenizer gives the spans).
        query: the query the hits answer.
        hits: ``ScoredPoint``s or ``Record``s with payloads (``vector`` used when it holds
            ``colbert``).
        store: where to retrieve the vectors of hits that do not carry them; without a
            store such hits are encoded from their text.
        collection_name: the collection (with ``store``).
        query_vectors: the query's ColBERT vectors when already encoded.
        text_key: the payload key of the embedded text.

    Returns:
        Per hit, its explanation, or ``None`` when its payload has no text.
    """
    vectors: dict[int, np.ndarray | None] = {i: _colbert_of(hit) for i, hit in enumerate(hits)}
    if store is not None and collection_name is not None:
        # A grouped hit has its document's id; its vectors are its chunk's.
        own = {i: own_point_id(hit.id, hit.payload) for i, hit in enumerate(hits)}
        need = [own[i] for i in own if vectors[i] is None]
        found = {str(k): v for k, v in stored_colbert_vectors(store, collection_name, need).items()}
        for i in own:
            if vectors[i] is None:
                vectors[i] = found.get(str(own[i]))
    with_text = [
        i for i, hit in enumerate(hits) if isinstance((hit.payload or {}).get(text_key), str)
    ]
    out: list[Explanation | None] = [None] * len(hits)
    if not with_text:
        return out
    explained = explain_documents(
        encoder,
        query,
        [hits[i].payload[text_key] for i in with_text],
        [vectors[i] for i in with_text],
        query_vectors=query_vectors,
    )
    for i, why in zip(with_text, explained):
        out[i] = why
    return out


def explain_steps(
    encoder: LateInteractionEncoder,
    collection_name: str,
    queries: list[str],
    vectors: list[QueryVectors],
    hits: list[list[Any]],
) -> Steps[list[list[Any]]]:
    """(Internal: run by the writer's drivers.) The steps of ``search(explain=True)``'s token matches: the hits with their
    ``explanation``, from the final hits' ColBERT vectors read in one call (only theirs: a
    query's over-fetched candidates would cost more to carry) and the query vectors the
    search used (encoded here only where its mode had none)."""
    # A grouped hit has its document's id; its text and vectors are its best chunk's.
    own = [[own_point_id(p.id, p.payload) for p in points] for points in hits]
    ids = list({str(i): i for ids_of_query in own for i in ids_of_query}.values())
    stored: dict[str, Any] = {}
    if ids:
        records = yield Call(
            "retrieve",
            {
                "collection_name": collection_name,
                "ids": ids,
                "with_payload": False,
                "with_vectors": [COLBERT],
            },
        )
        stored = {str(r.id): r.vector for r in records}

    def explain(
        points: list[Any], point_ids: list[Any], query: str, encoded: QueryVectors
    ) -> list[Any]:
        query_vectors = None
        if encoded.colbert is not None:
            query_vectors = np.asarray(encoded.colbert, dtype=np.float32)
        carrying = [
            p.model_copy(update={"vector": stored.get(str(i))})
            for p, i in zip(points, point_ids, strict=True)
        ]
        explained = explain_hits(encoder, query, carrying, query_vectors=query_vectors)
        return [
            p.model_copy(update={"explanation": why})
            for p, why in zip(points, explained, strict=True)
        ]

    out = []
    for query, encoded, points, point_ids in zip(queries, vectors, hits, own, strict=True):
        out.append((yield Work(explain, (points, point_ids, query, encoded))))
    return out


def _colbert_of(point: Any) -> np.ndarray | None:
    vector = getattr(point, "vector", None)
    if not isinstance(vector, dict) or not vector.get(COLBERT):
        return None
    return np.asarray(vector[COLBERT], dtype=np.float32)

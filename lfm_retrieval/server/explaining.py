"""``"explain": true`` on ``/v1/search`` and ``/v1/rerank``: each hit's ColBERT token matches.

Run on the model thread, like the searches and scores they explain. Search hits are
explained from the ColBERT vectors their collection stored (retrieved by id: the documents
are not encoded again); rerank results from the vectors the rerank just computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lfm_core import LateInteractionEncoder
from lfm_core.explain import explain_documents

from .batching import Encoded, ServedEncoder
from .schemas import SearchRequest

__all__ = ["explain_rerank", "explain_search"]


def explain_search(
    writer: Any, store: Any, body: SearchRequest, hits: Sequence[Any]
) -> list[dict[str, Any] | None]:
    """Per hit, its explanation as JSON, or ``None`` (no ColBERT vectors, or no text)."""
    from lfm_qdrant.explain import explain_hits

    colbert = getattr(writer, "colbert", None)
    if not hits or not isinstance(colbert, LateInteractionEncoder):
        return [None] * len(hits)
    explained = explain_hits(
        colbert, body.query, hits, store=store, collection_name=body.collection
    )
    return [None if why is None else why.to_dict() for why in explained]


def explain_rerank(
    encoder: ServedEncoder,
    query: str,
    documents: Sequence[str],
    with_text: Sequence[int],
    query_encoded: Encoded,
    documents_encoded: Encoded,
) -> dict[int, dict[str, Any]]:
    """``{document index: explanation}`` of the scored documents (ColBERT only: else empty)."""
    if not isinstance(encoder, LateInteractionEncoder):
        return {}
    explained = explain_documents(
        encoder,
        query,
        [documents[i] for i in with_text],
        list(documents_encoded.vectors),
        query_vectors=query_encoded.vectors[0],
    )
    return {i: why.to_dict() for i, why in zip(with_text, explained)}

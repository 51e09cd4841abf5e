"""``"explain": true`` on ``/v1/search`` and ``/v1/rerank``: each hit's ColBERT token matches.

Run on the model thread, like the scores they explain: rerank results are explained from the
vectors the rerank just computed. (Search hits are explained by the writer itself,
``search(explain=True)``: from the final hits' stored ColBERT vectors.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lfm_core import LateInteractionEncoder
from lfm_core.explain import explain_documents

from .batching import Encoded, ServedEncoder

__all__ = ["explain_rerank"]


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

"""Qdrant points as LangChain ``Document`` s: the one conversion the store and the retriever share."""

from __future__ import annotations

from typing import Any

from langchain_core.documents import Document

from lfm_core import CollectionError

ID_KEY = "lc_id"
"""Payload key holding the id a LangChain caller gave a document (``"doc-17"``), so that
``Document.id`` comes back as given although Qdrant stores a UUID derived from it."""


CHUNK_RECORD_KEY = "_lfm"
"""Payload key of the chunk record (document, chunk index, span, fingerprint)."""


def to_document(
    point: Any, collection_name: str, score_key: str | None = None, *, chunk_record: bool = True
) -> Document:
    """A point (``Record`` or ``ScoredPoint``) as a ``Document``.

    ``page_content`` is ``payload["text"]``, ``id`` the caller's id (or the point id when none
    was given), ``metadata`` the rest of the payload, plus the score under ``score_key``.
    ``chunk_record=False`` leaves the chunk record out: a vector store hands back exactly the
    metadata it was given.

    Raises:
        CollectionError: the point has no ``str`` ``payload["text"]``.
    """
    payload = dict(point.payload or {})
    text = payload.pop("text", None)
    if not isinstance(text, str):
        raise CollectionError(
            f"point {point.id} in collection {collection_name!r} has no str "
            'payload["text"]; was the collection written by lfm_qdrant.MultiVectorWriter?'
        )
    key = payload.pop(ID_KEY, None)
    if not chunk_record:
        payload.pop(CHUNK_RECORD_KEY, None)
    if score_key is not None:
        payload[score_key] = float(point.score)
    return Document(id=str(point.id if key is None else key), page_content=text, metadata=payload)

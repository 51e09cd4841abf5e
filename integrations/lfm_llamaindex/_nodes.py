"""Qdrant points as LlamaIndex nodes: the one conversion the store and the retriever share."""

from __future__ import annotations

from typing import Any

from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from lfm_core import CollectionError

NODE_CONTENT_KEY = "_node_content"
"""Payload key of the node's own JSON (id, relationships, metadata), as LlamaIndex stores
write it; points written without it become a plain ``TextNode`` with the point id."""


def to_node(point: Any, collection_name: str) -> BaseNode:
    """A point (``Record`` or ``ScoredPoint``) as the node it was written from.

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
    if NODE_CONTENT_KEY in payload:
        return metadata_dict_to_node(payload, text=text)
    return TextNode(id_=str(point.id), text=text, metadata=payload)

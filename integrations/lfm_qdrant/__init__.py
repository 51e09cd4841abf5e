"""lfm_qdrant: Qdrant multivector collections for LFM2.5 dense + ColBERT retrieval.

Usage::

    from lfm_qdrant import EdgeStore, MultiVectorWriter

    store = EdgeStore("./index")          # Qdrant's engine in-process; or a QdrantClient(url=...)
    writer = MultiVectorWriter(store, "docs", dense=dense_encoder, colbert=colbert_encoder)
    ids = writer.add(texts, metadata=metadata)
    hits = writer.search("query", limit=10)  # dense + BM25 fused, MaxSim, fused again, in Qdrant
"""

from .chunking import Chunk, Chunker, ChunkingOptions
from .documents import CHUNK_KEY, SyncReport, chunk_point_id, document_key
from .edge import EdgeStore, StoreError, StoreFullError
from .encoders import EncodedElsewhere
from .filters import FilterError, as_filter
from .fingerprint import METADATA_KEY, CollectionRecord, ModelRecord
from .layout import COLBERT, DENSE, validate_collection_name
from .lexical import LEXICAL, LexicalConfig
from .points import KEY_NAMESPACE, TEXT_NAMESPACE, PointId, point_id, text_point_id
from .search import FUSIONS, MODES, ExplainedPoint, Fusion, LegRank, SearchMode
from .upload import DEFAULT_MAX_REQUEST_BYTES, MAX_MULTIVECTOR_FLOATS
from .writer import MultiVectorWriter


def __getattr__(name: str) -> object:
    # 0.1's name for the namespace of key-derived ids; texts now have a namespace of their own.
    if name == "ID_NAMESPACE":
        import warnings

        warnings.warn(
            "lfm_qdrant.ID_NAMESPACE is deprecated: it is KEY_NAMESPACE (ids from string keys); "
            "ids from texts use TEXT_NAMESPACE",
            DeprecationWarning,
            stacklevel=2,
        )
        return KEY_NAMESPACE
    raise AttributeError(f"module 'lfm_qdrant' has no attribute {name!r}")


__all__ = [
    "CHUNK_KEY",
    "COLBERT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DENSE",
    "FUSIONS",
    "KEY_NAMESPACE",
    "LEXICAL",
    "MAX_MULTIVECTOR_FLOATS",
    "METADATA_KEY",
    "MODES",
    "TEXT_NAMESPACE",
    "Chunk",
    "Chunker",
    "ChunkingOptions",
    "CollectionRecord",
    "EdgeStore",
    "EncodedElsewhere",
    "ExplainedPoint",
    "FilterError",
    "Fusion",
    "LegRank",
    "LexicalConfig",
    "ModelRecord",
    "MultiVectorWriter",
    "PointId",
    "SearchMode",
    "StoreError",
    "StoreFullError",
    "SyncReport",
    "as_filter",
    "chunk_point_id",
    "document_key",
    "point_id",
    "text_point_id",
    "validate_collection_name",
]

"""lfm_qdrant: Qdrant multivector collections for LFM2.5 dense + ColBERT retrieval.

Usage::

    from lfm_qdrant import MultiVectorWriter

    writer = MultiVectorWriter(client, "docs", dense=dense_encoder, colbert=colbert_encoder)
    writer.add(texts, metadata=metadata)
    hits = writer.search("query", limit=10)  # dense prefetch, MaxSim rerank, in Qdrant
"""

from .layout import COLBERT, DENSE
from .upload import DEFAULT_MAX_REQUEST_BYTES, MAX_MULTIVECTOR_FLOATS
from .writer import ID_NAMESPACE, MultiVectorWriter, point_id

__all__ = [
    "COLBERT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DENSE",
    "ID_NAMESPACE",
    "MAX_MULTIVECTOR_FLOATS",
    "MultiVectorWriter",
    "point_id",
]

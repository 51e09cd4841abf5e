"""lfm_ray: encode a corpus on many Ray workers and GPUs, write it into Qdrant, exactly.

Usage::

    import ray
    from lfm_ray import index_dataset

    ds = ray.data.read_json("corpus.jsonl")          # rows {"text": ..., "id": ...}
    result = index_dataset(
        ds, collection="docs", url="http://qdrant:6333",
        dense="LiquidAI/LFM2.5-Embedding-350M", colbert="LiquidAI/LFM2.5-ColBERT-350M",
        id_column="id", concurrency=8, num_gpus=1,
    )

The same point ids and vectors as one process (``MultiVectorWriter.add``), however many
workers, and a rerun after a crash finishes the job without duplicates.
"""

from .encode import (
    COLBERT_COLUMN,
    COLBERT_ROWS_COLUMN,
    DENSE_COLUMN,
    SPANS_COLUMN,
    EncodeBatch,
    model_records,
)
from .index import IndexResult, QdrantDatasink, index_dataset

__all__ = [
    "COLBERT_COLUMN",
    "COLBERT_ROWS_COLUMN",
    "DENSE_COLUMN",
    "SPANS_COLUMN",
    "EncodeBatch",
    "IndexResult",
    "QdrantDatasink",
    "index_dataset",
    "model_records",
]

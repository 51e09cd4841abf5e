"""Token pooling: fewer ColBERT vectors per document, by hierarchical clustering.

A document's token vectors are clustered with Ward linkage (as PyLate's and ColBERTv2's
``pool_embeddings_hierarchical`` and sentence-transformers 6.2's ``HierarchicalPooling``
do), into ``n // pool_factor`` clusters, and each cluster is replaced by its mean. The
first ``protected_tokens`` vectors (the ``[BOS]``/``[D]`` positions) are kept as they are.
With ``pool_factor=2`` a collection stores half the vectors; what it costs in ranking is
measured in ``docs/benchmarks.md``.

One difference from PyLate: the cluster means are L2-normalized, so every vector our
encoders return has unit length (Qdrant's Cosine distance would normalize them anyway,
and an in-process MaxSim then gives the same scores as Qdrant's).
"""

from __future__ import annotations

import numpy as np

from .validation import check_positive_int

__all__ = ["pool_tokens"]


def pool_tokens(vectors: np.ndarray, pool_factor: int, protected_tokens: int = 1) -> np.ndarray:
    """Merge similar token vectors of one document.

    Args:
        vectors: ``[n_tokens, dim]`` float32, L2-normalized rows.
        pool_factor: keep about ``1 / pool_factor`` of the vectors; ``1`` returns ``vectors``.
        protected_tokens: leading rows kept unpooled.

    Returns:
        ``[protected + max(1, (n - protected) // pool_factor), dim]`` float32, unit rows;
        the protected rows first, then one row per cluster in order of first appearance.

    >>> v = np.array([[1, 0], [1, 0], [0.99, 0.14], [0, 1], [0, 1]], dtype=np.float32)
    >>> pool_tokens(v, 2).astype(float).round(2).tolist()  # row 0 kept; 4 rows -> 2 clusters
    [[1.0, 0.0], [1.0, 0.07], [0.0, 1.0]]
    """
    pool_factor = check_positive_int(pool_factor, "pool_factor")
    protected_tokens = check_positive_int(protected_tokens, "protected_tokens", minimum=0)
    head, rest = vectors[:protected_tokens], vectors[protected_tokens:]
    clusters = max(1, rest.shape[0] // pool_factor)
    if pool_factor == 1 or rest.shape[0] <= clusters:
        return vectors
    from scipy.cluster.hierarchy import fcluster, linkage

    # As PyLate: each row's cosine distances to all rows are its features for Ward linkage.
    distances = 1.0 - rest.astype(np.float64) @ rest.T.astype(np.float64)
    labels = fcluster(linkage(distances, method="ward"), t=clusters, criterion="maxclust")
    order = list(dict.fromkeys(labels.tolist()))  # clusters by their first token
    means = np.stack([rest[labels == label].mean(axis=0) for label in order])
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return np.concatenate([head, means.astype(np.float32)])

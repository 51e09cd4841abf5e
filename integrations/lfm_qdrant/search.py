"""Search requests: the modes, and the one Qdrant query each mode becomes.

Every stage of a search runs inside Qdrant, in one ``query_points`` (or one
``query_batch_points`` for many queries): the writer only encodes the query and builds the
request here.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from qdrant_client import models

from lfm_core import InputError

from .layout import COLBERT, DENSE

__all__ = [
    "MODES",
    "SearchMode",
    "build_requests",
    "query_kwargs",
    "resolve_mode",
    "vector_request",
]

SearchMode = Literal["dense", "colbert", "hybrid"]
"""``hybrid``: dense candidates reranked by ColBERT MaxSim; ``dense`` or ``colbert`` alone
(``colbert`` alone is exact MaxSim over the whole filtered collection: slow when it is large)."""
MODES: tuple[str, ...] = ("dense", "colbert", "hybrid")


def resolve_mode(mode: str | None, dense: Any, colbert: Any) -> SearchMode:
    """The mode to run: the one asked for, checked against the models there are.

    Default: ``hybrid`` with both models, else the one there is.
    """
    if mode is None:
        if dense is not None and colbert is not None:
            return "hybrid"
        return "dense" if dense is not None else "colbert"
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    missing = [
        side
        for side, encoder in (("dense", dense), ("colbert", colbert))
        if mode in (side, "hybrid") and encoder is None
    ]
    if missing:
        raise InputError(f"search mode {mode!r} needs a {missing[0]} model; this writer has none")
    return mode  # type: ignore[return-value]


def build_requests(
    queries: list[str],
    mode: SearchMode,
    limit: int,
    prefetch_limit: int,
    query_filter: models.Filter | None,
    dense: Any,
    colbert: Any,
) -> list[models.QueryRequest]:
    """One ``QueryRequest`` per query (encoding them with the models the mode needs)."""
    dense_rows: list[Any] = [None] * len(queries)
    colbert_rows: list[Any] = [None] * len(queries)
    if mode in ("dense", "hybrid"):
        dense_rows = [row.tolist() for row in dense.encode_queries(queries, show_progress=False)]
    if mode in ("colbert", "hybrid"):
        colbert_rows = [m.tolist() for m in colbert.encode_queries(queries, show_progress=False)]
    requests = []
    for d, c in zip(dense_rows, colbert_rows, strict=True):
        # The server pushes the filter down into the prefetch too.
        prefetch = (
            models.Prefetch(query=d, using=DENSE, limit=prefetch_limit)
            if mode == "hybrid"
            else None
        )
        requests.append(
            models.QueryRequest(
                query=d if mode == "dense" else c,
                using=DENSE if mode == "dense" else COLBERT,
                prefetch=prefetch,
                filter=query_filter,
                limit=limit,
                with_payload=True,
            )
        )
    return requests


def query_kwargs(request: models.QueryRequest) -> dict[str, Any]:
    """A batch request as the keyword arguments of ``query_points`` (less the collection)."""
    return {
        "query": request.query,
        "using": request.using,
        "prefetch": request.prefetch,
        "query_filter": request.filter,
        "limit": request.limit,
        "with_payload": request.with_payload,
    }


# ------------------------------------------------------- queries by a given vector (the stores)


def vector_request(
    vector: Any,
    limit: int,
    query_filter: models.Filter | None,
    *,
    mmr_diversity: float | None = None,
    mmr_candidates: int | None = None,
    colbert_rows: Any = None,
    prefetch_limit: int = 100,
) -> models.QueryRequest:
    """A ``dense`` query by a vector the caller embedded, optionally diversified by MMR or
    reranked by ColBERT.

    MMR (maximal marginal relevance) runs in Qdrant: of ``mmr_candidates`` nearest points,
    ``limit`` are picked one by one, trading similarity to the query against similarity to
    the points already picked. ``mmr_diversity`` 0 is plain relevance, 1 the most diverse.
    With ``colbert_rows`` (the query's ColBERT matrix) the ``prefetch_limit`` nearest points
    are reranked by MaxSim: the hybrid mode with the dense vector given.
    """
    row = np.asarray(vector, dtype=np.float32)
    if row.ndim != 1:
        raise InputError(f"the query vector must be one row of floats; got shape {row.shape}")
    query: Any = row.tolist()
    if colbert_rows is not None:
        if mmr_diversity is not None:
            raise InputError("MMR diversifies the dense results; it has no ColBERT rerank")
        return models.QueryRequest(
            query=np.asarray(colbert_rows, dtype=np.float32).tolist(),
            using=COLBERT,
            prefetch=models.Prefetch(query=query, using=DENSE, limit=prefetch_limit),
            filter=query_filter,
            limit=limit,
            with_payload=True,
        )
    if mmr_diversity is not None:
        if not 0.0 <= mmr_diversity <= 1.0:
            raise InputError(f"MMR diversity must be in [0, 1]; got {mmr_diversity}")
        candidates = max(limit, mmr_candidates or limit)
        query = models.NearestQuery(
            nearest=query,
            mmr=models.Mmr(diversity=float(mmr_diversity), candidates_limit=candidates),
        )
    return models.QueryRequest(
        query=query, using=DENSE, filter=query_filter, limit=limit, with_payload=True
    )

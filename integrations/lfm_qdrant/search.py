"""Search requests: the modes, the legs, and the one Qdrant query each search becomes.

A collection can have three legs: ``dense`` (one vector per text, HNSW), ``lexical`` (the
``bm25`` sparse vector, Qdrant's BM25 with IDF) and ``colbert`` (a multivector, MaxSim).
Every stage of a search runs inside Qdrant, in one ``query_points`` (or one
``query_batch_points`` for many queries); the writer only encodes the query and builds the
request here.

``hybrid`` uses every leg there is::

    RRF(                                    # final fusion, weighted, of three rankings:
        MaxSim over RRF(dense, lexical),    #   ColBERT over the fused candidates  (1)
        dense,                              #   the dense leg                      (w)
        lexical,                            #   the lexical leg                    (1)
    )

The final fusion keeps the lexical evidence. Qdrant's weighted RRF scores a hit at rank
``r`` (1-based) of a leg of weight ``w`` as ``1 / (k - 1 + r / w)``. The best lexical hit is
always among the ``P`` reranked candidates, so it scores at least ``1/k + 1/(k - 1 + P)``;
an entry the lexical leg did not find scores at most ``1/k + 1/(k - 1 + 1/w)``. With
``w = 0.99 / P`` (0.0099 at the default ``P = 100``) the first always wins: an entry that
is the only exact match for a product code stays first whatever the embedding models
think of it, and dense similarity still breaks ties. Without ColBERT the final stage is
``RRF(dense (0.99), lexical (1))``, which gives the same guarantee. Fusion and weights were
chosen by measurement on SciFact, NTREX-128 and a product-code corpus
(``benchmarks/bench_hybrid.py``, docs/evaluations.md). Collections without ``bm25``
(written before the lexical leg) search as they always did: dense prefetch, then MaxSim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pydantic
from qdrant_client import models

from lfm_core import InputError
from lfm_core.explain import Explanation

from .layout import COLBERT, DENSE
from .lexical import LEXICAL, LexicalConfig

__all__ = [
    "FUSIONS",
    "MODES",
    "ExplainedPoint",
    "Fusion",
    "LegRank",
    "Legs",
    "QueryVectors",
    "SearchMode",
    "SearchPlan",
    "explain_points",
    "resolve_mode",
    "vector_request",
]

SearchMode = Literal["dense", "lexical", "colbert", "hybrid"]
"""``dense``, ``lexical`` (BM25), ``colbert`` (exact MaxSim over the whole filtered
collection: slow when it is large) alone, or ``hybrid``: every leg the collection has."""
MODES: tuple[str, ...] = ("dense", "lexical", "colbert", "hybrid")

Fusion = Literal["rrf", "dbsf"]
"""How rankings are fused: reciprocal rank fusion, or distribution-based score fusion."""
FUSIONS: tuple[str, ...] = ("rrf", "dbsf")

RRF_K = 60
"""RRF's ``k``: given explicitly, so Edge and every server version fuse alike."""


def dense_weight(prefetch_limit: int, with_colbert: bool = True) -> float:
    """The dense leg's weight in the final RRF: low enough that a dense rank 1 never
    outweighs what separates the best lexical hit from an entry the lexical leg missed
    (see the module docstring for the bound).

    >>> round(dense_weight(100), 6), dense_weight(100, with_colbert=False)
    (0.0099, 0.99)
    """
    return 0.99 / prefetch_limit if with_colbert else 0.99


@dataclass(frozen=True)
class Legs:
    """What a search can use: the writer's encoders and the collection's BM25 settings."""

    dense: Any = None
    colbert: Any = None
    lexical: LexicalConfig | None = None

    def names(self) -> list[str]:
        """The legs present, in a fixed order."""
        return [
            name
            for name, leg in (
                ("dense", self.dense),
                ("lexical", self.lexical),
                ("colbert", self.colbert),
            )
            if leg is not None
        ]


def resolve_mode(mode: str | None, legs: Legs, collection_known: bool = True) -> SearchMode:
    """The mode to run: the one asked for, checked against the legs there are.

    Default: ``hybrid`` when there are two legs or more, else the one there is.

    Args:
        mode: what the caller asked for, or ``None``.
        legs: the encoders and the collection's BM25 settings.
        collection_known: whether ``legs.lexical`` reflects the collection yet; if not, a
            ``lexical`` request is let through (the collection is checked when it is read).

    Raises:
        InputError: an unknown mode, or one whose vector this writer or collection lacks.
    """
    present = legs.names()
    if mode is None:
        return "hybrid" if len(present) > 1 else present[0]  # type: ignore[return-value]
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "lexical" and legs.lexical is None and collection_known:
        raise InputError(
            f"search mode 'lexical' needs the collection's {LEXICAL!r} sparse vector; this "
            "collection has none (it was written before the lexical leg, or with "
            "lexical=False). Re-index it to add one"
        )
    if mode in ("dense", "colbert") and getattr(legs, mode) is None:
        raise InputError(f"search mode {mode!r} needs a {mode} model; this writer has none")
    return mode  # type: ignore[return-value]


@dataclass(frozen=True)
class QueryVectors:
    """One query, encoded once for every leg a search uses (``None``: leg not used)."""

    dense: list[float] | None = None
    colbert: list[list[float]] | None = None
    lexical: models.SparseVector | None = None


def encode_queries(queries: list[str], mode: SearchMode, legs: Legs) -> list[QueryVectors]:
    """Encode each query for the legs ``mode`` uses, in one pass per model."""
    n = len(queries)
    dense: list[Any] = [None] * n
    colbert: list[Any] = [None] * n
    lexical: list[Any] = [None] * n
    if mode in ("dense", "hybrid") and legs.dense is not None:
        dense = [row.tolist() for row in legs.dense.encode_queries(queries, show_progress=False)]
    if mode in ("colbert", "hybrid") and legs.colbert is not None:
        colbert = [m.tolist() for m in legs.colbert.encode_queries(queries, show_progress=False)]
    if mode in ("lexical", "hybrid") and legs.lexical is not None:
        lexical = [legs.lexical.embed_query(q) for q in queries]
    return [QueryVectors(d, c, s) for d, c, s in zip(dense, colbert, lexical, strict=True)]


@dataclass(frozen=True)
class SearchPlan:
    """How searches run: the mode and its limits and fusion.

    Attributes:
        mode: the resolved mode.
        limit: hits to return.
        prefetch_limit: candidates each first-stage leg hands on (hybrid).
        query_filter: applied at every stage.
        fusion: how ``dense`` and ``lexical`` candidates are fused, and the final stage.
    """

    mode: SearchMode
    limit: int
    prefetch_limit: int
    query_filter: models.Filter | None
    fusion: Fusion = "rrf"

    def request(self, vectors: QueryVectors) -> models.QueryRequest | None:
        """The one Qdrant query for this search; ``None`` when it can have no hit (a
        ``lexical`` query with no token left after stopwords, say)."""
        legs = self._first_stage(vectors)
        names = self._first_stage_names(vectors)
        if self.mode == "colbert":
            return self._query(_nearest(vectors.colbert, COLBERT), self.limit)
        if self.mode in ("dense", "lexical"):
            return self._query(legs[0], self.limit) if legs else None
        if vectors.colbert is None:  # hybrid without ColBERT: the first-stage legs fused
            if len(legs) > 1:
                return self._query(self._fusion(final=names), self.limit, prefetch=legs)
            return self._query(legs[0], self.limit) if legs else None
        if vectors.lexical is None:
            # No lexical evidence (a collection without bm25, or a query of stopwords only):
            # dense candidates reranked by MaxSim, as before the lexical leg.
            return self._query(_nearest(vectors.colbert, COLBERT), self.limit, prefetch=legs)
        candidates = (
            [models.Prefetch(prefetch=legs, query=self._fusion(), limit=self.prefetch_limit)]
            if len(legs) > 1
            else legs
        )
        # Without a dense leg, MaxSim ranks the whole collection (as the colbert mode does):
        # BM25's candidates alone would hide every entry that shares no word with the query.
        rerank = models.Prefetch(
            prefetch=candidates if vectors.dense is not None else None,
            query=vectors.colbert,
            using=COLBERT,
            limit=self.prefetch_limit,
        )
        return self._query(
            self._fusion(final=["colbert", *names]), self.limit, prefetch=[rerank, *legs]
        )

    def leg_requests(self, vectors: QueryVectors) -> dict[str, models.QueryRequest]:
        """One request per leg, each alone over the collection (``explain``: which legs
        found a hit and at what rank). ColBERT ranks the candidates of the first stage."""
        requests: dict[str, models.QueryRequest] = {}
        legs = self._first_stage(vectors)
        for name, prefetch in zip(self._first_stage_names(vectors), legs, strict=True):
            requests[name] = self._query(prefetch, self.prefetch_limit)
        if vectors.colbert is not None:
            if self.mode == "colbert" or vectors.dense is None:
                requests["colbert"] = self._query(
                    _nearest(vectors.colbert, COLBERT), self.prefetch_limit
                )
            else:
                candidates: list[models.Prefetch] = legs
                if len(legs) > 1:
                    candidates = [
                        models.Prefetch(
                            prefetch=legs, query=self._fusion(), limit=self.prefetch_limit
                        )
                    ]
                requests["colbert"] = self._query(
                    _nearest(vectors.colbert, COLBERT), self.prefetch_limit, prefetch=candidates
                )
        return requests

    # ------------------------------------------------------------------ internals

    def _first_stage_names(self, vectors: QueryVectors) -> list[str]:
        names = []
        if vectors.dense is not None and self.mode in ("dense", "hybrid"):
            names.append("dense")
        if vectors.lexical is not None and self.mode in ("lexical", "hybrid"):
            names.append("lexical")
        return names

    def _first_stage(self, vectors: QueryVectors) -> list[models.Prefetch]:
        prefetches = []
        for name in self._first_stage_names(vectors):
            query: Any = vectors.dense if name == "dense" else vectors.lexical
            prefetches.append(
                models.Prefetch(
                    query=query,
                    using=DENSE if name == "dense" else LEXICAL,
                    limit=self.prefetch_limit,
                )
            )
        return prefetches

    def _fusion(self, final: Sequence[str] = ()) -> Any:
        """The fusion of a stage. The final one (``final``: its prefetches' legs, in order)
        weighs the dense leg down, see the module."""
        if self.fusion == "dbsf":
            return models.FusionQuery(fusion=models.Fusion.DBSF)
        if not final:
            return models.RrfQuery(rrf=models.Rrf(k=RRF_K))
        w = dense_weight(self.prefetch_limit, with_colbert="colbert" in final)
        weights = [w if leg == "dense" else 1.0 for leg in final]
        return models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=weights))

    def _query(
        self,
        query: Any,
        limit: int,
        prefetch: Sequence[models.Prefetch] | None = None,
    ) -> models.QueryRequest:
        using = None
        if isinstance(query, models.Prefetch):  # a leg's own query and vector name
            query, using = query.query, query.using
        return models.QueryRequest(
            query=query,
            using=using,
            prefetch=list(prefetch) if prefetch else None,
            filter=self.query_filter,
            limit=limit,
            with_payload=True,
        )


def _nearest(vector: Any, using: str) -> models.Prefetch:
    return models.Prefetch(query=vector, using=using)


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


class LegRank(pydantic.BaseModel):
    """Where one leg ranked a hit: 1-based ``rank`` among that leg's candidates, and its
    own ``score`` (cosine, BM25 or MaxSim)."""

    rank: int
    score: float


class ExplainedPoint(models.ScoredPoint):
    """A hit with, per leg that found it, its rank and score there (``explain=True``).

    ``legs`` maps ``"dense"``, ``"lexical"`` and ``"colbert"`` to a :class:`LegRank`; a leg
    that did not find the hit among its ``prefetch_limit`` candidates is absent.
    ``explanation`` is the hit's MaxSim taken apart token by token
    (:class:`lfm_core.Explanation`: which document token each query token matched, with
    character spans), from the ColBERT vectors the collection stored; ``None`` when the
    writer has no loaded ColBERT model or the hit has no text.
    """

    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    legs: dict[str, LegRank] = pydantic.Field(default_factory=dict)
    explanation: Explanation | None = None


def explain_points(
    hits: Sequence[models.ScoredPoint], per_leg: Mapping[str, Sequence[models.ScoredPoint]]
) -> list[ExplainedPoint]:
    """The hits, each with the rank and score every leg gave it."""
    ranks = {
        leg: {str(p.id): LegRank(rank=i + 1, score=p.score) for i, p in enumerate(points)}
        for leg, points in per_leg.items()
    }
    out = []
    for hit in hits:
        legs = {leg: found[str(hit.id)] for leg, found in ranks.items() if str(hit.id) in found}
        # Unvalidated: the hit is the client's own, already a checked ScoredPoint.
        out.append(ExplainedPoint.model_construct(**dict(hit), legs=legs))
    return out


# ------------------------------------------------------- queries by a given vector (the stores)


def vector_request(
    vector: Any,
    limit: int,
    query_filter: models.Filter | None,
    *,
    mmr_diversity: float | None = None,
    mmr_candidates: int | None = None,
) -> models.QueryRequest:
    """A ``dense`` query by a vector the caller embedded, optionally diversified by MMR.

    MMR (maximal marginal relevance) runs in Qdrant: of ``mmr_candidates`` nearest points,
    ``limit`` are picked one by one, trading similarity to the query against similarity to
    the points already picked. ``mmr_diversity`` 0 is plain relevance, 1 the most diverse.
    (The hybrid search with a given dense vector is :class:`SearchPlan` with that vector.)
    """
    row = np.asarray(vector, dtype=np.float32)
    if row.ndim != 1:
        raise InputError(f"the query vector must be one row of floats; got shape {row.shape}")
    query: Any = row.tolist()
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

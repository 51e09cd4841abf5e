"""Conversions between ``qdrant_client.models`` and Qdrant Edge's own types.

The store (:mod:`lfm_qdrant.edge`) speaks the client's models to the writer and Edge's
types to the engine; every translation lives here: collection config, ids, vectors,
queries, prefetches and filters.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import qdrant_edge as qe
from qdrant_client import models

__all__ = ["edge_filter"]

# The engine plans HNSW for segments above this many KB; below it a segment is scanned.
_HNSW_DEFAULTS = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000}


def _edge_config(record: Mapping[str, Any]) -> qe.EdgeConfig:
    vectors = {}
    for name, raw in record["vectors"].items():
        params = models.VectorParams.model_validate(raw)
        vectors[name] = qe.EdgeVectorParams(
            size=params.size,
            distance=_DISTANCES[params.distance],
            multivector_config=(
                qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
                if params.multivector_config is not None
                else None
            ),
            datatype=_DATATYPES.get(params.datatype) if params.datatype else None,
            hnsw_config=_edge_hnsw(params.hnsw_config),
            quantization_config=_edge_quantization(params.quantization_config),
            on_disk=params.on_disk,
        )
    sparse = {}
    for name, raw in (record.get("sparse_vectors") or {}).items():
        sparse_params = models.SparseVectorParams.model_validate(raw)
        sparse[name] = qe.EdgeSparseVectorParams(
            modifier=qe.Modifier.Idf if sparse_params.modifier == models.Modifier.IDF else None
        )
    return qe.EdgeConfig(
        vectors=vectors,
        sparse_vectors=sparse or None,
        on_disk_payload=record.get("on_disk_payload"),
    )


_DISTANCES = {
    models.Distance.COSINE: qe.Distance.Cosine,
    models.Distance.DOT: qe.Distance.Dot,
    models.Distance.EUCLID: qe.Distance.Euclid,
    models.Distance.MANHATTAN: qe.Distance.Manhattan,
}
_DATATYPES = {
    models.Datatype.FLOAT32: qe.VectorStorageDatatype.Float32,
    models.Datatype.FLOAT16: qe.VectorStorageDatatype.Float16,
    models.Datatype.UINT8: qe.VectorStorageDatatype.Uint8,
    models.Datatype.TURBO8: qe.VectorStorageDatatype.Turbo8,
    models.Datatype.TURBO16: qe.VectorStorageDatatype.Turbo16,
}


def _edge_hnsw(config: models.HnswConfigDiff | None) -> qe.HnswIndexConfig | None:
    if config is None:
        return None

    def value(key: str) -> int:
        own = getattr(config, key)
        return _HNSW_DEFAULTS[key] if own is None else int(own)

    return qe.HnswIndexConfig(
        m=value("m"),
        ef_construct=value("ef_construct"),
        full_scan_threshold=value("full_scan_threshold"),
    )


def _edge_quantization(config: Any) -> Any:
    if config is None:
        return None
    if isinstance(config, models.ScalarQuantization):
        return qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8, quantile=config.scalar.quantile, always_ram=config.scalar.always_ram
        )
    if isinstance(config, models.BinaryQuantization):
        return qe.BinaryQuantizationConfig(always_ram=config.binary.always_ram)
    raise TypeError(
        f"an Edge store supports scalar and binary quantization, not {type(config).__name__}"
    )


def _edge_id(point_id: Any) -> int | uuid.UUID:
    if isinstance(point_id, bool):
        raise TypeError("a point id must be a str or an int, not bool")
    if isinstance(point_id, int):
        return point_id
    if isinstance(point_id, uuid.UUID):
        return point_id
    return uuid.UUID(str(point_id))


def _client_id(point_id: Any) -> int | str:
    return point_id if isinstance(point_id, int) else str(point_id)


def _edge_vector(vector: Any) -> Any:
    if isinstance(vector, Mapping):
        return {
            name: (
                qe.SparseVector(list(value.indices), list(value.values))
                if isinstance(value, models.SparseVector)
                else value
            )
            for name, value in vector.items()
        }
    raise TypeError("an Edge store holds named vectors: pass vector={name: values}")


def _client_vector(vector: Any) -> Any:
    """Edge's vectors as the client returns them (sparse ones as ``models.SparseVector``)."""
    if not isinstance(vector, Mapping):
        return vector
    return {
        name: (
            models.SparseVector(indices=list(value.indices), values=list(value.values))
            if isinstance(value, qe.SparseVector)
            else value
        )
        for name, value in vector.items()
    }


def _edge_query(request: models.QueryRequest) -> qe.QueryRequest:
    return qe.QueryRequest(
        limit=request.limit or 10,
        query=_scoring(request.query, request.using),
        prefetches=[_edge_prefetch(p) for p in _as_list(request.prefetch)] or None,
        filter=_maybe_filter(request.filter),
        with_payload=bool(request.with_payload) if request.with_payload is not None else True,
        with_vector=bool(request.with_vector) if request.with_vector is not None else False,
        score_threshold=request.score_threshold,
    )


def _edge_prefetch(prefetch: models.Prefetch) -> qe.Prefetch:
    return qe.Prefetch(
        limit=prefetch.limit or 10,
        query=_scoring(prefetch.query, prefetch.using),
        prefetches=[_edge_prefetch(p) for p in _as_list(prefetch.prefetch)] or None,
        filter=_maybe_filter(prefetch.filter),
        score_threshold=prefetch.score_threshold,
    )


def _scoring(query: Any, using: str | None) -> Any:
    """A client query as Edge's: nearest (dense, sparse, multivector) or a fusion."""
    if query is None:
        return None
    if isinstance(query, models.NearestQuery):
        if query.mmr is not None and isinstance(query.nearest, list):
            # Edge takes MMR's lambda (1 = relevance only); the server API its complement.
            diversity = 0.5 if query.mmr.diversity is None else query.mmr.diversity
            return qe.Mmr(
                query.nearest,
                lambda_=1.0 - diversity,
                candidates_limit=query.mmr.candidates_limit or 100,
                using=using,
            )
        query = query.nearest
    if isinstance(query, list):
        return qe.Query.Nearest(query, using=using)
    if isinstance(query, models.SparseVector):
        return qe.Query.Nearest(
            qe.SparseVector(list(query.indices), list(query.values)), using=using
        )
    if isinstance(query, models.RrfQuery):
        return qe.Fusion.Rrf(k=query.rrf.k or 2, weights=query.rrf.weights)
    if isinstance(query, models.FusionQuery):
        if query.fusion == models.Fusion.DBSF:
            return qe.Fusion.Dbsf()
        return qe.Fusion.Rrf(k=2)  # the server's default k
    raise TypeError(
        f"an Edge store answers nearest-vector queries (dense, sparse, multivector) and "
        f"fusions, not {type(query).__name__}"
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _maybe_filter(flt: models.Filter | None) -> qe.Filter | None:
    return None if flt is None else edge_filter(flt)


def edge_filter(flt: models.Filter) -> qe.Filter:
    """A ``qdrant_client`` filter as an Edge filter (the conditions our users write).

    Raises:
        TypeError: a condition Edge has no counterpart for here (geo polygons, ...).
    """
    return qe.Filter(
        must=_conditions(flt.must),
        should=_conditions(flt.should),
        must_not=_conditions(flt.must_not),
        min_should=(
            qe.MinShould(_conditions(flt.min_should.conditions) or [], flt.min_should.min_count)
            if flt.min_should is not None
            else None
        ),
    )


def _conditions(conditions: Any) -> list[Any] | None:
    if conditions is None:
        return None
    items = conditions if isinstance(conditions, list) else [conditions]
    return [_condition(c) for c in items]


def _condition(c: Any) -> Any:
    if isinstance(c, models.Filter):
        return edge_filter(c)
    if isinstance(c, models.FieldCondition):
        return qe.FieldCondition(
            key=c.key,
            match=_match(c.match),
            range=_range(c.range),
            values_count=(
                qe.ValuesCount(
                    lt=c.values_count.lt,
                    gt=c.values_count.gt,
                    lte=c.values_count.lte,
                    gte=c.values_count.gte,
                )
                if c.values_count is not None
                else None
            ),
            is_empty=c.is_empty,
            is_null=c.is_null,
            **_geo(c),
        )
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, models.IsNullCondition):
        return qe.IsNullCondition(c.is_null.key)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition({_edge_id(i) for i in c.has_id})
    if isinstance(c, models.HasVectorCondition):
        return qe.HasVectorCondition(c.has_vector)
    if isinstance(c, models.NestedCondition):
        return qe.NestedCondition(c.nested.key, edge_filter(c.nested.filter))
    raise TypeError(f"filter condition {type(c).__name__} is not supported by an Edge store")


def _match(match: Any) -> Any:
    if match is None:
        return None
    if isinstance(match, models.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(list(match.any))  # type: ignore[arg-type]
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(list(match.except_))  # type: ignore[arg-type]
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, models.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    if isinstance(match, models.MatchTextAny):
        return qe.MatchTextAny(match.text_any)
    raise TypeError(f"match {type(match).__name__} is not supported by an Edge store")


def _range(r: Any) -> Any:
    if r is None:
        return None
    if isinstance(r, models.DatetimeRange):
        iso = {
            k: None if v is None else _iso(v)
            for k, v in (("gte", r.gte), ("gt", r.gt), ("lte", r.lte), ("lt", r.lt))
        }
        return qe.RangeDateTime(**iso)
    return qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _geo(c: models.FieldCondition) -> dict[str, Any]:
    geo: dict[str, Any] = {}
    if c.geo_radius is not None:
        center = qe.GeoPoint(lon=c.geo_radius.center.lon, lat=c.geo_radius.center.lat)
        geo["geo_radius"] = qe.GeoRadius(center, c.geo_radius.radius)
    if c.geo_bounding_box is not None:
        box = c.geo_bounding_box
        geo["geo_bounding_box"] = qe.GeoBoundingBox(
            qe.GeoPoint(lon=box.top_left.lon, lat=box.top_left.lat),
            qe.GeoPoint(lon=box.bottom_right.lon, lat=box.bottom_right.lat),
        )
    if c.geo_polygon is not None:
        raise TypeError("geo_polygon filters are not supported by an Edge store")
    return geo

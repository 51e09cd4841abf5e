"""The collection layout written by :class:`lfm_qdrant.MultiVectorWriter`, and its check.

One point per document, with up to two named vectors:

- ``dense``: one vector of the dense model's width, cosine distance, HNSW-indexed. It
  finds the candidates (the prefetch stage).
- ``colbert``: a multivector (one row per document token, the ColBERT model's width,
  128 for LFM2.5-ColBERT-350M) compared with ``MAX_SIM``. It only reranks the candidates,
  so its HNSW graph is switched off (``m=0``): building a graph over every token vector
  costs a lot of time and memory and would never be used.

- ``bm25`` (a sparse vector, in new collections unless ``lexical=False``): Qdrant's BM25
  term weights of the text, with the ``IDF`` modifier (:mod:`lfm_qdrant.lexical`).

The payload is ``{"text": text, **metadata}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from qdrant_client import models

from lfm_core import CollectionError, InputError

from .lexical import LEXICAL

__all__ = [
    "COLBERT",
    "DENSE",
    "LEXICAL",
    "ColbertDatatype",
    "Layout",
    "Quantization",
    "check_layout",
    "has_lexical",
    "validate_collection_name",
]

logger = logging.getLogger(__name__)

DENSE = "dense"
"""Name of the dense vector in the collection."""
COLBERT = "colbert"
"""Name of the ColBERT multivector in the collection."""

Quantization = Literal["scalar", "binary"]
ColbertDatatype = Literal["float32", "float16", "turbo8"]

# Qdrant's own rule for collection names (1 to 255 bytes, none of these), plus the two
# names that are folders of their own on disk.
_FORBIDDEN_NAME_CHARS = '<>:"/\\|?*\0\x1f'
_MAX_NAME_BYTES = 255


def validate_collection_name(name: object) -> str:
    """Return ``name`` if Qdrant accepts it as a collection name, else raise ``InputError``.

    >>> validate_collection_name("faq-es_v2")
    'faq-es_v2'
    >>> validate_collection_name("../x")
    Traceback (most recent call last):
    ...
    lfm_core.errors.InputError: collection name '../x' contains '/'; Qdrant refuses any of ...
    """
    if not isinstance(name, str):
        raise TypeError(f"a collection name must be a str, not {type(name).__name__}")
    if not name:
        raise InputError("collection name is empty; Qdrant needs 1 to 255 bytes")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InputError(
            f"collection name {name!r} holds an unpaired UTF-16 surrogate at index "
            f"{error.start}, which cannot be encoded as UTF-8"
        ) from None
    # A name is a folder on disk: the limit is the file system's, 255 bytes of UTF-8.
    if size > _MAX_NAME_BYTES:
        raise InputError(
            f"collection name {name[:40]!r}... is {size} bytes of UTF-8 ({len(name)} "
            f"characters); Qdrant allows at most {_MAX_NAME_BYTES} bytes"
        )
    bad = next((c for c in name if c in _FORBIDDEN_NAME_CHARS), None)
    if bad is not None:
        raise InputError(
            f"collection name {name!r} contains {bad!r}; Qdrant refuses any of "
            '< > : " / \\ | ? * and control characters NUL and 0x1F'
        )
    if name in (".", ".."):
        raise InputError(f"collection name {name!r} is not allowed")
    return name


@dataclass(frozen=True)
class Layout:
    """What a collection must hold for a writer with these encoders.

    Attributes:
        dense_dim: width of the ``dense`` vector, or ``None`` when there is no dense model.
        colbert_dim: width of each ``colbert`` row, or ``None`` when there is no ColBERT model.
        quantization: ``"scalar"`` (int8, 4x smaller), ``"binary"`` (1 bit, 32x smaller)
            or ``None``. Applied to both vectors when the collection is created.
        on_disk: keep original vectors and payload on disk (memory-mapped) when the
            collection is created; the quantized copies, if any, stay in RAM.
        colbert_datatype: how each ColBERT number is stored: ``"float32"`` (4 bytes, the
            default), ``"float16"`` (2 bytes) or ``"turbo8"`` (1 byte; Qdrant's
            TurboQuant encoding, about 2e-3 error per number on unit rows). Qdrant's
            ``uint8`` is not offered: it stores integers 0..255 as given, so unit-length
            rows would become zeros.
        shard_number, replication_factor, write_consistency_factor: a cluster's settings for
            a new collection (``None``: the server's defaults). An embedded store ignores them.
        lexical: whether a new collection gets the ``bm25`` sparse vector.
    """

    dense_dim: int | None
    colbert_dim: int | None
    lexical: bool = False
    quantization: Quantization | None = None
    on_disk: bool = False
    colbert_datatype: ColbertDatatype = "float32"
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None

    def vector_names(self) -> list[str]:
        """The named vectors of this layout, in a fixed order."""
        names = []
        if self.dense_dim is not None:
            names.append(DENSE)
        if self.colbert_dim is not None:
            names.append(COLBERT)
        return names

    def vectors_config(self) -> dict[str, models.VectorParams]:
        """The ``vectors_config`` argument of ``create_collection``."""
        quantization = _quantization_config(self.quantization)
        # `on_disk` rather than the newer `memory=` field: servers before 1.17 only know it.
        on_disk = True if self.on_disk else None
        config: dict[str, models.VectorParams] = {}
        if self.dense_dim is not None:
            config[DENSE] = models.VectorParams(
                size=self.dense_dim,
                distance=models.Distance.COSINE,
                on_disk=on_disk,
                quantization_config=quantization,
            )
        if self.colbert_dim is not None:
            config[COLBERT] = models.VectorParams(
                size=self.colbert_dim,
                distance=models.Distance.COSINE,
                multivector_config=models.MultiVectorConfig(
                    comparator=models.MultiVectorComparator.MAX_SIM
                ),
                hnsw_config=models.HnswConfigDiff(m=0),
                on_disk=on_disk,
                quantization_config=quantization,
                datatype=(
                    None
                    if self.colbert_datatype == "float32"
                    else models.Datatype(self.colbert_datatype)
                ),
            )
        return config

    def sparse_vectors_config(self) -> dict[str, models.SparseVectorParams] | None:
        """The ``sparse_vectors_config`` argument of ``create_collection``."""
        if not self.lexical:
            return None
        return {LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)}

    def create_kwargs(
        self, collection_name: str, metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Keyword arguments of ``client.create_collection`` for this layout."""
        kwargs: dict[str, Any] = {
            "collection_name": collection_name,
            "vectors_config": self.vectors_config(),
            "on_disk_payload": True if self.on_disk else None,
        }
        if self.lexical:
            kwargs["sparse_vectors_config"] = self.sparse_vectors_config()
        if metadata is not None:
            kwargs["metadata"] = dict(metadata)
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        return kwargs


def _quantization_config(kind: Quantization | None) -> models.QuantizationConfig | None:
    # The quantized copies stay in RAM: they are what the search reads first; the
    # originals (RAM or disk) rescore the best candidates.
    if kind is None:
        return None
    if kind == "scalar":
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, quantile=0.99, always_ram=True
            )
        )
    if kind == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    raise ValueError(f"quantization must be 'scalar', 'binary' or None, not {kind!r}")


def has_lexical(info: models.CollectionInfo) -> bool:
    """Whether a collection has the ``bm25`` sparse vector (collections written before the
    lexical leg have none, and keep working without it)."""
    return LEXICAL in (info.config.params.sparse_vectors or {})


def check_layout(
    info: models.CollectionInfo, layout: Layout, collection_name: str, *, exact: bool = True
) -> None:
    """Raise :class:`~lfm_core.CollectionError` if an existing collection does not fit ``layout``.

    What decides the search results is checked: the vector names, their widths, the
    distance (Cosine, or Dot, equal on normalized vectors) and the multivector
    comparator. Storage settings (quantization, on-disk, HNSW of the dense vector) belong
    to whoever created the collection and are kept; an HNSW graph on ``colbert`` only
    logs a warning, since it costs but does not change results.

    Args:
        info: ``client.get_collection(collection_name)``.
        layout: what the writer's encoders produce.
        collection_name: for the messages.
        exact: the collection must have exactly the layout's vectors (for writing); else
            it may have more (searching one vector of a hybrid collection).

    Raises:
        CollectionError: naming the collection, what it has and what was expected.
    """
    vectors = info.config.params.vectors
    expected = layout.vector_names()
    if not isinstance(vectors, Mapping):
        raise CollectionError(
            f"collection {collection_name!r} has a single unnamed vector; this writer needs "
            f"named vectors {expected}. Use another collection name, or delete this one."
        )
    found = sorted(vectors)
    if (sorted(expected) != found) if exact else not set(expected) <= set(found):
        raise CollectionError(
            f"collection {collection_name!r} has vectors {found}, but this writer "
            f"(dense={layout.dense_dim is not None}, colbert={layout.colbert_dim is not None}) "
            f"writes {expected}. Pass the same models that built it, or use another collection."
        )
    sparse = info.config.params.sparse_vectors or {}
    if LEXICAL in sparse and sparse[LEXICAL].modifier != models.Modifier.IDF:
        raise CollectionError(
            f"collection {collection_name!r}, sparse vector {LEXICAL!r}: modifier "
            f"{sparse[LEXICAL].modifier}, expected idf (BM25 needs the IDF modifier). Use "
            "another collection."
        )
    if layout.dense_dim is not None:
        _check_vector(vectors[DENSE], DENSE, layout.dense_dim, multi=False, where=collection_name)
    if layout.colbert_dim is not None:
        params = vectors[COLBERT]
        _check_vector(params, COLBERT, layout.colbert_dim, multi=True, where=collection_name)
        own_m = params.hnsw_config.m if params.hnsw_config is not None else None
        if own_m != 0:
            logger.warning(
                "collection %r indexes its 'colbert' multivector with HNSW (m=%s); it is only "
                "used to rerank, so m=0 would save indexing time and memory",
                collection_name,
                "the collection default" if own_m is None else own_m,
            )


def _check_vector(
    params: models.VectorParams, name: str, dim: int, *, multi: bool, where: str
) -> None:
    problems = []
    if params.size != dim:
        problems.append(f"size {params.size}, expected {dim} (the model's width)")
    # Dot equals Cosine on the L2-normalized vectors the encoders return.
    if params.distance not in (models.Distance.COSINE, models.Distance.DOT):
        problems.append(f"distance {params.distance.value}, expected Cosine (or Dot)")
    comparator = params.multivector_config.comparator if params.multivector_config else None
    if multi and comparator != models.MultiVectorComparator.MAX_SIM:
        problems.append(
            f"multivector comparator {comparator.value if comparator else None}, expected max_sim"
        )
    if not multi and comparator is not None:
        problems.append("a multivector, expected one vector per point")
    if problems:
        raise CollectionError(
            f"collection {where!r}, vector {name!r}: " + "; ".join(problems) + ". "
            "Pass the models that built it, or use another collection."
        )

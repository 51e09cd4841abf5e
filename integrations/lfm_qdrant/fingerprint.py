"""The record of the models that wrote a collection, kept in the collection's metadata.

Every collection created by :class:`~lfm_qdrant.MultiVectorWriter` carries, under the
metadata key ``"lfm_retrieval"``::

    {"format": 1, "id_scheme": 2, "chunking": {"max_tokens": 501, "overlap_tokens": 32},
     "dense":   {"model": "LiquidAI/LFM2.5-Embedding-350M", "revision": null, "dim": 1024,
                 "digest": "sha256:..."},
     "colbert": {...} or null,
     "lexical": {"k": 1.2, "b": 0.75, "avg_len": 256.0, "tokenizer": "multilingual",
                 "language": "english", ...} or null}

``digest`` is :func:`lfm_core.loading.checkpoint_digest` of the checkpoint: the same files
give the same digest whatever the dtype, device or folder they are loaded from. A writer
whose models differ from the record is refused, so one collection never mixes two vector
spaces; the CLI reads the models from the record when none are given. ``lexical`` holds the
BM25 settings of the collection's ``bm25`` sparse vector (:class:`~lfm_qdrant.LexicalConfig`):
every query is tokenized with them, so queries always match the way documents were indexed.

Where it lives: the collection metadata of a Qdrant server (1.16 or newer) and of
qdrant-client's local mode, and ``collection.json`` beside the shard in an
:class:`~lfm_qdrant.EdgeStore`: all three answer ``get_collection(...).config.metadata``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfm_core import CollectionError

from .lexical import LexicalConfig
from .points import ID_SCHEME

__all__ = ["METADATA_KEY", "CollectionRecord", "ModelRecord"]

METADATA_KEY = "lfm_retrieval"
"""The collection-metadata key that holds the record."""
RECORD_FORMAT = 1


@dataclass(frozen=True)
class ModelRecord:
    """One model of a collection.

    Attributes:
        model: the hub id, or the absolute folder it was loaded from.
        dim: the width of its vectors.
        revision: the hub revision it was pinned to, if any.
        digest: the checkpoint's digest, or ``None`` for an encoder that has none.
    """

    model: str
    dim: int
    revision: str | None = None
    digest: str | None = None

    @classmethod
    def of(cls, encoder: Any) -> ModelRecord:
        """The record of a loaded encoder."""
        name = str(getattr(encoder, "model_name", type(encoder).__name__))
        local = Path(name).expanduser()
        if local.is_dir():
            name = str(local.resolve())
        return cls(
            model=name,
            dim=int(encoder.dim),
            revision=getattr(encoder, "revision", None),
            digest=getattr(encoder, "checkpoint_digest", None),
        )

    def same_model(self, other: ModelRecord) -> bool:
        """Same vectors: equal digests when both have one, else the same name; same width."""
        if self.dim != other.dim:
            return False
        if self.digest is not None and other.digest is not None:
            return self.digest == other.digest
        return self.model == other.model

    def describe(self) -> str:
        """``model@revision (dim-d, sha256:…)``: how errors name the model."""
        revision = f"@{self.revision}" if self.revision else ""
        digest = f", {self.digest[:19]}" if self.digest else ""
        return f"{self.model}{revision} ({self.dim}-d{digest})"

    def to_json(self) -> dict[str, Any]:
        """The record as stored in the collection metadata."""
        return {
            "model": self.model,
            "dim": self.dim,
            "revision": self.revision,
            "digest": self.digest,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ModelRecord:
        """Read a stored record; ``where`` names it in the error.

        Raises:
            CollectionError: ``data`` is not a model record.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("model"), str):
            raise CollectionError(f"{where} is not a model record (no 'model' string)")
        dim = data.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise CollectionError(f"{where} has no integer 'dim'")
        return cls(data["model"], dim, data.get("revision"), data.get("digest"))


@dataclass(frozen=True)
class CollectionRecord:
    """The models of a collection, its BM25 settings and the id scheme of its points."""

    dense: ModelRecord | None
    colbert: ModelRecord | None
    id_scheme: int = ID_SCHEME
    lexical: LexicalConfig | None = None
    chunking: Mapping[str, int] | None = None

    @classmethod
    def of(
        cls,
        dense: Any,
        colbert: Any,
        lexical: LexicalConfig | None = None,
        chunking: Mapping[str, int] | None = None,
    ) -> CollectionRecord:
        """The record of a writer's encoders (or ``ModelRecord``s; ``None``: no such vector)."""
        return cls(
            dense=None if dense is None else ModelRecord.of(dense),
            colbert=None if colbert is None else ModelRecord.of(colbert),
            lexical=lexical,
            chunking=chunking,
        )

    def to_metadata(self) -> dict[str, Any]:
        """``{"lfm_retrieval": {...}}``, the ``metadata=`` of ``create_collection``."""
        return {
            METADATA_KEY: {
                "format": RECORD_FORMAT,
                "id_scheme": self.id_scheme,
                "dense": None if self.dense is None else self.dense.to_json(),
                "colbert": None if self.colbert is None else self.colbert.to_json(),
                "lexical": None if self.lexical is None else self.lexical.to_json(),
                # The chunk size and overlap of the writer that created the collection (a
                # note for people: documents carry their own in their fingerprints).
                "chunking": None if self.chunking is None else dict(self.chunking),
            }
        }

    @classmethod
    def from_metadata(cls, metadata: Any, collection_name: str) -> CollectionRecord | None:
        """The record in a collection's metadata, ``None`` if it has none.

        Raises:
            CollectionError: a record is there but malformed.
        """
        if not isinstance(metadata, Mapping) or METADATA_KEY not in metadata:
            return None
        raw = metadata[METADATA_KEY]
        where = f"the model record of collection {collection_name!r}"
        if not isinstance(raw, Mapping) or raw.get("format") != RECORD_FORMAT:
            raise CollectionError(
                f"{where} has an unknown format; it was written by another version"
            )
        scheme = raw.get("id_scheme")
        if isinstance(scheme, bool) or not isinstance(scheme, int):
            raise CollectionError(f"{where} has no integer 'id_scheme'")
        return cls(
            dense=None if raw.get("dense") is None else ModelRecord.from_json(raw["dense"], where),
            colbert=(
                None if raw.get("colbert") is None else ModelRecord.from_json(raw["colbert"], where)
            ),
            id_scheme=scheme,
            lexical=(
                None
                if raw.get("lexical") is None
                else LexicalConfig.from_json(raw["lexical"], where)
            ),
            chunking=raw.get("chunking") if isinstance(raw.get("chunking"), Mapping) else None,
        )

    def check(self, stored: CollectionRecord | None, collection_name: str) -> None:
        """Refuse to use a collection written by other models or with other point ids.

        Only the models this writer has are compared: a dense-only writer may search the
        dense vector of a hybrid collection.

        Raises:
            CollectionError: one line naming the collection, its models and ours.
        """
        if stored is None:
            raise CollectionError(
                f"collection {collection_name!r} has no lfm-retrieval model record: it was "
                "written by lfm-retrieval 0.1 (whose point ids have changed) or by another "
                "tool. Re-index it into a new collection (or delete it first) with this version"
            )
        if stored.id_scheme != self.id_scheme:
            raise CollectionError(
                f"collection {collection_name!r} uses point-id scheme {stored.id_scheme}; this "
                f"version writes scheme {self.id_scheme}. Re-index it into a new collection"
            )
        for side, ours, theirs in (
            ("dense", self.dense, stored.dense),
            ("colbert", self.colbert, stored.colbert),
        ):
            if ours is None or theirs is None:
                continue  # a missing vector is the layout check's to report
            if not ours.same_model(theirs):
                raise CollectionError(
                    f"collection {collection_name!r} was written with {side} model "
                    f"{theirs.describe()}, not {ours.describe()}; pass the same model, or "
                    "index into another collection"
                )

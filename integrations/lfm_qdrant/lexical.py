"""The lexical leg: Qdrant's own BM25, as a sparse vector ``bm25`` with the IDF modifier.

Documents and queries are turned into sparse vectors by Qdrant's BM25 (``qdrant_edge.Bm25``,
the engine's own tokenizer, stopwords and stemmer); the collection's ``Modifier.IDF`` adds the
inverse document frequency at search time. The same vectors go to an Edge shard and to a
server collection, so a collection moved from one to the other ranks the same.

The settings are recorded in the collection's metadata (``lexical`` in the model record) and
every search tokenizes its query with the recorded settings, never with the caller's.

Why these defaults (measured on BEIR SciFact test, 300 queries, BM25 alone, Qdrant Edge):

| tokenizer | stopwords / stemmer | nDCG@10 | Recall@100 |
| --- | --- | --- | --- |
| word | English / English | 0.683 | 0.921 |
| multilingual | English / English | **0.680** | 0.919 |
| multilingual | none / none | 0.659 | 0.883 |
| multilingual | 10 languages' stopwords / none | 0.662 | 0.879 |

The ``multilingual`` tokenizer is the only one that segments Japanese and Korean into words
(the ``word`` tokenizer keeps a Japanese sentence as one token), at a cost of 0.003 on
English. English stopwords and stemming add 0.02 on English and only strip English endings
elsewhere, applied alike to documents and queries. A per-document language cannot be used:
the query's language is unknown at search time, and a query stemmed by another language's
rules would miss. A collection of one other language does better with ``language=`` set to it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import qdrant_edge as qe
from qdrant_client import models

from lfm_core import CollectionError, InputError

__all__ = ["LEXICAL", "LexicalConfig"]

LEXICAL = "bm25"
"""Name of the BM25 sparse vector in the collection."""

_TOKENIZERS = {
    "multilingual": qe.TokenizerType.Multilingual,
    "word": qe.TokenizerType.Word,
    "whitespace": qe.TokenizerType.Whitespace,
}
# Edge's enums are not Python enums: their members are read by name.
_LANGUAGES = {
    name.lower(): getattr(qe.SnowballLanguage, name)
    for name in dir(qe.SnowballLanguage)
    if name[:1].isupper()
}
_STOPWORD_LANGUAGES = {
    name.lower(): getattr(qe.Language, name) for name in dir(qe.Language) if name[:1].isupper()
}


@dataclass(frozen=True)
class LexicalConfig:
    """The BM25 settings of a collection (the field names of Qdrant's ``Bm25Config``).

    Attributes:
        k: term-frequency saturation.
        b: length normalization, 0 (none) to 1 (full).
        avg_len: the average document length, in tokens, BM25 normalizes against.
        tokenizer: ``"multilingual"`` (segments Japanese and Korean too), ``"word"`` or
            ``"whitespace"``.
        language: stopwords and Snowball stemmer of this language (``"english"``,
            ``"german"``, ...), or ``None`` for neither.
        lowercase: lowercase before tokenizing.
        ascii_folding: fold accents (``é`` -> ``e``).
    """

    k: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0
    tokenizer: str = "multilingual"
    language: str | None = "english"
    lowercase: bool = True
    ascii_folding: bool = False

    def __post_init__(self) -> None:
        if self.tokenizer not in _TOKENIZERS:
            raise InputError(
                f"lexical tokenizer must be one of {', '.join(_TOKENIZERS)}, not {self.tokenizer!r}"
            )
        if self.language is not None and self.language not in _LANGUAGES:
            raise InputError(
                f"lexical language {self.language!r} has no stemmer; choose one of "
                f"{', '.join(sorted(_LANGUAGES))}, or None"
            )
        if not (self.k >= 0 and 0 <= self.b <= 1 and self.avg_len > 0):
            raise InputError("BM25 needs k >= 0, 0 <= b <= 1 and avg_len > 0")

    def to_json(self) -> dict[str, Any]:
        """The settings as stored in the collection's model record."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> LexicalConfig:
        """Read the settings back from a model record.

        Raises:
            CollectionError: not a mapping of known settings.
        """
        if not isinstance(data, Mapping):
            raise CollectionError(f"{where}: 'lexical' is not a mapping of BM25 settings")
        try:
            return cls(**dict(data))
        except (TypeError, InputError) as error:
            raise CollectionError(f"{where}: 'lexical' settings are not valid: {error}") from None

    def embed_documents(self, texts: list[str]) -> list[models.SparseVector | None]:
        """BM25 term weights of each document; ``None`` where it has no token left."""
        model = _model(self)
        return [_sparse(model.embed_document(text)) for text in texts]

    def embed_query(self, query: str) -> models.SparseVector | None:
        """The query's tokens (weight 1 each); ``None`` when it has none (only stopwords...)."""
        return _sparse(_model(self).embed_query(query))


@functools.lru_cache(maxsize=16)
def _model(config: LexicalConfig) -> qe.Bm25:
    language = None if config.language is None else _LANGUAGES[config.language]
    stopwords: Any
    if config.language in _STOPWORD_LANGUAGES:
        stopwords = _STOPWORD_LANGUAGES[config.language]
    else:
        stopwords = qe.StopwordsSet(custom=set())
    return qe.Bm25(
        qe.Bm25Config(
            k=config.k,
            b=config.b,
            avg_len=config.avg_len,
            tokenizer=_TOKENIZERS[config.tokenizer],
            lowercase=config.lowercase,
            ascii_folding=config.ascii_folding,
            stopwords=stopwords,
            stemmer=qe.DisabledStemmer() if language is None else qe.SnowballParams(language),
        )
    )


def _sparse(vector: qe.SparseVector) -> models.SparseVector | None:
    if not vector.indices:
        return None
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))

"""Why a document scored what it did under MaxSim: one best document token per query token.

Late interaction answers "why" exactly: every query vector picks its most similar document
vector, and the score is the sum of those similarities. :func:`explain_vectors` names each
pick; :func:`document_tokens` maps a document's ColBERT vectors back to the characters of
its text, through the tokenizer's offsets, the ``[D]`` prefix and the skiplist that
:meth:`LateInteractionEncoder.encode_documents` applies.

Usage::

    col = LateInteractionEncoder.from_pretrained("LiquidAI/LFM2.5-ColBERT-350M")
    why = col.explain("when do orders ship", "Orders ship within two days.")
    [(m.query_token, m.document_token, round(m.similarity, 2)) for m in why.matches]
    # [..., ('orders', 'Orders', 0.91), ('ship', 'ship', 0.88), ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .encoders import LateInteractionEncoder

__all__ = [
    "DocumentTokens",
    "Explanation",
    "TokenMatch",
    "document_tokens",
    "explain_documents",
    "explain_vectors",
    "query_labels",
    "query_tokens",
]


@dataclass(frozen=True)
class TokenMatch:
    """The document token one query token matched best.

    Attributes:
        query_token: the query token's text (its characters in the query), or its
            vocabulary string for special and expansion tokens (``"[Q] "``, ``"[MASK]"``).
        document_span: ``(start, end)`` characters of the matched token in the document
            text, outer whitespace trimmed; ``None`` for a special token (``[D]``, BOS,
            EOS) or where the vectors are not one per token (:attr:`Explanation.pooled`).
        similarity: the dot product of the two vectors (the token's share of the score).
        document_token: ``text[start:end]``, the special token's string, or ``None``.
        query_index: the query vector's row.
        document_index: the document vector's row.
        query_span: ``(start, end)`` of the query token in the query text; ``None`` for
            special, prefix and expansion tokens.
    """

    query_token: str
    document_span: tuple[int, int] | None
    similarity: float
    document_token: str | None = None
    query_index: int = 0
    document_index: int = 0
    query_span: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the span as a list or ``None``)."""
        return {
            "query_token": self.query_token,
            "query_span": None if self.query_span is None else list(self.query_span),
            "document_token": self.document_token,
            "document_span": None if self.document_span is None else list(self.document_span),
            "similarity": self.similarity,
        }


@dataclass(frozen=True)
class Explanation:
    """A document's MaxSim score taken apart, one :class:`TokenMatch` per query vector.

    ``sum(m.similarity for m in matches) == score`` (up to float rounding).

    Attributes:
        score: the MaxSim score.
        matches: one match per query vector, in query order (expansion tokens included:
            they count in the score).
        pooled: the document's vectors do not map one to one to its tokens (pooled with
            ``pool_factor > 1``, or stored vectors that do not line up with the stored
            text); no spans are given.
        truncated: the document was longer than the model's limit; characters from
            :attr:`seen_chars` on were not encoded and cannot match.
        seen_chars: the end of the last encoded token in the text (``len(text)`` when
            nothing was cut; ``None`` where :attr:`pooled`).
        note: why spans are missing or partial, in words; ``""`` when they are exact.
    """

    score: float
    matches: list[TokenMatch]
    pooled: bool = False
    truncated: bool = False
    seen_chars: int | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, as ``/v1/search`` and ``/v1/rerank`` answer them."""
        return {
            "score": self.score if np.isfinite(self.score) else None,
            "pooled": self.pooled,
            "truncated": self.truncated,
            "seen_chars": self.seen_chars,
            "note": self.note,
            "matches": [m.to_dict() for m in self.matches],
        }


@dataclass(frozen=True)
class DocumentTokens:
    """What each row of a document's ColBERT vectors stands for in its text.

    Attributes:
        spans: per kept vector, its token's ``(start, end)`` in the text, ``None`` for
            special tokens.
        labels: per kept vector, the token's text or its vocabulary string.
        truncated: the text was cut at the model's document length.
        seen_chars: the end of the last token that was encoded.
    """

    spans: list[tuple[int, int] | None]
    labels: list[str]
    truncated: bool
    seen_chars: int


def document_tokens(encoder: LateInteractionEncoder, text: str) -> DocumentTokens:
    """Tokenize ``text`` as :meth:`~LateInteractionEncoder.encode_documents` does, with spans.

    The rows line up with ``encode_documents([text])[0]`` (``pool_factor=1``): outer
    whitespace stripped, ``[D]`` after the first token, skiplisted tokens dropped.
    """
    lead = len(text) - len(text.lstrip())
    tok = encoder.tokenizer.encode_spans(text.strip(), encoder.head.document_length - 1)
    ids = [*tok.ids[:1], encoder._document_prefix_id, *tok.ids[1:]]
    spans = [*tok.spans[:1], None, *tok.spans[1:]]
    skip = set(encoder._skiplist.tolist())
    kept = [(i, _trim(text, s, lead)) for i, s in zip(ids, spans) if i not in skip]
    # Vocabulary strings only for the rows without text (special tokens, lone spaces).
    names = iter(encoder.tokenizer.token_strings([i for i, s in kept if s is None]))
    labels = [next(names) if s is None else text[s[0] : s[1]] for _, s in kept]
    seen = len(text)
    if tok.truncated:
        seen = max((s[1] + lead for s in tok.spans if s is not None), default=0)
    return DocumentTokens([s for _, s in kept], labels, tok.truncated, seen)


def query_labels(encoder: LateInteractionEncoder, query: str) -> list[str]:
    """One label per row of ``encode_queries([query])[0]``: the token's text or its name."""
    return [label for label, _ in query_tokens(encoder, query)]


def query_tokens(
    encoder: LateInteractionEncoder, query: str
) -> list[tuple[str, tuple[int, int] | None]]:
    """Per row of ``encode_queries([query])[0]``: its label and its span in ``query``."""
    lead = len(query) - len(query.lstrip())
    tok = encoder.tokenizer.encode_spans(query.strip(), encoder.head.query_length - 1)
    ids = [*tok.ids[:1], encoder._query_prefix_id, *tok.ids[1:]]
    spans = [*tok.spans[:1], None, *tok.spans[1:]]
    if encoder.head.do_query_expansion:
        pad = encoder.head.query_length - 1 - len(tok.ids)
        ids += [encoder._expansion_id] * pad
        spans += [None] * pad
    names = encoder.tokenizer.token_strings(ids)
    out: list[tuple[str, tuple[int, int] | None]] = []
    for name, span in zip(names, spans):
        span = _trim(query, span, lead)
        out.append((name, None) if span is None else (query[span[0] : span[1]], span))
    return out


def explain_vectors(
    query_vectors: np.ndarray,
    query_labels: Sequence[str],
    document_vectors: np.ndarray,
    tokens: DocumentTokens | None,
    *,
    note: str = "",
    query_spans: Sequence[tuple[int, int] | None] | None = None,
) -> Explanation:
    """Take a MaxSim score apart.

    Args:
        query_vectors: ``[n_query_tokens, dim]`` float32, from ``encode_queries``.
        query_labels: one label per query row (:func:`query_labels`).
        document_vectors: ``[n_tokens, dim]`` float32, from ``encode_documents`` or a store.
        tokens: what each document row stands for (:func:`document_tokens`), or ``None``
            when the rows are not one per token (pooled): then no spans are given.
        note: why ``tokens`` is ``None``, for :attr:`Explanation.note`.
        query_spans: per query row, its span in the query text (:func:`query_tokens`).

    Returns:
        The :class:`Explanation`; a document with no vectors scores ``-inf`` with no
        matches, as :func:`lfm_core.maxsim` has it.

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> d = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    >>> why = explain_vectors(q, ["a", "b"], d, None, note="pooled")
    >>> [(m.document_index, round(m.similarity, 2)) for m in why.matches], round(why.score, 2)
    ([(0, 1.0), (1, 0.8)], 1.8)
    """
    q = np.asarray(query_vectors, dtype=np.float32)
    d = np.asarray(document_vectors, dtype=np.float32)
    if len(query_labels) != q.shape[0]:
        raise ValueError(f"{len(query_labels)} query labels for {q.shape[0]} query vectors")
    if tokens is not None and len(tokens.spans) != d.shape[0]:
        raise ValueError(f"{len(tokens.spans)} document tokens for {d.shape[0]} vectors")
    if d.shape[0] == 0:
        return Explanation(float("-inf"), [], pooled=tokens is None, note=note)
    sim = q @ d.T
    best = sim.argmax(axis=1)
    values = sim[np.arange(q.shape[0]), best]
    matches = [
        TokenMatch(
            query_token=label,
            document_span=None if tokens is None else tokens.spans[j],
            similarity=float(value),
            document_token=None if tokens is None else tokens.labels[j],
            query_index=i,
            document_index=int(j),
            query_span=None if query_spans is None else query_spans[i],
        )
        for i, (label, j, value) in enumerate(zip(query_labels, best, values))
    ]
    if tokens is None:
        return Explanation(float(values.sum(dtype=np.float64)), matches, pooled=True, note=note)
    return Explanation(
        float(values.sum(dtype=np.float64)),
        matches,
        truncated=tokens.truncated,
        seen_chars=tokens.seen_chars,
        note=(
            f"the text was cut to the model's limit: characters from {tokens.seen_chars} on "
            "were not encoded"
            if tokens.truncated
            else ""
        ),
    )


def _trim(text: str, span: tuple[int, int] | None, lead: int) -> tuple[int, int] | None:
    """A span of the stripped text as a span of ``text``, outer whitespace left out."""
    if span is None:
        return None
    start, end = span[0] + lead, span[1] + lead
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def explain_documents(
    encoder: LateInteractionEncoder,
    query: str,
    documents: Sequence[str],
    document_vectors: Sequence[np.ndarray | None] | None = None,
    *,
    query_vectors: np.ndarray | None = None,
    pool_factor: int = 1,
) -> list[Explanation]:
    """:meth:`LateInteractionEncoder.explain` for many documents, the query encoded once.

    Args:
        encoder: the ColBERT encoder that wrote (or would write) the document vectors.
        query: the query text.
        documents: the document texts, as they were embedded (a stored point's
            ``payload["text"]``).
        document_vectors: per document, its stored ``[n_tokens, dim]`` vectors, or
            ``None`` to encode the text; ``None`` for the whole argument encodes them all.
        query_vectors: the query's ``[query_length, dim]`` vectors when already encoded.
        pool_factor: the pooling the documents to encode get (as the writer's); with
            ``pool_factor > 1`` the result is :attr:`Explanation.pooled`.

    Raises:
        TypeError: ``query`` or a document is not a ``str``.
        InputError: ``pool_factor`` below 1.
        ValueError: ``document_vectors`` is not one entry per document, or an entry is not
            ``[n, dim]``.
    """
    from .validation import check_positive_int, validate_text, validate_texts

    validate_text(query)
    texts = validate_texts(documents, "documents")
    pool_factor = check_positive_int(pool_factor, "pool_factor")
    stored: list[np.ndarray | None] = (
        list(document_vectors) if document_vectors is not None else [None] * len(texts)
    )
    if len(stored) != len(texts):
        raise ValueError(f"{len(stored)} document_vectors for {len(texts)} documents")
    for i, rows in enumerate(stored):
        if rows is not None and (np.ndim(rows) != 2 or np.shape(rows)[1] != encoder.dim):
            raise ValueError(
                f"document_vectors[{i}] has shape {np.shape(rows)}; expected [n, {encoder.dim}]"
            )
    if query_vectors is None:
        query_vectors = encoder.encode_queries([query], show_progress=False)[0]
    labels, spans = zip(*query_tokens(encoder, query))
    missing = [i for i, rows in enumerate(stored) if rows is None]
    encoded = set(missing)
    if missing:
        pooled = {"pool_factor": pool_factor} if pool_factor > 1 else {}
        fresh = encoder.encode_documents([texts[i] for i in missing], show_progress=False, **pooled)
        for i, rows in zip(missing, fresh):
            stored[i] = rows
    out = []
    for i, (text, rows) in enumerate(zip(texts, stored)):
        matrix = np.asarray(rows, dtype=np.float32)
        tokens: DocumentTokens | None = document_tokens(encoder, text)
        note = ""
        if i in encoded and pool_factor > 1:
            tokens, note = None, f"vectors pooled (pool_factor={pool_factor}): no token spans"
        elif tokens is not None and len(tokens.spans) != matrix.shape[0]:
            note = (
                f"the {matrix.shape[0]} stored vectors are not one per token of the text "
                f"({len(tokens.spans)} tokens): pooled, or stored from another text; no spans"
            )
            tokens = None
        out.append(
            explain_vectors(query_vectors, labels, matrix, tokens, note=note, query_spans=spans)
        )
    return out

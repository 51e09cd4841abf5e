"""LateInteractionEncoder.explain: matches that add up to MaxSim, spans that slice the text."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_core import LateInteractionEncoder
from lfm_core.explain import document_tokens, query_labels

DOCS = [
    "Orders ship within two business days.",
    "  Returns: accepted for 30 days, with a receipt!  ",
    "Das Café öffnet um neun Uhr.",
    "",
]
QUERY = "when do my orders ship?"


def test_similarities_sum_to_the_maxsim_score(tiny_colbert: LateInteractionEncoder) -> None:
    q = tiny_colbert.encode_queries([QUERY])[0]
    scores = tiny_colbert.score(q, tiny_colbert.encode_documents(DOCS))
    for doc, score in zip(DOCS, scores):
        why = tiny_colbert.explain(QUERY, doc)
        assert len(why.matches) == q.shape[0]  # one per query vector, expansion included
        assert sum(m.similarity for m in why.matches) == pytest.approx(why.score, abs=1e-5)
        assert why.score == pytest.approx(float(score), abs=1e-5)
        assert not why.pooled and not why.truncated and why.note == ""
        named = [m for m in why.matches if m.query_span is not None]
        assert named and all(QUERY[slice(*m.query_span)] == m.query_token for m in named)


def test_document_rows_line_up_with_the_encoded_vectors(
    tiny_colbert: LateInteractionEncoder,
) -> None:
    for doc, rows in zip(DOCS, tiny_colbert.encode_documents(DOCS)):
        assert len(document_tokens(tiny_colbert, doc).spans) == rows.shape[0]
    assert (
        len(query_labels(tiny_colbert, QUERY)) == tiny_colbert.encode_queries([QUERY])[0].shape[0]
    )


def test_spans_slice_the_text_back_to_the_matched_token(
    tiny_colbert: LateInteractionEncoder,
) -> None:
    # ASCII text: every byte-level token decodes on its own, independently of the offsets.
    doc = "  Returns: accepted for 30 days, with a receipt!  "
    tokens = document_tokens(tiny_colbert, doc)
    stripped = doc.strip()
    ids = tiny_colbert.tokenizer.encode([stripped], 511).ids[0]
    skip = set(tiny_colbert._skiplist.tolist())
    decoded = [tiny_colbert.tokenizer._tok.decode([i]).strip() for i in ids if i not in skip]
    # the [D] prefix sits after the first token and has no span
    assert tokens.spans[1] is None and tokens.spans[0] is None
    real = [d for d in [decoded[0], "[D]", *decoded[1:]]]
    checked = 0
    for span, label, want in zip(tokens.spans, tokens.labels, real):
        if span is None:
            continue
        assert doc[span[0] : span[1]] == label == want
        checked += 1
    assert checked >= 10
    why = tiny_colbert.explain(QUERY, doc)
    for m in why.matches:
        if m.document_span is not None:
            assert doc[m.document_span[0] : m.document_span[1]] == m.document_token
    assert any(m.document_span is not None for m in why.matches)


def test_query_tokens_are_the_query_words(tiny_colbert: LateInteractionEncoder) -> None:
    labels = query_labels(tiny_colbert, "orders ship")
    text = "".join(label for label in labels[2:] if label in "orders ship")
    assert text.replace(" ", "") == "ordersship"
    # the expansion tokens are named, and they count
    assert len(labels) == tiny_colbert.query_length


def test_truncated_document_says_where_encoding_stopped(
    tiny_colbert: LateInteractionEncoder,
) -> None:
    doc = "orders ship fast " * 400
    why = tiny_colbert.explain(QUERY, doc)
    assert why.truncated and why.seen_chars is not None and 0 < why.seen_chars < len(doc)
    assert "cut" in why.note
    assert all(m.document_span[1] <= why.seen_chars for m in why.matches if m.document_span)
    assert sum(m.similarity for m in why.matches) == pytest.approx(why.score, abs=1e-5)


def test_pooled_documents_give_no_spans(tiny_colbert: LateInteractionEncoder) -> None:
    doc = DOCS[0] + " " + DOCS[2]
    why = tiny_colbert.explain(QUERY, doc, pool_factor=2)
    pooled = tiny_colbert.encode_documents([doc], pool_factor=2)[0]
    assert why.pooled and "pool_factor=2" in why.note
    assert all(m.document_span is None and m.document_token is None for m in why.matches)
    q = tiny_colbert.encode_queries([QUERY])[0]
    assert why.score == pytest.approx(float(tiny_colbert.score(q, [pooled])[0]), abs=1e-5)


def test_given_vectors_are_not_encoded_again(tiny_colbert: LateInteractionEncoder) -> None:
    rows = tiny_colbert.encode_documents([DOCS[0]])[0]
    why = tiny_colbert.explain(QUERY, DOCS[0], document_vectors=rows)
    assert why == tiny_colbert.explain(QUERY, DOCS[0])
    # vectors that are not one per token (a pooled store): said, not guessed
    odd = tiny_colbert.explain(QUERY, DOCS[0], document_vectors=rows[:3])
    assert odd.pooled and "not one per token" in odd.note
    assert sum(m.similarity for m in odd.matches) == pytest.approx(odd.score, abs=1e-5)


def test_bad_vectors_and_texts_are_named(tiny_colbert: LateInteractionEncoder) -> None:
    with pytest.raises(ValueError, match=r"document_vectors\[0\] has shape \(3, 5\)"):
        tiny_colbert.explain(QUERY, DOCS[0], document_vectors=np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="str"):
        tiny_colbert.explain(QUERY, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        tiny_colbert.explain(3, DOCS[0])  # type: ignore[arg-type]

"""explain_hits: token matches of search hits from the ColBERT vectors a collection stored."""

from __future__ import annotations

from typing import Any

import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_qdrant import MultiVectorWriter
from lfm_qdrant.explain import explain_hits, stored_colbert_vectors

DOCS = [
    "Orders ship within two business days.",
    "Returns are accepted for 30 days with a receipt.",
    "Das Café öffnet um neun Uhr.",
    "Gift cards never expire!",
]
QUERY = "when do orders ship?"


@pytest.fixture
def store(client: Any) -> Any:
    return client


@pytest.mark.parametrize("pool_factor", [1, 2])
def test_stored_vectors_explain_the_search_score(
    store: Any,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
    pool_factor: int,
) -> None:
    writer = MultiVectorWriter(
        store, "docs", dense=tiny_dense, colbert=tiny_colbert, pool_factor=pool_factor
    )
    writer.add(DOCS, metadata=[{"lang": "de" if "Café" in d else "en"} for d in DOCS])
    hits = writer.search(QUERY, limit=4, mode="colbert")
    stored = stored_colbert_vectors(store, "docs", [h.id for h in hits])
    assert set(stored) == {h.id for h in hits}
    explained = explain_hits(tiny_colbert, QUERY, hits, store=store, collection_name="docs")
    for hit, why in zip(hits, explained):
        assert why is not None
        # the stored vectors give Qdrant's own MaxSim score, and the matches add up to it
        assert why.score == pytest.approx(hit.score, abs=1e-4)
        assert sum(m.similarity for m in why.matches) == pytest.approx(why.score, abs=1e-5)
        text = hit.payload["text"]
        if pool_factor == 1:
            assert not why.pooled
            spans = [m.document_span for m in why.matches if m.document_span is not None]
            assert spans
            for m in why.matches:
                if m.document_span is not None:
                    assert text[m.document_span[0] : m.document_span[1]] == m.document_token
            fresh = tiny_colbert.explain(QUERY, text)
            assert [m.document_span for m in why.matches] == [
                m.document_span for m in fresh.matches
            ]
        else:
            assert why.pooled
            assert all(m.document_span is None for m in why.matches)


def test_hits_without_text_are_none(store: Any, tiny_colbert: LateInteractionEncoder) -> None:
    writer = MultiVectorWriter(store, "docs", colbert=tiny_colbert)
    writer.add(DOCS[:2])
    hits = writer.search(QUERY, limit=2)
    hits[1].payload = {}
    explained = explain_hits(tiny_colbert, QUERY, hits, store=store, collection_name="docs")
    assert explained[0] is not None and explained[1] is None


class _Counting:
    """A store that counts the calls the writer makes through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.retrieved: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if callable(attr):

            def call(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                if name == "retrieve":
                    self.retrieved = list(kwargs["ids"])
                return attr(*args, **kwargs)

            return call
        return attr


@pytest.mark.parametrize("mode", ["hybrid", "colbert", "dense", "lexical"])
@pytest.mark.parametrize("chunks", [False, True])
def test_search_explain_gives_token_matches_with_one_read_and_no_second_encoding(
    store: Any,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    chunks: bool,
) -> None:
    MultiVectorWriter(store, "docs", dense=tiny_dense, colbert=tiny_colbert).add(DOCS)
    counting = _Counting(store)
    writer = MultiVectorWriter(counting, "docs", dense=tiny_dense, colbert=tiny_colbert)
    encoded: list[int] = []
    real = tiny_colbert.encode_queries

    def encode_queries(*args: Any, **kwargs: Any) -> Any:
        encoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_colbert, "encode_queries", encode_queries)
    hits = writer.search(QUERY, limit=4, mode=mode, explain=True, chunks=chunks)  # type: ignore[arg-type]
    assert hits
    # One query encoding (in dense/lexical modes the search itself has none: explain adds it),
    # and one read of the final hits' ColBERT vectors (not of every over-fetched candidate).
    assert len(encoded) == 1
    assert counting.calls.count("retrieve") == 1
    assert sorted(map(str, counting.retrieved)) == sorted(str(h.id) for h in hits)
    reference = explain_hits(tiny_colbert, QUERY, hits, store=store, collection_name="docs")
    for hit, expected in zip(hits, reference, strict=True):
        why = hit.explanation
        assert why is not None and expected is not None
        assert hit.vector is None  # the ColBERT rows are not handed to the caller
        assert sum(m.similarity for m in why.matches) == pytest.approx(why.score, abs=1e-5)
        assert why.score == pytest.approx(expected.score, abs=1e-5)
        assert [m.document_span for m in why.matches] == [m.document_span for m in expected.matches]
        if mode == "colbert":
            assert why.score == pytest.approx(hit.score, abs=1e-4)
        text = hit.payload["text"]
        for m in why.matches:
            if m.document_span is not None:
                assert text[m.document_span[0] : m.document_span[1]] == m.document_token


def test_search_explain_without_a_colbert_model_has_legs_only(
    store: Any, tiny_dense: DenseEncoder
) -> None:
    writer = MultiVectorWriter(store, "docs", dense=tiny_dense)
    writer.add(DOCS)
    hits = writer.search(QUERY, limit=2, explain=True)
    assert hits and all(h.explanation is None and "dense" in h.legs for h in hits)


def test_a_grouped_hit_is_explained_by_its_best_chunk_not_its_first(
    store: Any, tiny_colbert: LateInteractionEncoder
) -> None:
    """A grouped hit carries its document's id and its best chunk's text: its explanation
    must come from that chunk's stored vectors (the MaxSim score it was ranked by)."""
    from lfm_qdrant import ChunkingOptions

    sentences = [f"Sentence {i} talks about topic {i} and item {i * 7}." for i in range(40)]
    docs = [" ".join(sentences[i::4]) for i in range(4)]  # 4 documents of several chunks
    writer = MultiVectorWriter(
        store,
        "long",
        colbert=tiny_colbert,
        chunking=ChunkingOptions(max_tokens=48, overlap_tokens=0),
    )
    writer.add(docs, ids=["a", "b", "c", "d"])
    later = 0
    for query in ("topic 29 and item 203", "sentence 38", "item 91", "topic 13", "item 0"):
        hits = writer.search(query, limit=4, mode="colbert", explain=True)
        again = explain_hits(tiny_colbert, query, hits, store=store, collection_name="long")
        for hit, stored_way in zip(hits, again, strict=True):
            assert hit.explanation is not None and stored_way is not None
            assert hit.explanation.score == pytest.approx(hit.score, abs=1e-4)
            assert stored_way.score == pytest.approx(hit.score, abs=1e-4)
            later += hit.payload["_lfm"]["chunk"] > 0
    assert later  # some best chunks were not the first: the case this test is about

"""Long documents: token-aware chunks, ids per document, one hit per document, sync, fingerprints."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from tokenizers import Tokenizer

from lfm_core import DenseEncoder, InputError, LateInteractionEncoder
from lfm_qdrant import (
    CHUNK_KEY,
    Chunker,
    ChunkingOptions,
    EdgeStore,
    MultiVectorWriter,
    SyncReport,
    chunk_point_id,
    document_key,
    point_id,
)

WORDS = [
    "the",
    "manual",
    "says",
    "install",
    "configure",
    "server",
    "restart",
    "cache",
    "token",
    "window",
    "search",
]
SMALL = ChunkingOptions(max_tokens=24, overlap_tokens=4)


def prose(seed: int, paragraphs: int) -> str:
    rng = random.Random(seed)
    return "\n\n".join(
        " ".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
            for _ in range(rng.randint(1, 4))
        )
        for _ in range(paragraphs)
    )


def all_points(client: Any, name: str = "c") -> list[Any]:
    points, _ = client.scroll(name, limit=100_000, with_payload=True)
    return points


# ---------------------------------------------------------------------------- chunker


def test_a_20000_token_document_round_trips(tiny_dense: DenseEncoder, tiny_colbert) -> None:
    chunker = Chunker([tiny_dense, tiny_colbert], ChunkingOptions())
    text = prose(0, 700)
    counter = Tokenizer.from_str(tiny_dense.tokenizer.fast_tokenizer.to_str())
    counter.no_truncation()
    assert len(counter.encode(text).ids) >= 20_000
    chunks = chunker.split(text)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # Spans slice the original text back exactly, in order.
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert all(a.start < b.start for a, b in itertools.pairwise(chunks))
    # Every character outside whitespace is in a chunk.
    covered = np.zeros(len(text), dtype=bool)
    for c in chunks:
        covered[c.start : c.end] = True
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    # Every chunk fits both models with their prompt and special tokens: nothing is cut.
    for encoder in (tiny_dense, tiny_colbert):
        counts = encoder.count_tokens([c.text for c in chunks], input_type="document")
        assert counts.truncated == []
    # Neighbours overlap.
    assert any(a.end > b.start for a, b in itertools.pairwise(chunks))


def test_a_short_text_is_one_chunk_and_a_blank_one_too(tiny_dense: DenseEncoder) -> None:
    chunker = Chunker([tiny_dense], ChunkingOptions())
    assert [(c.start, c.end, c.text) for c in chunker.split("short text")] == [
        (0, 10, "short text")
    ]
    assert [(c.index, c.text) for c in chunker.split("")] == [(0, "")]


@pytest.mark.parametrize(
    ("sentence", "end"),
    [("東京は日本の首都です。", "。"), ("서울은 한국의 수도입니다. ", "."), ("Das ist gut. ", ".")],
)
def test_chunks_end_at_sentences_in_any_script(tiny_dense, sentence: str, end: str) -> None:
    chunker = Chunker([tiny_dense], ChunkingOptions(max_tokens=40, overlap_tokens=0))
    chunks = chunker.split(sentence * 60)
    assert len(chunks) > 2
    assert all(c.text.endswith(end) for c in chunks)


def test_markdown_sections_start_chunks(tiny_dense) -> None:
    chunker = Chunker([tiny_dense], ChunkingOptions(max_tokens=60, overlap_tokens=0))
    text = "\n\n".join(f"# Part {i}\n\n{prose(i, 2)}" for i in range(6))
    starts = [c.text.split("\n")[0] for c in chunker.split(text)]
    assert sum(s.startswith("# Part") for s in starts) >= 4


def test_a_megabyte_line_without_spaces_is_cut_in_seconds(tiny_dense) -> None:
    chunker = Chunker([tiny_dense], ChunkingOptions(max_tokens=200))
    text = "x" * 200_000
    chunks = chunker.split(text)
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_bad_chunking_options_are_refused(tiny_dense) -> None:
    with pytest.raises(InputError, match="max_tokens"):
        ChunkingOptions(max_tokens=0)
    with pytest.raises(InputError, match="overlap_tokens"):
        ChunkingOptions(overlap_tokens=-1)
    with pytest.raises(InputError, match="overlap_tokens .* below the chunk size"):
        Chunker([tiny_dense], ChunkingOptions(max_tokens=8, overlap_tokens=8))
    with pytest.raises(TypeError, match="chunking must be"):
        MultiVectorWriter(QdrantClient(":memory:"), "c", dense=tiny_dense, chunking="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ points per chunk


def test_chunks_are_points_with_ids_per_document(client, tiny_dense, tiny_colbert) -> None:
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, colbert=tiny_colbert, chunking=SMALL)
    long_text, short_text = prose(1, 12), "a short one"
    ids = writer.add([long_text, short_text], ids=["long", 7])
    assert ids == [point_id("long"), 7]
    points = all_points(client)
    by_doc: dict[Any, list[Any]] = {}
    for p in points:
        by_doc.setdefault(document_key(p.id, p.payload), []).append(p)
    assert set(by_doc) == {point_id("long"), 7}
    # The short document is one point with the document's own id, as without chunking.
    (short,) = by_doc[7]
    assert short.id == 7 and short.payload["text"] == short_text
    chunks = sorted(by_doc[point_id("long")], key=lambda p: p.payload[CHUNK_KEY]["chunk"])
    assert len(chunks) > 3
    for p in chunks:
        record = p.payload[CHUNK_KEY]
        # Ids round-trip: (document, chunk index) -> the point id.
        assert str(p.id) == str(chunk_point_id(point_id("long"), record["chunk"]))
        assert long_text[record["start"] : record["end"]] == p.payload["text"]
        assert record["chunks"] == len(chunks)
    assert chunks[0].id == point_id("long")


def test_a_document_that_shrinks_from_9_chunks_to_2_leaves_2_points(client, tiny_dense) -> None:
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, chunking=SMALL)
    chunker = Chunker([tiny_dense], SMALL)
    long_text, short_text = prose(18, 2), prose(6, 1)
    assert (len(chunker.split(long_text)), len(chunker.split(short_text))) == (9, 2)
    writer.add([long_text, "other"], ids=["doc", "other"])
    assert writer.count() == 10
    writer.add([short_text], ids=["doc"])
    assert writer.count() == 3
    texts = sorted(p.payload["text"] for p in all_points(client))
    assert texts == sorted([c.text for c in chunker.split(short_text)] + ["other"])


def test_delete_removes_every_chunk_of_the_documents(client, tiny_dense) -> None:
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, chunking=SMALL)
    writer.add([prose(2, 6), prose(3, 6), "short"], ids=["a", "b", "s"])
    writer.delete(["a", "s"])
    assert {document_key(p.id, p.payload) for p in all_points(client)} == {point_id("b")}


def test_chunking_off_stores_one_point_per_document(client, tiny_dense) -> None:
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, chunking=False)
    writer.add([prose(4, 30)], ids=["a"])
    assert writer.count() == 1


def test_the_collection_records_the_chunk_settings(client, tiny_dense) -> None:
    MultiVectorWriter(client, "c", dense=tiny_dense, chunking=SMALL).add(["x"])
    record = client.get_collection("c").config.metadata["lfm_retrieval"]
    assert record["chunking"] == {"max_tokens": 24, "overlap_tokens": 4}


def test_metadata_may_not_use_the_reserved_key(tiny_dense) -> None:
    writer = MultiVectorWriter(QdrantClient(":memory:"), "c", dense=tiny_dense)
    with pytest.raises(InputError, match=r"metadata\[0\] has a '_lfm' key"):
        writer.add(["x"], metadata=[{"_lfm": 1}])


# ---------------------------------------------------------------------------- search


def _oracle(writer: Any, client: Any, query: str, limit: int) -> list[tuple[Any, float]]:
    """Every chunk scored by cosine, each document's best, best first: what grouping returns."""
    q = writer.dense.encode_queries([query])[0]
    points, _ = client.scroll("c", limit=100_000, with_payload=True, with_vectors=True)
    best: dict[Any, float] = {}
    for p in points:
        score = float(np.dot(q, p.vector["dense"]))
        doc = document_key(p.id, p.payload)
        best[doc] = max(best.get(doc, -2.0), score)
    return sorted(best.items(), key=lambda kv: -kv[1])[:limit]


@pytest.mark.parametrize("batch", [False, True])
def test_search_returns_each_document_once(client, tiny_dense, batch: bool) -> None:
    # Dense search (no lexical leg): the oracle ranks chunks by the encoder's own cosine.
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, chunking=SMALL, lexical=False)
    texts = [prose(10 + i, 1 + 3 * (i % 4)) for i in range(12)]
    writer.add(texts, ids=[f"d{i}" for i in range(12)])
    assert writer.count() > 30
    for query in ("install the server", "restart cache", "token window"):
        hits = writer.search_batch([query], limit=5)[0] if batch else writer.search(query, limit=5)
        assert len(hits) == 5 and len({h.id for h in hits}) == 5
        expected = _oracle(writer, client, query, 5)
        assert [h.id for h in hits] == [doc for doc, _ in expected]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], rtol=1e-4)
        for h in hits:  # the best chunk's text and span
            record = h.payload[CHUNK_KEY]
            doc_text = texts[_index(h.id)]
            assert doc_text[record["start"] : record["end"]] == h.payload["text"]
        chunks = writer.search(query, limit=20, chunks=True)
        assert len(chunks) == 20 and len({document_key(p.id, p.payload) for p in chunks}) < 20


def _index(doc_id: Any) -> int:
    return next(i for i in range(12) if point_id(f"d{i}") == doc_id)


def test_grouping_asks_again_when_one_document_fills_the_page(tiny_dense) -> None:
    client = QdrantClient(":memory:")
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, chunking=SMALL)
    # One document of ~60 chunks about the query, three short ones.
    writer.add([prose(5, 60), "install server", "restart cache", "token"], ids=[1, 2, 3, 4])
    hits = writer.search("install configure server", limit=4)
    assert sorted(h.id for h in hits) == [1, 2, 3, 4]


def test_hybrid_search_groups_too(tiny_dense, tiny_colbert) -> None:
    client = QdrantClient(":memory:")
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, colbert=tiny_colbert, chunking=SMALL)
    writer.add([prose(20 + i, 6) for i in range(6)], ids=list(range(6)))
    hits = writer.search("install the server", limit=4, prefetch_limit=40)
    assert len(hits) == 4 and len({h.id for h in hits}) == 4
    assert all(isinstance(h.id, int) for h in hits)


# ------------------------------------------------------------------ sync, fingerprint


class Counting:
    """Delegates to an encoder and counts the texts it encodes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.encoded = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_documents(self, texts: list[str], **kwargs: Any) -> Any:
        self.encoded += len(texts)
        return self.inner.encode_documents(texts, **kwargs)


def test_resume_with_float_metadata_encodes_nothing(tmp_path, tiny_dense) -> None:
    """The engine rewrites some floats (i / 3); the fingerprint is not fooled."""
    store = EdgeStore(tmp_path / "edge")
    texts = [f"document {i}" for i in range(300)]
    metadata = [{"score": i / 3} for i in range(300)]
    first = MultiVectorWriter(store, "c", dense=tiny_dense, batch_size=100)
    assert first.sync(texts, metadata=metadata) == SyncReport(added=300)
    stored = {p.payload["text"]: p.payload["score"] for p in all_points(store)}
    # What the engine gives back is not always what was written ...
    assert any(stored[t] != m["score"] for t, m in zip(texts, metadata, strict=True))
    counting = Counting(tiny_dense)
    again = MultiVectorWriter(store, "c", dense=counting, batch_size=100)
    assert again.sync(texts, metadata=metadata) == SyncReport(unchanged=300)
    assert counting.encoded == 0
    store.close()


def test_sync_adds_updates_keeps_and_deletes(client, tiny_dense) -> None:
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, chunking=SMALL)
    docs = {"a": prose(30, 6), "b": prose(31, 6), "c": "short c", "d": prose(32, 3)}
    assert writer.sync(list(docs.values()), ids=list(docs)) == SyncReport(added=4)
    changed = {"a": docs["a"], "b": "b is short now", "e": prose(33, 5)}
    report = writer.sync(list(changed.values()), ids=list(changed))
    assert report == SyncReport(added=1, updated=1, unchanged=1, deleted=2)
    # Equal to one clean write of the new corpus.
    fresh = QdrantClient(":memory:")
    MultiVectorWriter(fresh, "c", dense=tiny_dense, chunking=SMALL).sync(
        list(changed.values()), ids=list(changed)
    )
    assert _state(client) == _state(fresh)


def _state(client: Any) -> dict[str, Any]:
    points, _ = client.scroll("c", limit=100_000, with_payload=True, with_vectors=True)
    return {
        str(p.id): (p.payload, np.round(np.asarray(p.vector["dense"]), 5).tolist()) for p in points
    }


def test_sync_resume_only_keeps_missing_documents(client, tiny_dense) -> None:
    writer = MultiVectorWriter(client, "c", dense=tiny_dense)
    writer.sync(["one", "two"], ids=[1, 2])
    assert writer.sync(["three"], ids=[3], delete_missing=False) == SyncReport(added=1)
    assert writer.count() == 3


def test_changed_models_or_chunking_mean_changed_fingerprints(tiny_dense) -> None:
    client = QdrantClient(":memory:")
    MultiVectorWriter(client, "c", dense=tiny_dense, chunking=SMALL).sync(["x"], ids=[1])
    other = MultiVectorWriter(
        client, "c", dense=tiny_dense, chunking=ChunkingOptions(max_tokens=30, overlap_tokens=4)
    )
    assert other.sync(["x"], ids=[1]) == SyncReport(updated=1)


def test_late_interaction_fits_its_own_window(tiny_colbert: LateInteractionEncoder) -> None:
    chunker = Chunker([tiny_colbert], ChunkingOptions())
    fixed = tiny_colbert.count_tokens([""], input_type="document").tokens[0]
    assert chunker.max_tokens <= tiny_colbert.document_length - fixed


def test_async_sync_and_search_match_the_sync_ones(tiny_dense) -> None:
    import asyncio

    from qdrant_client import AsyncQdrantClient

    texts, ids = [prose(40 + i, 3) for i in range(4)], ["a", "b", "c", "d"]

    async def run() -> tuple[SyncReport, list[Any]]:
        client = AsyncQdrantClient(":memory:")
        writer = MultiVectorWriter(client, "c", dense=tiny_dense, chunking=SMALL)
        report = await writer.async_(texts, ids=ids)
        hits = await writer.asearch("install the server", limit=3)
        await client.close()
        return report, hits

    report, hits = asyncio.run(run())
    sync_writer = MultiVectorWriter(QdrantClient(":memory:"), "c", dense=tiny_dense, chunking=SMALL)
    assert report == sync_writer.sync(texts, ids=ids) == SyncReport(added=4)
    expected = sync_writer.search("install the server", limit=3)
    assert [h.id for h in hits] == [h.id for h in expected]

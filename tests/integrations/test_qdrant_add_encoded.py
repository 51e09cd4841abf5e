"""MultiVectorWriter.add_encoded: vectors encoded elsewhere, stored as add() stores them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lfm_core import CollectionError, DenseEncoder, InputError, LateInteractionEncoder
from lfm_qdrant import (
    Chunker,
    ChunkingOptions,
    EdgeStore,
    ModelRecord,
    MultiVectorWriter,
    SyncReport,
    document_key,
    point_id,
)
from tests.texts import prose

TEXTS = ["first document", "second, longer document", "third"]


def test_add_encoded_with_records_equals_add(
    tmp_path: Path, tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    store = EdgeStore(tmp_path)
    try:
        plain = MultiVectorWriter(store, "plain", dense=tiny_dense, colbert=tiny_colbert)
        ids = plain.add(TEXTS, metadata=[{"n": i} for i in range(3)])
        remote = MultiVectorWriter(
            store, "remote", dense=ModelRecord.of(tiny_dense), colbert=ModelRecord.of(tiny_colbert)
        )
        got = remote.add_encoded(
            TEXTS,
            dense_vectors=tiny_dense.encode_documents(TEXTS),
            colbert_vectors=tiny_colbert.encode_documents(TEXTS),
            metadata=[{"n": i} for i in range(3)],
        )
        assert got == ids
        a = {p.id: p for p in store.retrieve("plain", ids, with_payload=True, with_vectors=True)}
        b = {p.id: p for p in store.retrieve("remote", ids, with_payload=True, with_vectors=True)}
        for key in a:
            # Equal but for the fingerprint, which holds the chunk settings a writer
            # without a tokenizer cannot have.
            assert a[key].payload["_lfm"].pop("fingerprint") != b[key].payload["_lfm"].pop(
                "fingerprint"
            )
            assert a[key].payload == b[key].payload
            np.testing.assert_allclose(
                a[key].vector["colbert"], b[key].vector["colbert"], atol=1e-6
            )
        # A record writer can search nothing: it has no model to encode the query.
        with pytest.raises(TypeError, match="cannot encode"):
            remote.search("first")
        # Another model under the same collection is refused, records or not.
        other = ModelRecord("other/model", tiny_dense.dim, digest="sha256:" + "0" * 32)
        with pytest.raises(CollectionError, match="was written with dense model"):
            MultiVectorWriter(
                store, "remote", dense=other, colbert=ModelRecord.of(tiny_colbert)
            ).ensure_collection()
    finally:
        store.close()


def test_add_encoded_checks_the_vectors_before_writing(
    tmp_path: Path, tiny_dense: DenseEncoder
) -> None:
    store = EdgeStore(tmp_path)
    try:
        writer = MultiVectorWriter(store, "c", dense=tiny_dense)
        good = tiny_dense.encode_documents(TEXTS)
        with pytest.raises(InputError, match="2 entries for 3 texts"):
            writer.add_encoded(TEXTS, dense_vectors=good[:2])
        with pytest.raises(InputError, match=r"dense_vectors\[0\] has shape"):
            writer.add_encoded(
                TEXTS, dense_vectors=np.zeros((3, tiny_dense.dim + 1), dtype=np.float32)
            )
        with pytest.raises(TypeError, match="colbert_vectors given"):
            writer.add_encoded(TEXTS, dense_vectors=good, colbert_vectors=[np.zeros((2, 4))] * 3)
        with pytest.raises(TypeError, match="dense_vectors missing"):
            writer.add_encoded(TEXTS)
        assert not store.collection_exists("c")
    finally:
        store.close()


def _encode_chunks(
    chunker: Chunker, texts: list[str], dense: DenseEncoder, colbert: LateInteractionEncoder
) -> tuple[list[list[tuple[int, int]]], Any, Any]:
    """What a worker does: split, then encode the chunks, document by document."""
    spans = [[(c.start, c.end) for c in chunker.split(t)] for t in texts]
    pieces = [t[a:b] for t, cuts in zip(texts, spans, strict=True) for a, b in cuts]
    return spans, dense.encode_documents(pieces), colbert.encode_documents(pieces)


def test_chunks_encoded_elsewhere_are_the_points_add_writes(
    tmp_path: Path, tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    small = ChunkingOptions(max_tokens=24, overlap_tokens=4)
    texts = [prose(1, 9, words=12), "a short one", prose(2, 4, words=12)]
    meta = [{"n": i / 3} for i in range(3)]
    store = EdgeStore(tmp_path)
    try:
        plain = MultiVectorWriter(
            store, "plain", dense=tiny_dense, colbert=tiny_colbert, chunking=small
        )
        plain.add(texts, ids=["a", "b", "c"], metadata=meta)
        chunker = Chunker([tiny_dense, tiny_colbert], small)
        remote = MultiVectorWriter(
            store,
            "remote",
            dense=ModelRecord.of(tiny_dense),
            colbert=ModelRecord.of(tiny_colbert),
            chunking=ChunkingOptions(**chunker.settings()),
        )
        spans, dense, colbert = _encode_chunks(chunker, texts, tiny_dense, tiny_colbert)
        remote.add_encoded(
            texts,
            dense_vectors=dense,
            colbert_vectors=colbert,
            ids=["a", "b", "c"],
            metadata=meta,
            chunk_spans=spans,
        )
        a, _ = store.scroll("plain", limit=1000, with_payload=True, with_vectors=True)
        b, _ = store.scroll("remote", limit=1000, with_payload=True, with_vectors=True)
        assert len(a) > 6  # two documents are several chunks
        got = {str(p.id): p for p in b}
        assert set(got) == {str(p.id) for p in a}
        for want in a:
            # Fingerprints included: the same chunk settings, recorded without a tokenizer.
            assert got[str(want.id)].payload == want.payload
            for name in ("dense", "colbert"):
                np.testing.assert_allclose(
                    got[str(want.id)].vector[name], want.vector[name], atol=1e-5
                )
        assert remote.changed_documents(texts, ["a", "b", "c"], meta)[1] == SyncReport(unchanged=3)
        assert store.get_collection("remote").config.metadata["lfm_retrieval"]["chunking"] == {
            "max_tokens": 24,
            "overlap_tokens": 4,
        }

        # A document that shrinks to one chunk, written the same way, leaves one point.
        short = ["now short"]
        spans, dense, colbert = _encode_chunks(chunker, short, tiny_dense, tiny_colbert)
        changed, report = remote.changed_documents(short, ["a"], [meta[0]])
        assert (changed, report) == ([0], SyncReport(updated=1))
        remote.add_encoded(
            short,
            dense_vectors=dense,
            colbert_vectors=colbert,
            ids=["a"],
            metadata=[meta[0]],
            chunk_spans=spans,
        )
        of_a = {"must": [{"key": "_lfm.doc", "match": {"value": str(point_id("a"))}}]}
        assert remote.count(of_a) == 1
        # The corpus is now "a" and "c": "b" goes, all its chunks.
        assert remote.delete_missing(["a", "c"]) == 1
        stored = {document_key(p.id, p.payload) for p in store.scroll("remote", limit=1000)[0]}
        assert stored == {point_id("a"), point_id("c")}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("chunks", "error", "message"),
    [
        ([[(0, 5)], [(0, 3)]], InputError, "chunks has 2 entries for 3 texts"),
        ([[(0, 5)], [], [(0, 1)]], InputError, r"chunks\[1\] is empty"),
        (
            [[(0, 99)], [(0, 1)], [(0, 1)]],
            InputError,
            r"chunks\[0\]\[0\] = \(0, 99\) is not inside",
        ),
        ([[(0, 3), (0, 4)], [(0, 1)], [(0, 1)]], InputError, r"chunks\[0\]\[1\] starts at 0"),
        ([[(0, 2.5)], [(0, 1)], [(0, 1)]], TypeError, r"start and end must be ints"),
        ([[(0,)], [(0, 1)], [(0, 1)]], TypeError, r"expected a \(start, end\) pair"),
        (
            [[(0, 5)], [(0, 1), (1, 3)], [(0, 1)]],
            InputError,
            "dense_vectors has 3 entries for 4 chunks",
        ),
    ],
)
def test_bad_chunk_spans_are_named_before_writing(
    tmp_path: Path, tiny_dense: DenseEncoder, chunks: Any, error: type, message: str
) -> None:
    store = EdgeStore(tmp_path)
    try:
        writer = MultiVectorWriter(store, "c", dense=ModelRecord.of(tiny_dense))
        with pytest.raises(error, match=message):
            writer.add_encoded(
                TEXTS, dense_vectors=tiny_dense.encode_documents(TEXTS), chunk_spans=chunks
            )
        assert not store.collection_exists("c")
    finally:
        store.close()

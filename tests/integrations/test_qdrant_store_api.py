"""MultiVectorWriter's methods for the framework stores: get, search_vector (MMR), add_dense."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from qdrant_client import QdrantClient

from lfm_core import InputError
from lfm_qdrant import EdgeStore, ModelRecord, MultiVectorWriter, point_id

TEXTS = [f"document number {i} about {topic}" for i, topic in enumerate("abcdefghij" * 2)]


@pytest.fixture
def writer(client, tiny_dense, tiny_colbert):
    w = MultiVectorWriter(client, "c", dense=tiny_dense, colbert=tiny_colbert)
    w.add(TEXTS, ids=[f"k{i}" for i in range(len(TEXTS))], metadata=[{"n": i} for i in range(20)])
    return w


def test_get_keeps_the_order_asked_and_leaves_out_missing(writer):
    records = writer.get(["k3", "nope", "k1", point_id("k0")])
    assert [r.payload["n"] for r in records] == [3, 1, 0]
    assert writer.get([]) == []
    assert [r.id for r in asyncio.run(writer.aget(["k2"]))] == [point_id("k2")]
    with pytest.raises(TypeError, match=r"ids\[1\]"):
        writer.get(["k1", 1.5])


def test_search_vector_is_the_dense_search_and_mmr_runs_in_qdrant(writer, tiny_dense):
    vector = tiny_dense.encode_queries(["about c"])[0]
    dense = writer.search("about c", limit=5, mode="dense")
    by_vector = writer.search_vector(vector, limit=5)
    assert [p.id for p in by_vector] == [p.id for p in dense]
    assert [p.score for p in by_vector] == pytest.approx([p.score for p in dense], abs=1e-5)
    relevance_only = writer.search_vector(vector, 5, mmr_diversity=0.0, mmr_candidates=20)
    assert [p.id for p in relevance_only] == [p.id for p in dense]
    diverse = writer.search_vector(vector, 5, mmr_diversity=1.0, mmr_candidates=20)
    assert len(diverse) == 5 and [p.id for p in diverse] != [p.id for p in dense]
    flt = {"must": [{"key": "n", "range": {"gte": 15}}]}
    assert all(p.payload["n"] >= 15 for p in writer.search_vector(vector, 5, flt))
    again = asyncio.run(writer.asearch_vector(vector, 5, mmr_diversity=1.0, mmr_candidates=20))
    assert [p.id for p in again] == [p.id for p in diverse]
    with pytest.raises(InputError, match="shape"):
        writer.search_vector(vector[:3])
    with pytest.raises(InputError, match="diversity"):
        writer.search_vector(vector, mmr_diversity=1.5)


def test_mmr_gives_the_same_order_on_edge_and_in_local_mode(tmp_path, tiny_dense):
    vector = tiny_dense.encode_queries(["about c"])[0]
    orders = []
    for client in (EdgeStore(tmp_path / "e"), QdrantClient(":memory:")):
        w = MultiVectorWriter(client, "c", dense=tiny_dense)
        w.add(TEXTS)
        orders.append([p.id for p in w.search_vector(vector, 6, mmr_diversity=0.7)])
    assert orders[0] == orders[1]


def test_add_dense_writes_the_given_vectors_and_encodes_colbert(client, tiny_dense, tiny_colbert):
    record = ModelRecord.of(tiny_dense)
    writer = MultiVectorWriter(client, "given", dense=record, colbert=tiny_colbert)
    vectors = tiny_dense.encode_documents(TEXTS)
    ids = writer.add_dense(TEXTS, vectors, ids=list(range(20)), metadata=None)
    assert ids == list(range(20))
    full = MultiVectorWriter(client, "given", dense=tiny_dense, colbert=tiny_colbert)
    reference = MultiVectorWriter(client, "ref", dense=tiny_dense, colbert=tiny_colbert)
    reference.add(TEXTS, ids=list(range(20)))
    for query in ["about c", "number 7"]:
        # Leg by leg: fused rankings can tie, and two collections break ties their own way.
        for mode in ("dense", "colbert"):
            assert [p.id for p in full.search(query, limit=5, mode=mode)] == [
                p.id for p in reference.search(query, limit=5, mode=mode)
            ]
        # BM25 ties among these near-identical texts: compare the scores (the bm25 vectors).
        assert [round(p.score, 4) for p in full.search(query, limit=20, mode="lexical")] == [
            round(p.score, 4) for p in reference.search(query, limit=20, mode="lexical")
        ]
    with pytest.raises(InputError, match="dense_vectors has 2 entries"):
        writer.add_dense(TEXTS[:3], vectors[:2])
    with pytest.raises(InputError, match=r"dense_vectors\[0\] has shape"):
        writer.add_dense(TEXTS[:1], np.zeros((1, 3)))
    asyncio.run(writer.aadd_dense(["one more"], vectors[:1], ids=[99]))
    assert writer.count() == 21


def test_get_by_filter_reads_every_page(client, tiny_dense):
    writer = MultiVectorWriter(client, "pages", dense=tiny_dense, batch_size=3)
    writer.add(TEXTS, metadata=[{"n": i} for i in range(20)])
    found = writer.get(query_filter={"must": [{"key": "n", "range": {"gte": 6}}]})
    assert sorted(r.payload["n"] for r in found) == list(range(6, 20))
    assert len(writer.get(query_filter={})) == 20
    with pytest.raises(InputError, match="one of the two"):
        writer.get()


def test_search_vector_with_a_colbert_query_is_the_hybrid_search(writer, tiny_dense):
    for query in ["about c", "number 7"]:
        vector = tiny_dense.encode_queries([query])[0]
        hybrid = writer.search(query, limit=5, prefetch_limit=8)
        given = writer.search_vector(vector, 5, colbert_query=query, prefetch_limit=8)
        assert [p.id for p in given] == [p.id for p in hybrid]
        assert [p.score for p in given] == pytest.approx([p.score for p in hybrid], abs=1e-4)
    with pytest.raises(InputError, match="prefetch_limit"):
        writer.search_vector(vector, 5, colbert_query="x", prefetch_limit=2)
    with pytest.raises(InputError, match="no ColBERT rerank"):
        writer.search_vector(vector, 5, colbert_query="x", mmr_diversity=0.5)

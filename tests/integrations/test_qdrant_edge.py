"""lfm_qdrant.EdgeStore: Qdrant's engine in-process, checked against qdrant-client's local mode.

The same writer, the same collection, two engines: ids and scores must agree (1e-4) in all
three search modes, with filters and in batches. Then the store's own guarantees: one
process per folder, reopening, refusing foreign folders, and a failing disk that loses
nothing already written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from lfm_core import CollectionError
from lfm_qdrant import EdgeStore, MultiVectorWriter, StoreError

# Each repetition is longer than the last: no two documents tie in any leg (engines break
# ties in their own order, so tied documents could come back in either order).
DOCS = [
    f"{topic} note {i}: {detail}" + " copy" * (i // 8)
    for i, (topic, detail) in enumerate(
        [
            ("shipping", "orders leave the warehouse within two days"),
            ("refunds", "money is returned to the card within a week"),
            ("passwords", "reset it from the login page"),
            ("envío", "los pedidos salen en dos días"),
            ("Versand", "Bestellungen verlassen das Lager in zwei Tagen"),
            ("配送", "注文は2日以内に発送されます"),
            ("invoices", "download them as PDF from your account"),
            ("warranty", "two years on every device"),
        ]
        * 3
    )
]
QUERIES = ["when will my order ship?", "how do I get my money back", "¿cuándo llega mi pedido?"]


@pytest.fixture(scope="module")
def both(tmp_path_factory, tiny_dense, tiny_colbert):
    """The same documents written by one writer setup into Edge and into local mode."""
    root = tmp_path_factory.mktemp("edge-vs-local")
    edge, local = EdgeStore(root / "edge"), QdrantClient(path=str(root / "local"))
    writers = {}
    for kind, client in (("edge", edge), ("local", local)):
        writers[kind] = MultiVectorWriter(
            client, "c", dense=tiny_dense, colbert=tiny_colbert, batch_size=7
        )
        writers[kind].add(
            DOCS, metadata=[{"n": i, "topic": d.split()[0]} for i, d in enumerate(DOCS)]
        )
    edge.optimize("c")
    yield writers
    edge.close()
    local.close()


def assert_same(edge_hits: list[Any], local_hits: list[Any]) -> None:
    np.testing.assert_allclose(
        [h.score for h in edge_hits], [h.score for h in local_hits], rtol=0, atol=1e-4
    )

    # Rank fusion gives exact ties (ranks 2 and 8 sum as 8 and 2 do); each engine orders a
    # tie its own way. So hits are compared in groups of equal score; the last group may
    # be cut by the limit differently.
    def groups(hits: list[Any]) -> list[set[Any]]:
        out: list[set[Any]] = []
        for i, h in enumerate(hits):
            if i and abs(h.score - hits[i - 1].score) < 1e-6:
                out[-1].add((h.id, repr(h.payload)))
            else:
                out.append({(h.id, repr(h.payload))})
        return out

    assert groups(edge_hits)[:-1] == groups(local_hits)[:-1]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical", "colbert"])
@pytest.mark.parametrize(
    "query_filter",
    [
        None,
        {"must": [{"key": "n", "range": {"gte": 5}}]},
        {"must_not": [{"key": "topic", "match": {"any": ["refunds", "envío"]}}]},
    ],
    ids=["no-filter", "range", "match-any"],
)
def test_edge_and_local_mode_agree(both, mode, query_filter):
    for query in QUERIES:
        edge = both["edge"].search(
            query, limit=6, prefetch_limit=12, query_filter=query_filter, mode=mode
        )
        local = both["local"].search(
            query, limit=6, prefetch_limit=12, query_filter=query_filter, mode=mode
        )
        # BM25 finds only the documents that share a word with the query (none, once the
        # filter leaves out the Spanish notes for the Spanish query).
        assert len(edge) == 6 or mode == "lexical"
        assert_same(edge, local)


def test_search_batch_equals_one_search_per_query(both):
    for kind in ("edge", "local"):
        batch = both[kind].search_batch(QUERIES, limit=5, prefetch_limit=10)
        assert len(batch) == len(QUERIES)
        for query, hits in zip(QUERIES, batch, strict=True):
            assert_same(hits, both[kind].search(query, limit=5, prefetch_limit=10))
    assert both["edge"].search_batch([], limit=3) == []


def test_counts_agree(both):
    flt = {"must": [{"key": "topic", "match": {"value": "shipping"}}]}
    assert both["edge"].count() == both["local"].count() == len(DOCS)
    assert both["edge"].count(flt) == both["local"].count(flt) == 3


def test_search_on_a_missing_collection_is_one_line(tmp_path, tiny_dense):
    with (
        EdgeStore(tmp_path / "s") as store,
        pytest.raises(CollectionError, match=r"^collection 'nope' does not exist; write to it"),
    ):
        MultiVectorWriter(store, "nope", dense=tiny_dense).search("x")


def test_a_reopened_store_has_everything_and_keeps_its_layout(tmp_path, tiny_dense, tiny_colbert):
    with EdgeStore(tmp_path / "s") as store:
        ids = MultiVectorWriter(store, "c", dense=tiny_dense, colbert=tiny_colbert).add(DOCS)
    with EdgeStore(tmp_path / "s") as store:
        writer = MultiVectorWriter(store, "c", dense=tiny_dense, colbert=tiny_colbert)
        assert writer.count() == len(DOCS)
        assert {r.id for r in store.retrieve("c", ids)} == set(ids)
        vectors = store.get_collection("c").config.params.vectors
        assert vectors["colbert"].hnsw_config.m == 0
        assert store.get_collections().collections[0].name == "c"


def test_a_second_process_is_refused_while_the_store_is_open(tmp_path):
    path = tmp_path / "s"
    probe = (
        "import sys\nfrom lfm_qdrant import EdgeStore, StoreError\n"
        "try:\n    EdgeStore(sys.argv[1])\nexcept StoreError as e:\n    print(e)\n"
    )
    with EdgeStore(path):
        out = subprocess.run(
            [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60
        )
    assert "is in use by another process" in out.stdout, out.stderr
    again = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60
    )
    assert again.stdout == "" and again.returncode == 0, again.stderr  # released on close


def test_foreign_and_corrupt_folders_are_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(StoreError, match="is not a Qdrant Edge store"):
        EdgeStore(tmp_path / "notes")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        EdgeStore(tmp_path / "file")
    with EdgeStore(tmp_path / "s"):
        pass
    (tmp_path / "s" / "lfm-store.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(StoreError, match="not an lfm-retrieval store marker"):
        EdgeStore(tmp_path / "s")
    # The refused store released its lock: fixing the marker makes it usable again.
    (tmp_path / "s" / "lfm-store.json").write_text(
        json.dumps({"format": "lfm-qdrant-edge", "version": 1})
    )
    EdgeStore(tmp_path / "s").close()


def test_a_disk_error_mid_add_loses_nothing_written_before(tmp_path, tiny_dense, monkeypatch):
    store = EdgeStore(tmp_path / "s")
    writer = MultiVectorWriter(store, "c", dense=tiny_dense, batch_size=4)
    first = writer.add(DOCS[:8])
    shard = store._shards["c"]

    class FailingShard:
        """The engine's shard, whose fourth update fails as a full disk would.

        Each batch is two updates (the delete of the documents' other points, the upsert),
        so the first batch of this add is acknowledged, the second fails.
        """

        def __init__(self) -> None:
            self.updates = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(shard, name)

        def update(self, operation: Any) -> None:
            self.updates += 1
            if self.updates == 4:
                raise Exception("Service runtime error: No space left on device (os error 28)")
            shard.update(operation)

    monkeypatch.setitem(store._shards, "c", FailingShard())
    with pytest.raises(StoreError, match=r"collection 'c' .*No space left on device"):
        writer.add(DOCS[8:20])
    monkeypatch.setitem(store._shards, "c", shard)
    # The 8 earlier points and the batch acknowledged before the failure are all there.
    assert writer.count() == 12
    assert {r.id for r in store.retrieve("c", first)} == set(first)
    writer.add(DOCS[8:20])  # re-running completes it
    assert writer.count() == 20
    store.close()
    with EdgeStore(tmp_path / "s") as reopened:
        assert reopened.count("c").count == 20


def test_delete_collection_and_unsupported_filters(tmp_path, tiny_dense):
    with EdgeStore(tmp_path / "s") as store:
        writer = MultiVectorWriter(store, "c", dense=tiny_dense)
        writer.add(DOCS[:3])
        polygon = models.Filter(
            must=[
                models.FieldCondition(
                    key="geo",
                    geo_polygon=models.GeoPolygon(
                        exterior=models.GeoLineString(
                            points=[
                                models.GeoPoint(lon=0, lat=0),
                                models.GeoPoint(lon=1, lat=0),
                                models.GeoPoint(lon=0, lat=0),
                            ]
                        )
                    ),
                )
            ]
        )
        with pytest.raises(
            TypeError, match="geo_polygon filters are not supported by an Edge store"
        ):
            writer.search("x", query_filter=polygon)
        assert store.delete_collection("c") is True
        assert not store.collection_exists("c")
        assert store.delete_collection("c") is False
        assert not (Path(store.path) / "collections" / "c").exists()

"""lfm_llamaindex.LFMColBERTRetriever over a collection written by lfm_qdrant.MultiVectorWriter."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from lfm_core import CollectionError, DenseEncoder, InputError, LateInteractionEncoder
from lfm_llamaindex import LFMColBERTRetriever
from lfm_qdrant import MultiVectorWriter

TEXTS = [
    "The Seine flows through Paris.",
    "Photosynthesis happens in chloroplasts.",
    "Berlin lies on the Spree river.",
    "Tokyo is the capital of Japan.",
    "The Danube crosses Vienna and Budapest.",
    "Mitochondria make most of a cell's energy.",
]
METADATA = [{"topic": "geo" if i % 3 != 1 else "bio", "rank": i} for i in range(len(TEXTS))]
QUERY = "which river flows through Paris?"

BACKENDS = ["memory", "path"] + (["url"] if os.environ.get("QDRANT_URL") else [])


def make_client(backend: str, tmp_path: Path, *, is_async: bool = False):
    cls = AsyncQdrantClient if is_async else QdrantClient
    if backend == "memory":
        return cls(":memory:")
    if backend == "path":
        return cls(path=str(tmp_path / "qdrant"))
    return cls(url=os.environ["QDRANT_URL"])


@pytest.fixture(scope="module", params=BACKENDS)
def writer(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
) -> Iterator[MultiVectorWriter]:
    # Module scope: no test writes, so one collection per backend serves them all.
    client = make_client(request.param, tmp_path_factory.mktemp("li-retriever"))
    name = f"li-{uuid.uuid4().hex[:8]}"
    w = MultiVectorWriter(client, name, dense=tiny_dense, colbert=tiny_colbert)
    w.add(TEXTS, ids=list(range(len(TEXTS))), metadata=METADATA)
    yield w
    if request.param == "url":
        client.delete_collection(name)
    client.close()


def contents(nodes: list[NodeWithScore]) -> list[tuple[str, str, dict]]:
    return [(n.node.node_id, n.node.get_content(), n.node.metadata) for n in nodes]


def scores(nodes: list[NodeWithScore]) -> object:
    # To 1e-5: the query is encoded again on each call, and float sums may differ in the
    # last bits from one forward pass to the next.
    return pytest.approx([n.score for n in nodes], rel=1e-5)


def test_nodes_are_the_writers_search_hits(writer: MultiVectorWriter) -> None:
    nodes = LFMColBERTRetriever(writer, similarity_top_k=4, prefetch_limit=5).retrieve(QUERY)
    hits = writer.search(QUERY, limit=4, prefetch_limit=5)
    assert len(nodes) == 4
    assert all(isinstance(n.node, TextNode) for n in nodes)
    assert contents(nodes) == [
        (str(h.id), h.payload["text"], {k: v for k, v in h.payload.items() if k != "text"})
        for h in hits
    ]
    assert [h.score for h in hits] == scores(nodes)


def test_nodes_carry_the_added_text_and_metadata(writer: MultiVectorWriter) -> None:
    nodes = LFMColBERTRetriever(writer, similarity_top_k=len(TEXTS)).retrieve(QUERY)
    by_id = {n.node.node_id: n.node for n in nodes}
    assert set(by_id) == {str(i) for i in range(len(TEXTS))}
    for i, text in enumerate(TEXTS):
        assert by_id[str(i)].get_content() == text
        # The rest of the payload, with the chunk record (span in the document).
        metadata = dict(by_id[str(i)].metadata)
        assert metadata.pop("_lfm")["start"] == 0
        assert metadata == METADATA[i]
    scores = [n.score for n in nodes]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("top_k", [1, 3])
def test_similarity_top_k(writer: MultiVectorWriter, top_k: int) -> None:
    assert len(LFMColBERTRetriever(writer, similarity_top_k=top_k).retrieve(QUERY)) == top_k


def test_query_filter_reaches_qdrant(writer: MultiVectorWriter) -> None:
    only_bio = models.Filter(
        must=[models.FieldCondition(key="topic", match=models.MatchValue(value="bio"))]
    )
    nodes = LFMColBERTRetriever(writer, similarity_top_k=10, query_filter=only_bio).retrieve(QUERY)
    assert sorted(n.node.node_id for n in nodes) == ["1", "4"]


def test_aretrieve_on_a_sync_client_matches_retrieve(writer: MultiVectorWriter) -> None:
    retriever = LFMColBERTRetriever(writer, similarity_top_k=3)
    got = asyncio.run(retriever.aretrieve(QUERY))
    want = retriever.retrieve(QUERY)
    assert contents(got) == contents(want)
    assert [n.score for n in want] == scores(got)


@pytest.mark.parametrize("backend", ["memory", "path"])
def test_aretrieve_awaits_the_async_client(
    backend: str,
    tmp_path: Path,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> tuple[list, list, list[int]]:
        client = make_client(backend, tmp_path, is_async=True)
        writer = MultiVectorWriter(client, "docs", dense=tiny_dense, colbert=tiny_colbert)
        await writer.aadd(TEXTS, ids=list(range(len(TEXTS))), metadata=METADATA)
        # Where the client's search runs: the event loop's thread for a real async call.
        threads: list[int] = []
        original = client.query_points

        async def spy(*args, **kwargs):
            threads.append(threading.get_ident())
            return await original(*args, **kwargs)

        monkeypatch.setattr(client, "query_points", spy)
        retriever = LFMColBERTRetriever(writer, similarity_top_k=3)
        nodes = await retriever.aretrieve(QueryBundle(QUERY))
        hits = await writer.asearch(QUERY, limit=3)
        await client.close()
        assert threads[0] == threading.get_ident()
        return nodes, hits, threads

    nodes, hits, threads = asyncio.run(run())
    assert len(threads) == 2
    assert [n.node.node_id for n in nodes] == [str(h.id) for h in hits]
    assert [h.score for h in hits] == scores(nodes)
    metadata = {k: v for k, v in nodes[0].node.metadata.items() if k != "_lfm"}
    assert metadata == METADATA[int(nodes[0].node.node_id)]


def test_sync_retrieve_on_an_async_client_says_what_to_do(
    tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    writer = MultiVectorWriter(
        AsyncQdrantClient(":memory:"), "docs", dense=tiny_dense, colbert=tiny_colbert
    )
    with pytest.raises(TypeError, match="aretrieve"):
        LFMColBERTRetriever(writer).retrieve(QUERY)


class StubWriter:
    """Returns fixed hits; for payloads a MultiVectorWriter would never write."""

    client = None
    collection_name = "foreign"

    def __init__(self, hits: list[models.ScoredPoint]):
        self.hits = hits

    def search(self, query, limit=10, prefetch_limit=100, query_filter=None, *, chunks=False):
        return self.hits[:limit]

    async def asearch(
        self, query, limit=10, prefetch_limit=100, query_filter=None, *, chunks=False
    ):
        return self.hits[:limit]


@pytest.mark.parametrize("payload", [{"title": "no text key"}, {"text": 42}, None])
def test_hit_without_text_payload_is_a_collection_error(payload: dict | None) -> None:
    writer = StubWriter([models.ScoredPoint(id=7, version=0, score=1.0, payload=payload)])
    with pytest.raises(
        CollectionError, match=r"point 7 in collection 'foreign'.*payload\[\"text\"\]"
    ):
        LFMColBERTRetriever(writer).retrieve(QUERY)


def test_no_hits_give_no_nodes() -> None:
    assert LFMColBERTRetriever(StubWriter([])).retrieve(QUERY) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"similarity_top_k": 0}, InputError, "similarity_top_k must be >= 1"),
        ({"similarity_top_k": "3"}, TypeError, "similarity_top_k must be an int"),
        ({"similarity_top_k": True}, TypeError, "similarity_top_k must be an int"),
        ({"similarity_top_k": 20, "prefetch_limit": 10}, InputError, "prefetch_limit=10"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        LFMColBERTRetriever(StubWriter([]), **kwargs)


def test_a_non_writer_is_refused() -> None:
    with pytest.raises(TypeError, match="lfm_qdrant.MultiVectorWriter"):
        LFMColBERTRetriever(QdrantClient(":memory:"))  # type: ignore[arg-type]

"""lfm_langchain.LFMQdrantVectorStore: LangChain's standard suite, indexing API, our search."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.indexing import InMemoryRecordManager, index
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from lfm_core import InputError
from lfm_langchain import LFMColBERTRetriever, LFMEmbeddings, LFMQdrantVectorStore
from lfm_qdrant import EdgeStore, MultiVectorWriter

TEXTS = [
    "Orders ship within two days of payment.",
    "Refunds reach your card within a week.",
    "Reset your password from the login page.",
    "Los pedidos salen del almacén en dos días.",
    "Our support team answers within one hour.",
    "Invoices can be downloaded as PDF files.",
]


# The suite mixes sync and async tests; the mark is for the async ones.
@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'")
class TestStandardSuiteOnEdge(VectorStoreIntegrationTests):
    """LangChain's 25 standard tests (sync and async) on the embedded store."""

    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[VectorStore]:  # type: ignore[override]
        edge = EdgeStore(tmp_path / "store")
        yield LFMQdrantVectorStore(edge, "standard", embedding=self.get_embeddings())
        edge.close()


@pytest.fixture
def edge(tmp_path):
    store = EdgeStore(tmp_path / "store")
    yield store
    store.close()


@pytest.fixture
def hybrid(edge, tiny_dense, tiny_colbert):
    store = LFMQdrantVectorStore(edge, "faq", embedding=tiny_dense, colbert=tiny_colbert)
    metadatas = [{"lang": "es" if i == 3 else "en", "n": i} for i in range(len(TEXTS))]
    store.add_texts(TEXTS, metadatas, ids=[f"faq-{i}" for i in range(len(TEXTS))])
    return store


def test_hybrid_search_equals_the_writers_search(hybrid, tiny_dense, tiny_colbert):
    writer = MultiVectorWriter(hybrid.writer.client, "faq", dense=tiny_dense, colbert=tiny_colbert)
    for query in ["when will my order ship?", "pedido", "password"]:
        docs = hybrid.similarity_search_with_score(query, k=4, mode="hybrid")
        hits = writer.search(query, limit=4, mode="hybrid")
        assert [d.id for d, _ in docs] == [f"faq-{TEXTS.index(h.payload['text'])}" for h in hits]
        assert [s for _, s in docs] == pytest.approx([h.score for h in hits])
        assert [d.page_content for d, _ in docs] == [h.payload["text"] for h in hits]


def test_modes_filters_and_the_retriever_view(hybrid):
    only_es = hybrid.similarity_search(
        "pedido", k=5, filter={"must": [{"key": "lang", "match": {"value": "es"}}]}
    )
    assert [d.id for d in only_es] == ["faq-3"]
    assert only_es[0].metadata == {"lang": "es", "n": 3}
    for mode in ("dense", "colbert"):
        docs = hybrid.similarity_search("refund", k=3, mode=mode)
        assert len(docs) == 3
    with pytest.raises(InputError, match="mode must be one of"):
        hybrid.similarity_search("refund", mode="sparse")
    retriever = hybrid.as_retriever(search_kwargs={"k": 2, "mode": "colbert"})
    assert [d.id for d in retriever.invoke("refund")] == [
        d.id for d in hybrid.similarity_search("refund", k=2, mode="colbert")
    ]
    # The retriever over the same writer builds the same documents (ids as given).
    ours = LFMColBERTRetriever(writer=hybrid.writer, k=3).invoke("refund")
    assert [d.id for d in ours] == [d.id for d in hybrid.similarity_search("refund", k=3)]


def test_dense_leg_by_vector_and_mmr(hybrid, tiny_dense):
    vector = tiny_dense.encode_queries(["refund"])[0].tolist()
    by_vector = hybrid.similarity_search_by_vector(vector, k=3)
    dense = hybrid.similarity_search("refund", k=3, mode="dense")
    assert [d.id for d in by_vector] == [d.id for d in dense]
    plain = hybrid.max_marginal_relevance_search("refund", k=3, fetch_k=6, lambda_mult=1.0)
    assert [d.id for d in plain] == [d.id for d in dense]
    diverse = hybrid.max_marginal_relevance_search("refund", k=3, fetch_k=6, lambda_mult=0.0)
    assert len(diverse) == 3 and diverse[0].id == dense[0].id
    assert hybrid.as_retriever(search_type="mmr", search_kwargs={"k": 2}).invoke("refund")
    with pytest.raises(InputError, match="lambda_mult"):
        hybrid.max_marginal_relevance_search("refund", lambda_mult=2.0)
    with pytest.raises(InputError, match="shape"):
        hybrid.similarity_search_by_vector([0.1, 0.2])


def test_async_twins_match_sync(hybrid, tiny_dense):
    async def run():
        docs = await hybrid.asimilarity_search("refund", k=3)
        by_id = await hybrid.aget_by_ids(["faq-1", "missing", "faq-0"])
        vector = await hybrid.embeddings.aembed_query("refund")  # type: ignore[union-attr]
        by_vector = await hybrid.asimilarity_search_by_vector(vector, k=2)
        mmr = await hybrid.amax_marginal_relevance_search("refund", k=2, lambda_mult=1.0)
        await hybrid.adelete(["faq-5"])
        return docs, by_id, by_vector, mmr

    docs, by_id, by_vector, mmr = asyncio.run(run())
    assert [d.id for d in docs] == [d.id for d in hybrid.similarity_search("refund", k=3)]
    assert [d.id for d in by_id] == ["faq-1", "faq-0"]
    assert [d.id for d in by_vector] == [d.id for d in mmr]
    assert hybrid.writer.count() == len(TEXTS) - 1


def test_async_client(tiny_dense, tiny_colbert):
    async def run():
        client = AsyncQdrantClient(":memory:")
        store = LFMQdrantVectorStore(client, "faq", embedding=tiny_dense, colbert=tiny_colbert)
        ids = await store.aadd_texts(TEXTS[:3], ids=["a", "b", "c"])
        docs = await store.asimilarity_search("refund", k=3)
        got = await store.aget_by_ids(["c"])
        await store.adelete(["a"])
        return ids, docs, got, await store.writer.acount()

    ids, docs, got, count = asyncio.run(run())
    assert ids == ["a", "b", "c"] and sorted(d.id for d in docs) == ids
    assert got == [Document(id="c", page_content=TEXTS[2], metadata={})]
    assert count == 2


def _corpus(changed: bool) -> list[Document]:
    docs = [
        Document(page_content=f"text of {name}", metadata={"source": f"{name}.md"})
        for name in ("a", "b", "c", "d")
    ]
    if changed:
        docs[1] = Document(page_content="text of b, revised", metadata={"source": "b.md"})
        del docs[3]
    return docs


@pytest.mark.parametrize("cleanup", ["full", "incremental"])
def test_index_with_a_record_manager_leaves_no_stale_point(edge, cleanup):
    store = LFMQdrantVectorStore(edge, "kb", embedding=DeterministicFakeEmbedding(size=8))
    records = InMemoryRecordManager(namespace="kb")
    records.create_schema()
    first = index(
        _corpus(False),
        records,
        store,
        cleanup=cleanup,
        source_id_key="source",
        key_encoder="sha256",
    )
    assert first["num_added"] == 4 and store.writer.count() == 4
    again = index(
        _corpus(False),
        records,
        store,
        cleanup=cleanup,
        source_id_key="source",
        key_encoder="sha256",
    )
    assert again["num_added"] == 0 and again["num_skipped"] == 4
    new = _corpus(True)
    # Incremental cleanup removes the old versions of the sources it sees, and cannot know
    # that d.md is gone: the source is deleted by indexing nothing for it.
    result = index(
        new, records, store, cleanup=cleanup, source_id_key="source", key_encoder="sha256"
    )
    assert result["num_added"] == 1
    if cleanup == "incremental":
        assert store.writer.count() == 4
        store.delete(records.list_keys(group_ids=["d.md"]))
        records.delete_keys(records.list_keys(group_ids=["d.md"]))
    assert store.writer.count() == 3
    stored = store.get_by_ids(records.list_keys())
    assert sorted(d.page_content for d in stored) == sorted(d.page_content for d in new)
    assert sorted(d.id for d in stored) == sorted(records.list_keys())


def test_from_texts_and_from_documents(tmp_path, tiny_dense, tiny_colbert):
    store = LFMQdrantVectorStore.from_texts(
        TEXTS[:2],
        LFMEmbeddings(encoder=tiny_dense),
        ids=["x", "y"],
        path=tmp_path / "a",
        collection_name="c",
        colbert=tiny_colbert,
    )
    assert [d.id for d in store.get_by_ids(["y", "x"])] == ["y", "x"]
    assert store.writer.dense is tiny_dense  # LFMEmbeddings unwrapped: the real model record
    store.writer.client.close()
    client = QdrantClient(":memory:")
    docs = [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(TEXTS)]
    other = LFMQdrantVectorStore.from_documents(
        docs, DeterministicFakeEmbedding(size=8), client=client, collection_name="c"
    )
    assert other.writer.count() == len(TEXTS)
    assert other._select_relevance_score_fn()(1.0) == pytest.approx(0.0)
    with pytest.raises(InputError, match="exactly one of path="):
        LFMQdrantVectorStore.from_texts(["t"], DeterministicFakeEmbedding(size=8))
    with pytest.raises(InputError, match="collection_name"):
        LFMQdrantVectorStore.from_texts(["t"], DeterministicFakeEmbedding(size=8), client=client)


def test_a_foreign_embeddings_is_recorded_by_class_and_width(edge):
    store = LFMQdrantVectorStore(edge, "fake", embedding=DeterministicFakeEmbedding(size=8))
    record = store.writer._record.dense
    assert record.model.endswith("DeterministicFakeEmbedding") and record.dim == 8
    # Another width cannot write this collection.
    from lfm_core import CollectionError

    with pytest.raises(CollectionError):
        LFMQdrantVectorStore(edge, "fake", embedding=DeterministicFakeEmbedding(size=4))


@pytest.mark.parametrize(
    ("texts", "metadatas", "ids", "error", "match"),
    [
        (["ok", None], None, None, TypeError, r"texts\[1\] is None"),
        (["ok", "b"], [{}, {"blob": b"raw"}], None, TypeError, r"metadata\[1\]\['blob'\]"),
        (["ok", "b"], [{}, {"x": {1, 2}}], None, TypeError, "has no JSON form"),
        (["ok", "b"], [{}, {"f": float("nan")}], None, InputError, "JSON cannot hold"),
        (["ok", "b"], [{}, {"text": "x"}], None, InputError, "'text' key"),
        (["ok", "b"], [{}, {"lc_id": "x"}], None, InputError, "'lc_id'"),
        (["ok", "b"], [{}, "x"], None, TypeError, r"metadatas\[1\] is a str"),
        (["ok", "b"], [{}], None, InputError, "metadatas has 1 items"),
        (["ok", "b"], None, ["a", 7], TypeError, r"ids\[1\] is a int"),
        (["ok", "b"], None, ["a", "a"], InputError, "unique"),
        (["ok", "b"], None, ["a"], InputError, "ids has 1 items"),
    ],
)
def test_bad_input_is_refused_before_any_write(edge, texts, metadatas, ids, error, match):
    store = LFMQdrantVectorStore(edge, "bad", embedding=DeterministicFakeEmbedding(size=8))
    with pytest.raises(error, match=match):
        store.add_texts(texts, metadatas, ids=ids)
    with pytest.raises(error, match=match):
        asyncio.run(store.aadd_texts(texts, metadatas, ids=ids))
    assert store.writer.count() == 0


def test_other_misuse_is_refused(hybrid):
    with pytest.raises(InputError, match="delete\\(\\) needs the ids"):
        hybrid.delete()
    with pytest.raises(TypeError, match="unknown search arguments"):
        hybrid.similarity_search("x", score_threshold=0.5)
    with pytest.raises(TypeError, match=r"ids\[0\] is a int"):
        hybrid.get_by_ids([3])  # type: ignore[list-item]
    with pytest.raises(NotImplementedError, match="MaxSim"):
        hybrid.similarity_search_with_relevance_scores("x")
    with pytest.raises(TypeError, match="embedding is a"):
        LFMQdrantVectorStore(hybrid.writer.client, "faq", embedding=np.zeros(3))  # type: ignore[arg-type]
    assert hybrid.writer.count() == len(TEXTS)


def test_metadata_is_converted_and_round_trips(edge):
    store = LFMQdrantVectorStore(edge, "meta", embedding=DeterministicFakeEmbedding(size=8))
    store.add_texts(
        ["t"], [{"n": np.int64(3), "tags": ("a", "b"), "nested": {"k": 1.5}}], ids=["1"]
    )
    (doc,) = store.get_by_ids(["1"])
    assert doc == Document(
        id="1", page_content="t", metadata={"n": 3, "tags": ["a", "b"], "nested": {"k": 1.5}}
    )
    hit = store.similarity_search(
        "t",
        k=1,
        filter=models.Filter(
            must=[models.FieldCondition(key="n", match=models.MatchValue(value=3))]
        ),
    )
    assert hit == [doc]


def test_the_example_runs_offline(
    tmp_path, tiny_dense_dir, tiny_colbert_dir, tiny_dense, tiny_colbert, capsys
):
    path = Path(__file__).resolve().parents[2] / "examples" / "langchain_vectorstore.py"
    spec = importlib.util.spec_from_file_location("langchain_vectorstore_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = [str(tiny_dense_dir), "--colbert", str(tiny_colbert_dir), "--store", str(tmp_path)]
    hits = example.main([*argv, "--device", "cpu"])
    assert len(hits) == 2
    out = capsys.readouterr().out
    assert "'num_added': 4" in out and "'num_added': 1" in out and "'num_deleted': 2" in out
    with EdgeStore(tmp_path) as edge:
        assert MultiVectorWriter(edge, "faq", dense=tiny_dense, colbert=tiny_colbert).count() == 3

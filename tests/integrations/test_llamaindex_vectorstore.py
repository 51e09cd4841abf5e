"""lfm_llamaindex.LFMQdrantVectorStore through LlamaIndex's public flows, filters and errors."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from lfm_core import CollectionError, InputError
from lfm_llamaindex import LFMColBERTRetriever, LFMEmbedding, LFMQdrantVectorStore
from lfm_qdrant import MultiVectorWriter

DOCS = {
    "ship": "Orders ship within two days of payment. Tracking numbers arrive by email. "
    "Express delivery costs extra and takes one day.",
    "refund": "Refunds reach your card within a week. Returns are free for thirty days. "
    "Keep the receipt for every return.",
    "password": "Reset your password from the login page. The link expires after an hour. "
    "Ask support if the email never comes.",
}


@pytest.fixture
def embed(tiny_dense):
    return LFMEmbedding(encoder=tiny_dense)


def _documents(changed: bool = False) -> list[Document]:
    texts = dict(DOCS)
    if changed:
        texts["refund"] = "Refunds now reach your card within three days."
    return [Document(text=t, doc_id=k, metadata={"topic": k}) for k, t in texts.items()]


def _index(client, embed, tiny_colbert):
    store = LFMQdrantVectorStore(
        collection_name="kb", client=client, colbert=tiny_colbert, embed_model=embed
    )
    index = VectorStoreIndex.from_documents(
        _documents(),
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed,
        transformations=[SentenceSplitter(chunk_size=16, chunk_overlap=0)],
    )
    return store, index


def test_index_insert_delete_ref_doc_and_query_engine(client, embed, tiny_colbert):
    store, index = _index(client, embed, tiny_colbert)
    writer = store.writer
    per_doc = {k: writer.count({"must": [{"key": "doc_id", "match": {"value": k}}]}) for k in DOCS}
    assert all(n >= 2 for n in per_doc.values()), per_doc  # several nodes per document
    assert writer.count() == sum(per_doc.values())
    index.insert(Document(text="Invoices can be downloaded as PDF files.", doc_id="invoice"))
    assert writer.count() == sum(per_doc.values()) + 1
    index.delete_ref_doc("refund")
    assert writer.count() == sum(per_doc.values()) + 1 - per_doc["refund"]
    left = {n.ref_doc_id for n in store.get_nodes()}
    assert left == {"ship", "password", "invoice"}
    nodes = index.as_retriever(similarity_top_k=3).retrieve("when does my order ship?")
    assert len(nodes) == 3 and all(n.node.ref_doc_id in left for n in nodes)
    assert all(n.node.metadata.get("topic") in (None, "ship", "password") for n in nodes)
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query("password?")
    assert len(response.source_nodes) == 2


def test_hybrid_query_equals_the_writers_search(client, embed, tiny_dense, tiny_colbert):
    _, index = _index(client, embed, tiny_colbert)
    writer = MultiVectorWriter(client, "kb", dense=tiny_dense, colbert=tiny_colbert)
    for question in ["when does my order ship?", "refund receipt", "login link"]:
        hits = writer.search(question, limit=4, mode="hybrid")
        nodes = index.as_retriever(similarity_top_k=4).retrieve(question)
        assert [n.node.node_id for n in nodes] == [_node_id(h) for h in hits]
        assert [n.score for n in nodes] == pytest.approx([h.score for h in hits], abs=1e-4)
    # The retriever over the same collection returns the same nodes.
    view = LFMColBERTRetriever(writer=writer, similarity_top_k=4).retrieve("refund receipt")
    ours = index.as_retriever(similarity_top_k=4).retrieve("refund receipt")
    assert [n.node.node_id for n in view] == [n.node.node_id for n in ours]


def _node_id(point) -> str:
    return json.loads(point.payload["_node_content"])["id_"]


def test_modes_mmr_and_node_ids(client, embed, tiny_colbert):
    store, _ = _index(client, embed, tiny_colbert)
    vector = embed.get_query_embedding("refund")
    dense = store.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=3), mode="dense")
    colbert = store.query(VectorStoreQuery(query_str="refund", similarity_top_k=3), mode="colbert")
    assert len(dense.ids) == len(colbert.ids) == 3
    relevance = store.query(
        VectorStoreQuery(
            query_embedding=vector,
            similarity_top_k=3,
            mode=VectorStoreQueryMode.MMR,
            mmr_threshold=1.0,
        )
    )
    assert relevance.ids == dense.ids
    only = store.query(
        VectorStoreQuery(
            query_embedding=vector, query_str="refund", similarity_top_k=5, node_ids=dense.ids[1:]
        )
    )
    assert sorted(only.ids) == sorted(dense.ids[1:])
    in_doc = store.query(
        VectorStoreQuery(
            query_embedding=vector, query_str="x", similarity_top_k=50, doc_ids=["ship"]
        )
    )
    assert {n.ref_doc_id for n in in_doc.nodes} == {"ship"}
    with pytest.raises(InputError, match="query mode 'sparse'"):
        store.query(VectorStoreQuery(query_embedding=vector, mode=VectorStoreQueryMode.SPARSE))
    with pytest.raises(InputError, match="query_str"):
        store.query(VectorStoreQuery(query_embedding=vector))
    got = store.get_nodes(node_ids=[dense.ids[2], "missing", dense.ids[0]])
    assert [n.node_id for n in got] == [dense.ids[2], dense.ids[0]]


def test_ingestion_pipeline_rerun_adds_only_changed_nodes(client, embed, tiny_colbert):
    store = LFMQdrantVectorStore(collection_name="kb", client=client, colbert=tiny_colbert)

    def pipeline() -> IngestionPipeline:
        return IngestionPipeline(
            transformations=[SentenceSplitter(chunk_size=16, chunk_overlap=0), embed],
            docstore=docstore,
            vector_store=store,
        )

    docstore = SimpleDocumentStore()
    first = pipeline().run(documents=_documents())
    total = store.writer.count()
    assert total == len(first)
    assert pipeline().run(documents=_documents()) == []  # unchanged: nothing re-embedded
    assert store.writer.count() == total
    second = pipeline().run(documents=_documents(changed=True))
    assert {n.ref_doc_id for n in second} == {"refund"}
    refund_now = store.writer.count({"must": [{"key": "doc_id", "match": {"value": "refund"}}]})
    assert refund_now == len(second)
    old_refund = sum(1 for n in first if n.ref_doc_id == "refund")
    assert store.writer.count() == total - old_refund + len(second)


FILTER_NODES = [
    TextNode(
        id_=f"n{i}",
        text=f"node {i}",
        metadata=meta,
        embedding=[float(i + 1), 1.0, 0.5, 0.25],
    )
    for i, meta in enumerate(
        [
            {"lang": "en", "year": 2020, "score": 0.5, "tags": ["a", "b"], "day": "2024-01-01"},
            {"lang": "es", "year": 2022, "score": 1.5, "tags": ["b"], "day": "2024-06-01"},
            {"lang": "en", "year": 2024, "score": 2.5, "tags": [], "day": "2025-01-01"},
            {"lang": "fr", "year": 2021, "tags": ["a", "c"], "title": "Hello World"},
        ]
    )
]


def _f(key, op, value):
    return MetadataFilter(key=key, operator=op, value=value)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([_f("lang", FilterOperator.EQ, "en")], {"n0", "n2"}),
        ([_f("score", FilterOperator.EQ, 1.5)], {"n1"}),
        ([_f("lang", FilterOperator.NE, "en")], {"n1", "n3"}),
        ([_f("year", FilterOperator.GT, 2021)], {"n1", "n2"}),
        ([_f("year", FilterOperator.GTE, 2021)], {"n1", "n2", "n3"}),
        ([_f("score", FilterOperator.LT, 1.5)], {"n0"}),
        ([_f("score", FilterOperator.LTE, 1.5)], {"n0", "n1"}),
        ([_f("day", FilterOperator.GTE, "2024-06-01")], {"n1", "n2"}),
        ([_f("lang", FilterOperator.IN, ["es", "fr"])], {"n1", "n3"}),
        ([_f("lang", FilterOperator.NIN, ["es", "fr"])], {"n0", "n2"}),
        ([_f("tags", FilterOperator.ANY, ["c", "b"])], {"n0", "n1", "n3"}),
        ([_f("tags", FilterOperator.ALL, ["a", "b"])], {"n0"}),
        ([_f("tags", FilterOperator.CONTAINS, "a")], {"n0", "n3"}),
        ([_f("title", FilterOperator.TEXT_MATCH, "World")], {"n3"}),
        ([_f("tags", FilterOperator.IS_EMPTY, None)], {"n2"}),
        ([_f("score", FilterOperator.IS_EMPTY, None)], {"n3"}),
    ],
)
def test_every_filter_operator_qdrant_expresses(client, filters, expected):
    store = LFMQdrantVectorStore(collection_name="f", client=client)
    store.add(FILTER_NODES)
    got = {n.node_id for n in store.get_nodes(filters=MetadataFilters(filters=filters))}
    assert got == expected
    result = store.query(
        VectorStoreQuery(
            query_embedding=[1.0, 1.0, 1.0, 1.0],
            similarity_top_k=10,
            filters=MetadataFilters(filters=filters),
        )
    )
    assert set(result.ids) == expected


def test_filter_conditions_nest(client):
    store = LFMQdrantVectorStore(collection_name="f", client=client)
    store.add(FILTER_NODES)
    es_or_fr = MetadataFilters(
        filters=[_f("lang", FilterOperator.EQ, "es"), _f("lang", FilterOperator.EQ, "fr")],
        condition=FilterCondition.OR,
    )
    nested = MetadataFilters(filters=[es_or_fr, _f("year", FilterOperator.GT, 2021)])
    assert {n.node_id for n in store.get_nodes(filters=nested)} == {"n1"}
    negated = MetadataFilters(filters=[es_or_fr], condition=FilterCondition.NOT)
    assert {n.node_id for n in store.get_nodes(filters=negated)} == {"n0", "n2"}
    store.delete_nodes(filters=negated)
    assert {n.node_id for n in store.get_nodes()} == {"n1", "n3"}
    store.delete_nodes(node_ids=["n3"])
    assert [n.node_id for n in store.get_nodes()] == ["n1"]
    store.clear()
    assert store.get_nodes() == [] and store.writer.count() == 0


@pytest.mark.parametrize(
    ("op", "value", "match"),
    [
        (FilterOperator.TEXT_MATCH_INSENSITIVE, "hello", "cannot express this operator"),
        (FilterOperator.GT, "not a date", "ISO 8601"),
        (FilterOperator.IN, [1.5, 2.5], "lists of str or of int"),
        (FilterOperator.IN, "en", "non-empty list"),
    ],
)
def test_filters_qdrant_cannot_express_are_refused(client, op, value, match):
    store = LFMQdrantVectorStore(collection_name="f", client=client)
    store.add(FILTER_NODES)
    filters = MetadataFilters(filters=[_f("lang", op, value)])
    with pytest.raises(InputError, match=match):
        store.get_nodes(filters=filters)
    with pytest.raises(InputError, match=match):
        store.delete_nodes(filters=filters)
    assert store.writer.count() == len(FILTER_NODES)


@pytest.mark.parametrize(
    ("node", "error", "match"),
    [
        (TextNode(id_="x", text="t"), InputError, "has no embedding"),
        (
            TextNode(id_="x", text="t", metadata={"b": b"raw"}, embedding=[1.0] * 4),
            TypeError,
            r"nodes\[1\] \(id 'x'\)\.metadata\['b'\] is a bytes",
        ),
        (
            TextNode(id_="x", text="t", metadata={"f": float("nan")}, embedding=[1.0] * 4),
            InputError,
            "JSON cannot hold",
        ),
        (TextNode(id_="x", text="t", embedding=[1.0] * 3), InputError, "shape"),
        (TextNode(id_="n1", text="t", embedding=[1.0] * 4), InputError, "unique"),
    ],
)
def test_bad_nodes_are_refused_before_any_write(client, node, error, match):
    store = LFMQdrantVectorStore(collection_name="f", client=client)
    store.add(FILTER_NODES[:1])
    with pytest.raises(error, match=match):
        store.add([FILTER_NODES[1], node])
    assert store.writer.count() == 1


def test_async_twins(client, embed, tiny_colbert):
    store = LFMQdrantVectorStore(collection_name="a", client=client, colbert=tiny_colbert)
    nodes = [
        TextNode(id_=f"a{i}", text=t, embedding=embed.get_text_embedding(t))
        for i, t in enumerate(DOCS.values())
    ]

    async def run():
        ids = await store.async_add(nodes)
        query = VectorStoreQuery(
            query_embedding=embed.get_query_embedding("refund"), query_str="refund"
        )
        result = await store.aquery(query)
        sync = store.query(query)
        got = await store.aget_nodes(node_ids=["a2"])
        await store.adelete_nodes(node_ids=["a0"])
        return ids, result, sync, got

    ids, result, sync, got = asyncio.run(run())
    assert ids == ["a0", "a1", "a2"]
    assert result.ids == sync.ids and result.similarities == sync.similarities
    assert [n.get_content() for n in got] == [list(DOCS.values())[2]]
    assert store.writer.count() == 2


def test_construction_and_the_model_record(tmp_path, client, embed, tiny_colbert):
    with pytest.raises(InputError, match="exactly one of client="):
        LFMQdrantVectorStore(collection_name="c")
    with pytest.raises(InputError, match="mode must be one of"):
        LFMQdrantVectorStore(collection_name="c", client=client, mode="sparse")
    empty = LFMQdrantVectorStore(collection_name="nothing", client=client)
    assert empty.get_nodes() == [] and empty.writer is None
    assert empty.query(VectorStoreQuery(query_str="x")).ids == []
    store = LFMQdrantVectorStore(collection_name="rec", client=client, embed_model=embed)
    store.add([TextNode(id_="x", text="t", embedding=embed.get_text_embedding("t"))])
    assert store.writer.dense.model_name == embed.encoder.model_name
    # A store on the same collection reads the record; other widths are refused.
    again = LFMQdrantVectorStore(collection_name="rec", client=client)
    assert [n.node_id for n in again.get_nodes()] == ["x"]
    with pytest.raises(InputError, match="shape"):
        again.add([TextNode(id_="y", text="u", embedding=[1.0, 2.0])])
    by_path = LFMQdrantVectorStore(collection_name="p", path=tmp_path / "p", colbert=tiny_colbert)
    by_path.add([TextNode(id_="x", text="t", embedding=embed.get_text_embedding("t"))])
    with pytest.raises(CollectionError):
        LFMQdrantVectorStore(collection_name="p", client=by_path.client).add(
            [TextNode(id_="y", text="u", embedding=embed.get_text_embedding("u"))]
        )
    by_path.client.close()


def test_the_example_runs_offline(tmp_path, tiny_dense_dir, tiny_colbert_dir, capsys):
    path = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_vectorstore.py"
    spec = importlib.util.spec_from_file_location("llamaindex_vectorstore_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = [str(tiny_dense_dir), "--colbert", str(tiny_colbert_dir), "--store", str(tmp_path)]
    hits = example.main([*argv, "--device", "cpu"])
    assert len(hits) == 2
    out = capsys.readouterr().out
    assert "nodes written: 3" in out and "nodes written after one change: 1" in out

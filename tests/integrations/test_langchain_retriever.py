"""lfm_langchain.LFMColBERTRetriever: a LangChain retriever over an lfm_qdrant collection."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.language_models import FakeListLLM
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnablePassthrough
from qdrant_client import AsyncQdrantClient, models

from lfm_core import InputError
from lfm_langchain import LFMColBERTRetriever
from lfm_qdrant import EdgeStore, MultiVectorWriter

TEXTS = [
    "Orders ship within two days of payment.",
    "Refunds reach your card within a week.",
    "Reset your password from the login page.",
    "Los pedidos salen del almacén en dos días.",
    "Our support team answers within one hour.",
    "Invoices can be downloaded as PDF files.",
]


@pytest.fixture
def writer(tmp_path, tiny_dense, tiny_colbert):
    store = EdgeStore(tmp_path / "store")
    w = MultiVectorWriter(store, "faq", dense=tiny_dense, colbert=tiny_colbert)
    w.add(TEXTS, metadata=[{"lang": "es" if i == 3 else "en", "n": i} for i in range(len(TEXTS))])
    yield w
    store.close()


def test_invoke_returns_the_writers_hits_as_documents(writer):
    retriever = LFMColBERTRetriever(writer=writer, k=3)
    docs = retriever.invoke("when will my order ship?")
    hits = writer.search("when will my order ship?", limit=3)
    assert [d.id for d in docs] == [str(h.id) for h in hits]
    assert [d.page_content for d in docs] == [h.payload["text"] for h in hits]
    for doc, hit in zip(docs, hits, strict=True):
        assert doc.metadata == {
            "lang": hit.payload["lang"],
            "n": hit.payload["n"],
            "relevance_score": pytest.approx(hit.score),
            "_lfm": hit.payload["_lfm"],  # the chunk record: its span in the document
        }


def test_filters_modes_and_per_call_arguments(writer):
    spanish = {"must": [{"key": "lang", "match": {"value": "es"}}]}
    only_es = LFMColBERTRetriever(writer=writer, k=5, query_filter=spanish).invoke("pedido")
    assert [d.metadata["lang"] for d in only_es] == ["es"]
    flt = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=4))])
    docs = LFMColBERTRetriever(writer=writer, mode="dense").invoke("x", filter=flt, k=2)
    assert len(docs) == 2 and all(d.metadata["n"] >= 4 for d in docs)
    dense_scores = [h.score for h in writer.search("x", limit=2, query_filter=flt, mode="dense")]
    assert [d.metadata["relevance_score"] for d in docs] == pytest.approx(dense_scores)


def test_ainvoke_matches_invoke(writer):
    retriever = LFMColBERTRetriever(writer=writer, k=4)
    sync = retriever.invoke("refund")
    asynchronous = asyncio.run(retriever.ainvoke("refund"))
    assert [d.id for d in asynchronous] == [d.id for d in sync]


def test_in_an_lcel_chain_with_a_fake_llm(writer):
    retriever = LFMColBERTRetriever(writer=writer, k=2)
    prompt = PromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")
    llm = FakeListLLM(responses=["It ships in two days."])

    def join(docs: list[Document]) -> str:
        return "\n".join(d.page_content for d in docs)

    chain = {"context": retriever | join, "question": RunnablePassthrough()} | prompt
    rendered = chain.invoke("when will my order ship?").to_string()
    expected = join(retriever.invoke("when will my order ship?"))
    assert expected in rendered and "Question: when will my order ship?" in rendered
    assert (chain | llm).invoke("when will my order ship?") == "It ships in two days."


def test_bad_arguments(writer):
    with pytest.raises(TypeError, match="lfm_qdrant.MultiVectorWriter"):
        LFMColBERTRetriever(writer=object())
    with pytest.raises(InputError, match="prefetch_limit=3 is below k=5"):
        LFMColBERTRetriever(writer=writer, k=5, prefetch_limit=3)
    with pytest.raises(TypeError, match="query is None"):
        LFMColBERTRetriever(writer=writer).invoke(None)


def test_an_async_client_needs_ainvoke(tiny_dense):
    async_writer = MultiVectorWriter(AsyncQdrantClient(":memory:"), "c", dense=tiny_dense)
    with pytest.raises(TypeError, match="ainvoke"):
        LFMColBERTRetriever(writer=async_writer).invoke("x")

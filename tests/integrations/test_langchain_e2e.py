"""End to end with real components: langchain-qdrant's QdrantVectorStore on an in-process
Qdrant, filled through LFMEmbeddings (real all-MiniLM-L6-v2), then reranked by
LFMColBERTReranker inside ContextualCompressionRetriever; and the example script."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_qdrant import QdrantVectorStore
from qdrant_client import QdrantClient, models

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_langchain import LFMColBERTReranker, LFMEmbeddings

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_rag.py"

CORPUS = [
    "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen.",
    "The Treaty of Westphalia ended the Thirty Years' War in 1648.",
    "A central bank raises interest rates to slow down inflation.",
    "Rust's borrow checker rejects data races at compile time.",
    "The Mariana Trench is the deepest known point of Earth's oceans.",
    "Sourdough bread rises thanks to wild yeast and lactic acid bacteria.",
    "Marathon runners build their aerobic base with long, slow runs.",
    "Jupiter's Great Red Spot is a storm larger than the Earth.",
]
# (query, index in CORPUS of the one passage that answers it)
QUERIES = [
    ("How do plants make sugar from sunlight?", 0),
    ("Which peace settlement closed the Thirty Years' War?", 1),
    ("Why would a central bank increase rates?", 2),
    ("What is the deepest place in the ocean?", 4),
]
BACKENDS = ["memory", "path"] + (["url"] if os.environ.get("QDRANT_URL") else [])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantClient]:
    """In-process Qdrant (in memory, or on disk), or a server when QDRANT_URL is set."""
    if request.param == "memory":
        client = QdrantClient(":memory:")
    elif request.param == "path":
        client = QdrantClient(path=str(tmp_path / "qdrant"))
    else:
        client = QdrantClient(url=os.environ["QDRANT_URL"])
    yield client
    client.close()


@pytest.fixture
def collection(client: QdrantClient) -> Iterator[str]:
    name = f"lfm_langchain_{uuid.uuid4().hex}"
    yield name
    client.delete_collection(name)


@pytest.fixture
def seen_texts(minilm: DenseEncoder, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the shared MiniLM encoder is asked to embed as a document."""
    seen: list[str] = []
    original = minilm.encode_documents

    def spy(texts: list[str], **kwargs: Any) -> np.ndarray:
        seen.extend(texts)
        return original(texts, **kwargs)

    monkeypatch.setattr(minilm, "encode_documents", spy)
    return seen


def _ids(texts: list[str]) -> list[str]:
    # langchain-qdrant's default ids are random uuid4s: re-adding would duplicate points.
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, text)) for text in texts]


def _store(client: QdrantClient, name: str, embeddings: LFMEmbeddings) -> QdrantVectorStore:
    # Sized from embeddings.dim: langchain-qdrant's "dummy_text" probe is not needed.
    client.create_collection(
        name, vectors_config=models.VectorParams(size=embeddings.dim, distance="Cosine")
    )
    return QdrantVectorStore(client, name, embedding=embeddings, validate_collection_config=False)


async def test_dense_retrieval_then_colbert_rerank(
    client: QdrantClient,
    collection: str,
    minilm: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
    seen_texts: list[str],
) -> None:
    store = _store(client, collection, LFMEmbeddings(encoder=minilm))
    documents = [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(CORPUS)]
    store.add_documents(documents, ids=_ids(CORPUS))
    store.add_documents(documents, ids=_ids(CORPUS))  # idempotent with our ids

    assert client.count(collection).count == len(CORPUS)
    assert seen_texts == CORPUS * 2  # the documents, untouched, and no probe

    base = store.as_retriever(search_kwargs={"k": 4})
    retriever = ContextualCompressionRetriever(
        base_compressor=LFMColBERTReranker(encoder=tiny_colbert, top_n=2), base_retriever=base
    )
    for query, answer in QUERIES:
        candidates = base.invoke(query)
        assert candidates[0].metadata["n"] == answer  # real MiniLM finds the answer first

        got = retriever.invoke(query)

        texts = [doc.page_content for doc in candidates]
        expected = tiny_colbert.rerank(query, texts, top_k=2)
        assert [doc.page_content for doc in got] == [texts[i] for i, _ in expected]
        for doc, (i, score) in zip(got, expected, strict=True):
            assert doc.metadata == {
                **candidates[i].metadata,
                "relevance_score": pytest.approx(score, abs=1e-5),
            }
        assert await retriever.ainvoke(query) == got


def test_from_texts_probe_is_answered_with_the_model_dimension(
    minilm: DenseEncoder, seen_texts: list[str]
) -> None:
    # langchain-qdrant sizes a new collection by embedding the text "dummy_text".
    store = QdrantVectorStore.from_texts(
        CORPUS, LFMEmbeddings(encoder=minilm), ids=_ids(CORPUS), location=":memory:"
    )

    info = store.client.get_collection(store.collection_name)
    assert info.config.params.vectors[""].size == minilm.dim  # the unnamed vector
    assert seen_texts.count("dummy_text") == 1
    assert [text for text in seen_texts if text != "dummy_text"] == CORPUS
    store.client.close()


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("langchain_rag_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_offline(
    minilm_dir: Path,
    tiny_colbert_dir: Path,
    minilm: DenseEncoder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = _load_example()
    qdrant_path = str(tmp_path / "qdrant")
    argv = [str(minilm_dir), "--colbert", str(tiny_colbert_dir), "--device", "cpu"]

    assert example.main([*argv, "--qdrant-path", qdrant_path]) == 0

    out = capsys.readouterr().out
    assert "Top 3 by ColBERT MaxSim:" in out
    assert "Question: How do plants make energy from light?" in out
    client = QdrantClient(path=qdrant_path)
    assert client.count("lfm_langchain_rag").count == len(example.PASSAGES)
    # A second run finds the collection: it is reopened and validated, not recreated.
    store = example.open_store(client, "lfm_langchain_rag", LFMEmbeddings(encoder=minilm))
    assert store.client.count("lfm_langchain_rag").count == len(example.PASSAGES)
    client.close()

"""End to end with real LlamaIndex components, real MiniLM weights and no network.

The ColBERT model here is all-MiniLM-L6-v2 in a PyLate layout (``[unused0]``/``[unused1]``
markers, a 384 -> 128 projection with orthonormal rows), so MaxSim ranks by real token
similarity and the tests can check that the right passage answers the question.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient
from safetensors.torch import save_file

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_llamaindex import LFMColBERTRerank, LFMColBERTRetriever, LFMEmbedding
from lfm_qdrant import MultiVectorWriter

# llama-index-vector-stores-qdrant asks local Qdrant for payload indexes, which it ignores.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_rag.py"

PASSAGES = {
    "seine": "The Seine river flows through Paris before reaching the English Channel.",
    "photo": "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "everest": "Mount Everest is the highest mountain on Earth above sea level.",
    "python": "Python is a programming language popular for data analysis.",
    "wall": "The Great Wall of China stretches across many northern provinces.",
    "coffee": "Espresso is brewed by forcing hot water through finely ground coffee.",
    "mars": "Mars is called the red planet because of iron oxide on its surface.",
    "violin": "A violin has four strings tuned in perfect fifths.",
}
QUESTIONS = {
    "Which river runs through Paris?": "seine",
    "What is the tallest mountain in the world?": "everest",
}


def write_minilm_colbert(minilm_dir: Path, folder: Path) -> Path:
    """all-MiniLM-L6-v2 as a PyLate ColBERT checkpoint (files linked, a new 1_Dense)."""
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        (folder / name).symlink_to(minilm_dir / name)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    settings = {
        "query_prefix": "[unused0]",
        "document_prefix": "[unused1]",
        "query_length": 32,
        "document_length": 256,
    }
    (folder / "config_sentence_transformers.json").write_text(json.dumps(settings))
    dense = folder / "1_Dense"
    dense.mkdir()
    (dense / "config.json").write_text(
        json.dumps(
            {
                "in_features": 384,
                "out_features": 128,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    # Orthonormal rows: a projection that keeps most of MiniLM's token geometry.
    q, _ = torch.linalg.qr(torch.randn(384, 128, generator=torch.Generator().manual_seed(0)))
    save_file({"linear.weight": q.T.contiguous()}, str(dense / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def minilm_colbert_dir(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_minilm_colbert(minilm_dir, tmp_path_factory.mktemp("minilm-colbert"))


@pytest.fixture(scope="module")
def minilm_colbert(minilm_colbert_dir: Path) -> LateInteractionEncoder:
    return LateInteractionEncoder.from_pretrained(minilm_colbert_dir, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def no_global_models() -> Iterator[None]:
    """Fail if anything falls back to LlamaIndex's global LLM or embedding (OpenAI).

    Module scope and autouse: in place before the index and the writer are built.
    """

    def refuse(self):
        raise AssertionError("used llama_index Settings' global model; pass it explicitly")

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.setattr(type(Settings), "llm", property(refuse))
        patch.setattr(type(Settings), "embed_model", property(refuse))
        yield


@pytest.fixture(scope="module")
def client() -> Iterator[QdrantClient]:
    qdrant = QdrantClient(":memory:")
    yield qdrant
    qdrant.close()


@pytest.fixture(scope="module")
def index(client: QdrantClient, minilm: DenseEncoder) -> VectorStoreIndex:
    store = QdrantVectorStore(client=client, collection_name=f"li-{uuid.uuid4().hex[:8]}")
    # "key" is bookkeeping: kept out of the text the models read, as in the writer's payload.
    documents = [
        Document(id_=key, text=text, metadata={"key": key}, excluded_embed_metadata_keys=["key"])
        for key, text in PASSAGES.items()
    ]
    return VectorStoreIndex.from_documents(
        documents,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=LFMEmbedding(encoder=minilm, embed_batch_size=4),
    )


@pytest.fixture(scope="module")
def writer(
    client: QdrantClient, minilm: DenseEncoder, minilm_colbert: LateInteractionEncoder
) -> MultiVectorWriter:
    # Without the lexical leg: the retriever's hybrid is then dense prefetch + MaxSim, which
    # the comparison with LFMColBERTRerank over the dense hits below relies on.
    w = MultiVectorWriter(
        client, f"li-{uuid.uuid4().hex[:8]}", dense=minilm, colbert=minilm_colbert, lexical=False
    )
    w.add(list(PASSAGES.values()), ids=list(PASSAGES), metadata=[{"key": k} for k in PASSAGES])
    return w


def keys(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.metadata["key"] for n in nodes]


@pytest.mark.parametrize(("question", "answer"), QUESTIONS.items())
def test_query_engine_with_rerank_answers_from_the_right_passage(
    index: VectorStoreIndex, minilm_colbert: LateInteractionEncoder, question: str, answer: str
) -> None:
    rerank = LFMColBERTRerank(encoder=minilm_colbert, top_n=2)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=5, node_postprocessors=[rerank])
    response = engine.query(question)
    assert len(response.source_nodes) == 2
    assert keys(response.source_nodes)[0] == answer
    # MockLLM echoes its prompt: the right passage is what the LLM was given to read.
    assert PASSAGES[answer] in str(response)


@pytest.mark.parametrize(("question", "answer"), QUESTIONS.items())
def test_colbert_retriever_answers_the_same_question(
    writer: MultiVectorWriter,
    index: VectorStoreIndex,
    minilm_colbert: LateInteractionEncoder,
    question: str,
    answer: str,
) -> None:
    retriever = LFMColBERTRetriever(writer, similarity_top_k=2, prefetch_limit=5)
    response = RetrieverQueryEngine.from_args(retriever, llm=MockLLM()).query(question)
    assert keys(response.source_nodes)[0] == answer
    assert PASSAGES[answer] in str(response)
    # Same models, same 5 dense candidates: MaxSim inside Qdrant and the reranker agree.
    rerank = LFMColBERTRerank(encoder=minilm_colbert, top_n=2)
    dense_hits = index.as_retriever(similarity_top_k=5).retrieve(question)
    reranked = rerank.postprocess_nodes(dense_hits, query_str=question)
    assert keys(response.source_nodes) == keys(reranked)
    assert [n.score for n in response.source_nodes] == pytest.approx(
        [n.score for n in reranked], rel=1e-4
    )


def test_async_engine_over_retriever_and_rerank_matches_sync(
    writer: MultiVectorWriter, minilm_colbert: LateInteractionEncoder
) -> None:
    question = next(iter(QUESTIONS))
    engine = RetrieverQueryEngine.from_args(
        LFMColBERTRetriever(writer, similarity_top_k=5),
        llm=MockLLM(),
        node_postprocessors=[LFMColBERTRerank(encoder=minilm_colbert, top_n=3)],
    )
    sync = engine.query(question)
    asynchronous = asyncio.run(engine.aquery(question))
    assert keys(asynchronous.source_nodes) == keys(sync.source_nodes)
    assert str(asynchronous) == str(sync)


def test_example_script_runs_offline(
    tiny_dense_dir: Path, tiny_colbert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("llamaindex_rag_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = [str(tiny_dense_dir), str(tiny_colbert_dir), "--device", "cpu", "--k", "5"]
    assert example.main([*argv, "--top-n", "3"]) == 0
    out = capsys.readouterr().out
    # Tiny random models: the ranking means nothing, but both pipelines rerank the same
    # five dense candidates with the same MaxSim, so they must print the same three lines.
    hits = [line for line in out.splitlines() if line[:4] in (" 1. ", " 2. ", " 3. ")]
    assert len(hits) == 6
    assert hits[:3] == hits[3:]
    assert "Query: How do plants make energy from light?" in out

"""The client libraries users already have, unmodified, against a live `serve` on 127.0.0.1.

One server for the module: the tiny LFM2.5-Embedding-layout checkpoint (it has the
``query: `` / ``document: `` prompts, so a query sent as a document is caught) and the tiny
ColBERT checkpoint. Every client's vectors are compared with the in-process encoders
(1e-5) and every rerank order with ``encoder.rerank``. docs/server.md's client table
points at these tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder
from tests.lfm_retrieval.test_server_process import start_server, stop

KEY = "clients-test-key"
KEY_ENV = "LFM_CLIENTS_TEST_KEY"
QUERIES = ["where is my parcel?", "Wann öffnet das Café?"]
DOCS = [
    "Orders ship within two business days.",
    "Das Café öffnet um neun Uhr.",
    "Gift cards never expire.",
    "Refunds go back to the original card.",
    "La tienda cierra los domingos.",
]
ATOL = 1e-5


@pytest.fixture(scope="module")
def server(tiny_dense_dir: Path, tiny_colbert_dir: Path) -> Iterator[str]:
    proc, url = start_server(
        [
            "--embedding-model",
            str(tiny_dense_dir),
            "--colbert-model",
            str(tiny_colbert_dir),
            "--api-key-env",
            KEY_ENV,
        ],
        {KEY_ENV: KEY},
    )
    yield url
    stop(proc)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def dense_name(tiny_dense_dir: Path) -> str:
    return tiny_dense_dir.name


def test_prompts_differ_on_this_checkpoint(tiny_dense: DenseEncoder) -> None:
    # Otherwise every query-prompt assertion below would pass with the document prompt.
    gap = np.abs(tiny_dense.encode_queries(QUERIES) - tiny_dense.encode_documents(QUERIES)).max()
    assert gap > 1e-3


# ------------------------------------------------------------------ openai


def test_openai_sdk_query_alias_gets_the_query_prompt(
    server: str, tiny_dense: DenseEncoder, dense_name: str
) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    query = client.embeddings.create(model=f"{dense_name}:query", input=QUERIES)
    docs = client.embeddings.create(model=f"{dense_name}:document", input=DOCS)
    np.testing.assert_allclose(
        [d.embedding for d in query.data], tiny_dense.encode_queries(QUERIES), atol=ATOL
    )
    np.testing.assert_allclose(
        [d.embedding for d in docs.data], tiny_dense.encode_documents(DOCS), atol=ATOL
    )
    # Hand-prefixed: one prompt, not "document: query: ...".
    hand = client.embeddings.create(model=dense_name, input=[f"query: {QUERIES[0]}"])
    np.testing.assert_allclose(
        hand.data[0].embedding, tiny_dense.encode_queries(QUERIES[:1])[0], atol=ATOL
    )
    assert client.models.retrieve(f"{dense_name}:query").id == dense_name  # no server path shown


def test_openai_sdk_errors_say_what_to_do(
    server: str, tiny_dense: DenseEncoder, dense_name: str
) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
        client.embeddings.create(model="x", input=[[1, 2, 3]])
    long = "word " * (tiny_dense.max_length + 5)
    with pytest.raises(openai.BadRequestError, match=r"input\[1\] has \d+ tokens") as caught:
        client.embeddings.create(model=dense_name, input=["short", long])
    assert caught.value.code == "input_too_long"
    cut = client.embeddings.create(
        model=dense_name, input=["short", long], extra_body={"truncate": True}
    )
    assert len(cut.data) == 2


def test_langchain_openai_one_instance_per_side(
    server: str, tiny_dense: DenseEncoder, dense_name: str
) -> None:
    from langchain_openai import OpenAIEmbeddings

    def make(side: str) -> OpenAIEmbeddings:
        return OpenAIEmbeddings(
            model=f"{dense_name}:{side}",
            base_url=f"{server}/v1",
            api_key=KEY,  # type: ignore[arg-type]
            check_embedding_ctx_length=False,
            max_retries=0,
        )

    queries, documents = make("query"), make("document")
    np.testing.assert_allclose(
        queries.embed_query(QUERIES[0]), tiny_dense.encode_queries(QUERIES[:1])[0], atol=ATOL
    )
    np.testing.assert_allclose(
        documents.embed_documents(DOCS), tiny_dense.encode_documents(DOCS), atol=ATOL
    )
    np.testing.assert_allclose(
        asyncio.run(queries.aembed_query(QUERIES[1])),
        tiny_dense.encode_queries(QUERIES[1:])[0],
        atol=ATOL,
    )


def test_llamaindex_openai_like_one_instance_per_side(
    server: str, tiny_dense: DenseEncoder, dense_name: str
) -> None:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    def make(side: str) -> OpenAILikeEmbedding:
        return OpenAILikeEmbedding(
            model_name=f"{dense_name}:{side}", api_base=f"{server}/v1", api_key=KEY, max_retries=0
        )

    queries, documents = make("query"), make("document")
    np.testing.assert_allclose(
        queries.get_query_embedding(QUERIES[0]),
        tiny_dense.encode_queries(QUERIES[:1])[0],
        atol=ATOL,
    )
    np.testing.assert_allclose(
        documents.get_text_embedding_batch(DOCS), tiny_dense.encode_documents(DOCS), atol=ATOL
    )
    # The wiring docs/server.md shows: documents indexed with one, the retriever queries
    # with the other; the top hit is the in-process dense ranking's.
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS], embed_model=documents)
    hits = index.as_retriever(embed_model=queries, similarity_top_k=1).retrieve(QUERIES[1])
    best = int(
        np.argmax(tiny_dense.encode_documents(DOCS) @ tiny_dense.encode_queries(QUERIES[1:])[0])
    )
    assert hits[0].node.get_content() == DOCS[best]


# ------------------------------------------------------------------ cohere


def test_cohere_v1_embed(server: str, tiny_dense: DenseEncoder, dense_name: str) -> None:
    import cohere

    client = cohere.Client(api_key=KEY, base_url=server)
    floats = client.embed(texts=QUERIES, model=dense_name, input_type="search_query")
    assert floats.response_type == "embeddings_floats"
    np.testing.assert_allclose(floats.embeddings, tiny_dense.encode_queries(QUERIES), atol=ATOL)
    typed = client.embed(
        texts=DOCS,
        model=dense_name,
        input_type="search_document",
        embedding_types=["float", "ubinary", "binary", "base64"],
    )
    expected = tiny_dense.encode_documents(DOCS)
    np.testing.assert_allclose(typed.embeddings.float_, expected, atol=ATOL)
    packed = np.packbits(expected > 0, axis=-1)
    assert np.array_equal(np.array(typed.embeddings.ubinary), packed)
    assert np.array_equal(np.array(typed.embeddings.binary), packed.astype(int) - 128)
    decoded = np.frombuffer(base64.b64decode(typed.embeddings.base64[0]), dtype="<f4")
    np.testing.assert_allclose(decoded, expected[0], atol=ATOL)


def test_cohere_v2_embed_and_errors_in_cohere_shape(
    server: str, tiny_dense: DenseEncoder, dense_name: str
) -> None:
    import cohere
    from cohere.core.api_error import ApiError

    client = cohere.ClientV2(api_key=KEY, base_url=server)
    response = client.embed(texts=DOCS, model=dense_name, input_type="clustering")
    np.testing.assert_allclose(
        response.embeddings.float_, tiny_dense.encode_documents(DOCS), atol=ATOL
    )
    query = client.embed(texts=QUERIES, model=dense_name, input_type="search_query")
    np.testing.assert_allclose(
        query.embeddings.float_, tiny_dense.encode_queries(QUERIES), atol=ATOL
    )
    with pytest.raises(ApiError) as caught:
        client.embed(
            texts=DOCS, model=dense_name, input_type="search_document", embedding_types=["int8"]
        )
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict) and "error" not in caught.value.body
    assert caught.value.body["param"] == "embedding_types[0]"
    assert "int8" in caught.value.body["message"]
    with pytest.raises(ApiError) as missing:
        client.embed(texts=DOCS, model="embed-english-v3.0", input_type="search_document")
    assert missing.value.status_code == 404 and "not served here" in missing.value.body["message"]
    long = "word " * (tiny_dense.max_length + 5)
    with pytest.raises(ApiError, match="truncate='END'"):
        client.embed(texts=[long], model=dense_name, input_type="search_document", truncate="NONE")
    cut = client.embed(texts=[long], model=dense_name, input_type="search_document")
    assert cut.meta is not None and cut.meta.warnings and "texts[0]" in cut.meta.warnings[0]


def test_cohere_v2_rerank_is_the_in_process_maxsim_order(
    server: str, tiny_colbert: LateInteractionEncoder, tiny_colbert_dir: Path
) -> None:
    import cohere

    client = cohere.ClientV2(api_key=KEY, base_url=server)
    expected = tiny_colbert.rerank(QUERIES[1], DOCS)
    response = client.rerank(model=tiny_colbert_dir.name, query=QUERIES[1], documents=DOCS)
    assert [r.index for r in response.results] == [i for i, _ in expected]
    np.testing.assert_allclose(
        [r.relevance_score for r in response.results], [s for _, s in expected], atol=1e-4
    )
    top = client.rerank(model=tiny_colbert_dir.name, query=QUERIES[1], documents=DOCS, top_n=2)
    assert [r.index for r in top.results] == [i for i, _ in expected[:2]]


def test_cohere_v1_rerank(
    server: str, tiny_colbert: LateInteractionEncoder, tiny_colbert_dir: Path
) -> None:
    import cohere

    client = cohere.Client(api_key=KEY, base_url=server)
    response = client.rerank(
        model=tiny_colbert_dir.name, query=QUERIES[0], documents=DOCS, return_documents=True
    )
    expected = tiny_colbert.rerank(QUERIES[0], DOCS)
    assert [r.index for r in response.results] == [i for i, _ in expected]
    assert response.results[0].document is not None
    assert response.results[0].document.text == DOCS[expected[0][0]]


def test_langchain_cohere_embeddings_and_rerank(
    server: str,
    tiny_dense: DenseEncoder,
    dense_name: str,
    tiny_colbert: LateInteractionEncoder,
    tiny_colbert_dir: Path,
) -> None:
    from langchain_cohere import CohereEmbeddings, CohereRerank
    from langchain_core.documents import Document

    embeddings = CohereEmbeddings(model=dense_name, cohere_api_key=KEY, base_url=server)  # type: ignore[call-arg]
    np.testing.assert_allclose(
        embeddings.embed_query(QUERIES[0]), tiny_dense.encode_queries(QUERIES[:1])[0], atol=ATOL
    )
    np.testing.assert_allclose(
        embeddings.embed_documents(DOCS), tiny_dense.encode_documents(DOCS), atol=ATOL
    )
    reranker = CohereRerank(
        model=tiny_colbert_dir.name,
        cohere_api_key=KEY,  # type: ignore[arg-type]
        base_url=server,
        top_n=3,
    )
    ranked = reranker.compress_documents([Document(page_content=d) for d in DOCS], QUERIES[1])
    expected = tiny_colbert.rerank(QUERIES[1], DOCS)[:3]
    assert [d.page_content for d in ranked] == [DOCS[i] for i, _ in expected]


def test_llamaindex_cohere_rerank(
    server: str, tiny_colbert: LateInteractionEncoder, tiny_colbert_dir: Path
) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    reranker = CohereRerank(
        model=tiny_colbert_dir.name, api_key=KEY, base_url=server, top_n=len(DOCS)
    )
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in DOCS]
    ranked = reranker.postprocess_nodes(nodes, query_str=QUERIES[0])
    expected = tiny_colbert.rerank(QUERIES[0], DOCS)
    assert [n.node.get_content() for n in ranked] == [DOCS[i] for i, _ in expected]


# ------------------------------------------------------------------ our adapters, remote


def test_lfm_adapters_in_remote_mode_equal_in_process(
    server: str, tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from lfm_langchain import LFMColBERTReranker, LFMEmbeddings
    from lfm_llamaindex import LFMColBERTRerank, LFMEmbedding

    lc = LFMEmbeddings(base_url=server, api_key=KEY, max_batch_size=2)  # 3 requests for DOCS
    np.testing.assert_allclose(
        lc.embed_query(QUERIES[0]), tiny_dense.encode_queries(QUERIES[:1])[0], atol=ATOL
    )
    np.testing.assert_allclose(
        lc.embed_documents(DOCS), tiny_dense.encode_documents(DOCS), atol=ATOL
    )
    np.testing.assert_allclose(
        asyncio.run(lc.aembed_documents(DOCS)), tiny_dense.encode_documents(DOCS), atol=ATOL
    )
    assert lc.dim == tiny_dense.dim

    li = LFMEmbedding(base_url=f"{server}/v1", api_key=KEY)
    np.testing.assert_allclose(
        asyncio.run(li.aget_query_embedding(QUERIES[1])),
        tiny_dense.encode_queries(QUERIES[1:])[0],
        atol=ATOL,
    )
    np.testing.assert_allclose(
        li.get_text_embedding_batch(DOCS), tiny_dense.encode_documents(DOCS), atol=ATOL
    )

    expected = tiny_colbert.rerank(QUERIES[1], DOCS)
    lc_rerank = LFMColBERTReranker(base_url=server, api_key=KEY, top_n=None)
    ranked = lc_rerank.compress_documents([Document(page_content=d) for d in DOCS], QUERIES[1])
    assert [d.page_content for d in ranked] == [DOCS[i] for i, _ in expected]
    ranked = asyncio.run(
        lc_rerank.acompress_documents([Document(page_content=d) for d in DOCS], QUERIES[1])
    )
    assert [d.page_content for d in ranked] == [DOCS[i] for i, _ in expected]
    li_rerank = LFMColBERTRerank(base_url=server, api_key=KEY, top_n=3)
    nodes = li_rerank.postprocess_nodes(
        [NodeWithScore(node=TextNode(text=d)) for d in DOCS], query_str=QUERIES[1]
    )
    assert [n.node.get_content() for n in nodes] == [DOCS[i] for i, _ in expected[:3]]


def test_remote_mode_truncates_long_texts_as_in_process(
    server: str, tiny_dense: DenseEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    from lfm_langchain import LFMEmbeddings

    texts = ["short", "word " * (tiny_dense.max_length + 20)]
    with caplog.at_level("WARNING", logger="lfm_core"):
        got = LFMEmbeddings(base_url=server, api_key=KEY).embed_documents(texts)
    np.testing.assert_allclose(got, tiny_dense.encode_documents(texts), atol=ATOL)
    assert "1 of 2 texts were longer" in caplog.text


def test_remote_errors_name_the_problem(server: str) -> None:
    from lfm_core import InputError
    from lfm_core.remote import RemoteServiceError
    from lfm_langchain import LFMEmbeddings

    with pytest.raises(RemoteServiceError, match="API key") as caught:
        LFMEmbeddings(base_url=server, api_key="wrong").embed_query("x")
    assert caught.value.status == 401
    with pytest.raises(RemoteServiceError, match="not served here"):
        LFMEmbeddings(base_url=server, api_key=KEY, model_name="nope").embed_query("x")
    with pytest.raises(InputError, match="device cannot be given with base_url"):
        LFMEmbeddings(base_url=server, device="cpu")


def test_remote_mode_never_imports_torch(server: str, tiny_dense: DenseEncoder) -> None:
    script = f"""
import json, sys
from lfm_langchain import LFMColBERTReranker, LFMEmbeddings
from lfm_llamaindex import LFMColBERTRerank, LFMEmbedding
emb = LFMEmbeddings(base_url={server!r}, api_key={KEY!r})
vector = emb.embed_query({QUERIES[0]!r})
LFMColBERTReranker(base_url={server!r}, api_key={KEY!r}).compress_documents([], "q")
LFMEmbedding(base_url={server!r}, api_key={KEY!r}).get_query_embedding("q")
print(json.dumps({{"vector": vector, "loaded": sorted(
    m for m in ("torch", "transformers", "tokenizers", "safetensors") if m in sys.modules)}}))
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "integrations")])}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    np.testing.assert_allclose(
        result["vector"], tiny_dense.encode_queries(QUERIES[:1])[0], atol=ATOL
    )


# ------------------------------------------------------------------ LangChain's standard suite

try:
    from langchain_tests.integration_tests import EmbeddingsIntegrationTests
except ImportError:  # pragma: no cover - langchain-tests is in the dev extra
    EmbeddingsIntegrationTests = object  # type: ignore[misc,assignment]


@pytest.mark.anyio
class TestRemoteLFMEmbeddingsStandard(EmbeddingsIntegrationTests):  # type: ignore[misc,valid-type]
    """langchain-tests' integration suite on ``LFMEmbeddings(base_url=...)``."""

    @pytest.fixture(autouse=True)
    def _use_server(self, server: str) -> None:
        self._server = server

    @property
    def embeddings_class(self) -> Any:
        from lfm_langchain import LFMEmbeddings

        return LFMEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"base_url": self._server, "api_key": KEY}

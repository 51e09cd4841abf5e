"""LFMColBERTReranker: MaxSim order and scores, top_n/threshold, copies, bad input, async."""

from __future__ import annotations

import asyncio
import copy
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_langchain import LFMColBERTReranker, LFMEmbeddings

pytestmark = pytest.mark.anyio

QUERY = "how do plants turn sunlight into energy?"
TEXTS = [
    "Photosynthesis converts light energy into chemical energy in chloroplasts.",
    "The stock market fell sharply on Tuesday.",
    "Mitochondria release energy from glucose through cellular respiration.",
    "A recipe for lemon cake with a crisp sugar glaze.",
    "Leaves absorb red and blue light with chlorophyll.",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def documents() -> list[Document]:
    return [
        Document(page_content=text, metadata={"source": f"doc{i}", "tags": ["x"]}, id=f"id{i}")
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture
def full_ranking(tiny_colbert: LateInteractionEncoder) -> list[tuple[int, float]]:
    """The core's own ranking of TEXTS, best first: what the adapter must reproduce."""
    return tiny_colbert.rerank(QUERY, TEXTS)


def _ranked(docs: Any) -> list[tuple[str, float]]:
    return [(doc.page_content, doc.metadata["relevance_score"]) for doc in docs]


@pytest.mark.parametrize("top_n", [None, 1, 3, 10])
def test_order_and_scores_are_the_cores_maxsim_ranking(
    tiny_colbert: LateInteractionEncoder,
    documents: list[Document],
    full_ranking: list[tuple[int, float]],
    top_n: int | None,
) -> None:
    reranker = LFMColBERTReranker(encoder=tiny_colbert, top_n=top_n)

    got = _ranked(reranker.compress_documents(documents, QUERY))

    expected = [(TEXTS[i], pytest.approx(score, abs=1e-5)) for i, score in full_ranking]
    assert got == expected[:top_n]
    assert [score for _, score in got] == sorted((score for _, score in got), reverse=True)


def test_top_n_defaults_to_the_shared_default_of_five(
    tiny_colbert: LateInteractionEncoder, documents: list[Document]
) -> None:
    more = documents * 2  # 10 candidates
    assert len(LFMColBERTReranker(encoder=tiny_colbert).compress_documents(more, QUERY)) == 5


def test_score_threshold_drops_documents_below_it(
    tiny_colbert: LateInteractionEncoder,
    documents: list[Document],
    full_ranking: list[tuple[int, float]],
) -> None:
    threshold = full_ranking[1][1]  # keeps exactly the two best (scores are distinct)
    reranker = LFMColBERTReranker(encoder=tiny_colbert, top_n=None, score_threshold=threshold)

    got = reranker.compress_documents(documents, QUERY)

    assert [doc.page_content for doc in got] == [TEXTS[i] for i, _ in full_ranking[:2]]


def test_returns_scored_copies_and_leaves_the_inputs_untouched(
    tiny_colbert: LateInteractionEncoder, documents: list[Document]
) -> None:
    before = copy.deepcopy(documents)

    got = LFMColBERTReranker(encoder=tiny_colbert, top_n=None).compress_documents(documents, QUERY)

    assert documents == before
    assert all("relevance_score" not in doc.metadata for doc in documents)
    originals = {doc.id: doc for doc in documents}
    for doc in got:
        original = originals[doc.id]
        assert doc is not original and doc.metadata is not original.metadata
        assert doc.page_content == original.page_content
        score = doc.metadata.pop("relevance_score")
        assert type(score) is float
        assert doc.metadata == original.metadata


async def test_no_documents_gives_empty_list(tiny_colbert: LateInteractionEncoder) -> None:
    reranker = LFMColBERTReranker(encoder=tiny_colbert)

    assert reranker.compress_documents([], QUERY) == []
    assert await reranker.acompress_documents([], QUERY) == []


@pytest.mark.parametrize(
    ("documents", "query", "match"),
    [
        ([Document(page_content="a"), "b"], QUERY, r"documents\[1\] is a str; expected .*Document"),
        ([None], QUERY, r"documents\[0\] is None; expected"),
        ([Document(page_content="a")], None, "query is None; expected str"),
    ],
)
def test_wrong_types_raise_type_error_naming_the_position(
    tiny_colbert: LateInteractionEncoder, documents: Any, query: Any, match: str
) -> None:
    with pytest.raises(TypeError, match=match):
        LFMColBERTReranker(encoder=tiny_colbert).compress_documents(documents, query)


def test_model_name_forwards_loading_options(
    tiny_colbert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    original = LateInteractionEncoder.from_pretrained

    def spy(name_or_path: str, **kwargs: Any) -> LateInteractionEncoder:
        seen.append({"name_or_path": name_or_path, **kwargs})
        return original(name_or_path, **kwargs)

    monkeypatch.setattr(LateInteractionEncoder, "from_pretrained", spy)
    reranker = LFMColBERTReranker(
        model_name=tiny_colbert_dir, device="cpu", max_batch_size=2, max_tokens_per_batch=256
    )

    keys = ("name_or_path", "device", "max_batch_size", "max_tokens_per_batch")
    assert [{k: call[k] for k in keys} for call in seen] == [
        {
            "name_or_path": str(tiny_colbert_dir),
            "device": "cpu",
            "max_batch_size": 2,
            "max_tokens_per_batch": 256,
        }
    ]
    assert reranker.model_name == str(tiny_colbert_dir)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_name": "other"}, "model_name= or encoder=, not both"),
        ({"device": "cuda"}, "device='cuda' does not match the encoder passed in"),
        ({"top_n": 0}, "greater than 0"),
        ({"k": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options_are_rejected(
    tiny_colbert: LateInteractionEncoder, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        LFMColBERTReranker(encoder=tiny_colbert, **kwargs)


def test_dense_encoder_is_rejected(tiny_dense: DenseEncoder) -> None:
    with pytest.raises(TypeError, match="encoder is DenseEncoder; expected"):
        LFMColBERTReranker(encoder=tiny_dense)


async def test_async_runs_off_the_event_loop(
    tiny_colbert: LateInteractionEncoder,
    documents: list[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The model waits for an event only the event loop can set: a blocked loop times out.
    released = threading.Event()
    original = tiny_colbert.rerank

    def gated(*args: Any, **kwargs: Any) -> list[tuple[int, float]]:
        if not released.wait(timeout=10):
            raise AssertionError("the event loop was blocked while reranking")
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_colbert, "rerank", gated)
    reranker = LFMColBERTReranker(encoder=tiny_colbert)

    task = asyncio.ensure_future(reranker.acompress_documents(documents, QUERY))
    await asyncio.sleep(0.05)
    released.set()

    assert await task == reranker.compress_documents(documents, QUERY)


async def test_works_inside_contextual_compression_retriever(
    tiny_colbert: LateInteractionEncoder, minilm: DenseEncoder
) -> None:
    store = InMemoryVectorStore(LFMEmbeddings(encoder=minilm))
    store.add_texts(TEXTS)
    base = store.as_retriever(search_kwargs={"k": 4})
    retriever = ContextualCompressionRetriever(
        base_compressor=LFMColBERTReranker(encoder=tiny_colbert, top_n=2), base_retriever=base
    )

    got = retriever.invoke(QUERY)

    candidates = [doc.page_content for doc in base.invoke(QUERY)]
    expected = [
        (candidates[i], pytest.approx(s, abs=1e-5))
        for i, s in tiny_colbert.rerank(QUERY, candidates, top_k=2)
    ]
    assert _ranked(got) == expected
    assert _ranked(await retriever.ainvoke(QUERY)) == expected

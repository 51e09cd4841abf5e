"""Concurrency: one loaded encoder shared by 8 threads, and by asyncio tasks.

Every call must give exactly what the same call gives serially, in input order, with no
deadlock: every wait has a timeout, and the threads are daemons, so a hang fails the
test instead of freezing the run. The encoders' prefetch thread is exercised by cutting
inputs into small chunks, and queries and documents (different tokenizer length limits)
run at once on the same encoder. What is and is not thread-safe is listed in
``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lfm_core.encoders
from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_langchain import LFMColBERTReranker, LFMEmbeddings
from lfm_llamaindex import LFMEmbedding

TIMEOUT_S = 240  # generous: the CI machine has 2 cores shared with other test workers
N_THREADS = 8

_rng = random.Random(4)
_WORDS = [
    "order",
    "refund",
    "شحن",
    "配送",
    "lieferung",
    "🔍",
    "printer",
    "invoice",
    "тариф",
    "password",
    "reset",
]
TEXTS = [" ".join(_rng.choices(_WORDS, k=_rng.randint(0, 24))) for _ in range(48)]
SIDES = ["encode_queries", "encode_documents"]


@pytest.fixture(scope="module", params=["tiny_dense", "tiny_colbert", "minilm"])
def encoder(request: pytest.FixtureRequest) -> DenseEncoder | LateInteractionEncoder:
    return request.getfixturevalue(request.param)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of 5 texts: every call runs its prefetch thread, as a long input would.
    monkeypatch.setattr(lfm_core.encoders, "_CHUNK_TEXTS", 5)


def rows(out: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    return list(out)


def assert_same(got: Any, expected: Any, what: str) -> None:
    assert len(got) == len(expected), what
    for i, (g, e) in enumerate(zip(rows(got), rows(expected))):
        assert np.shape(g) == np.shape(e), f"{what}[{i}]"
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-5, err_msg=f"{what}[{i}]")


def run_in_threads(jobs: list[Callable[[], Any]], timeout: float = TIMEOUT_S) -> list[Any]:
    """Run each job in its own daemon thread, all released at once; results in job order."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        start.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # handed back to the test thread below
            errors[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    deadline = threading.Event()
    for t in threads:
        t.join(timeout)
        if t.is_alive():
            deadline.set()
    assert not deadline.is_set(), f"threads still running after {timeout} s: deadlock?"
    for exc in errors:
        if exc is not None:
            raise exc
    return results


def run_async(coro_factory: Callable[[], Any], timeout: float = TIMEOUT_S) -> Any:
    """``asyncio.run`` in a daemon thread, so a hung event loop fails instead of blocking."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["result"] = asyncio.run(asyncio.wait_for(coro_factory(), timeout))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.join(timeout + 30)
    assert not thread.is_alive(), "the event loop did not finish: deadlock?"
    if "error" in box:
        raise box["error"]
    return box["result"]


# ------------------------------------------------------------------------ threads


def test_eight_threads_mixing_queries_and_documents_match_serial_calls(
    encoder: DenseEncoder | LateInteractionEncoder,
) -> None:
    serial = {side: getattr(encoder, side)(TEXTS) for side in SIDES}

    def job(k: int) -> list[tuple[str, list[int], Any]]:
        # Each thread: its own subset in its own order, switching between queries and
        # documents (different tokenizer limits) from one call to the next.
        order = random.Random(k).sample(range(len(TEXTS)), k=6 + k)
        calls = [SIDES[(k + r) % 2] for r in range(4)]
        return [(side, order, getattr(encoder, side)([TEXTS[i] for i in order])) for side in calls]

    for outs in run_in_threads([lambda k=k: job(k) for k in range(N_THREADS)]):
        for side, order, out in outs:
            assert_same(out, [rows(serial[side])[i] for i in order], side)


def test_rerank_from_eight_threads_matches_serial(tiny_colbert: LateInteractionEncoder) -> None:
    queries = [f"{w} problem" for w in _WORDS[:N_THREADS]]
    serial = [tiny_colbert.rerank(q, TEXTS, top_k=10) for q in queries]
    got = run_in_threads([lambda q=q: tiny_colbert.rerank(q, TEXTS, top_k=10) for q in queries])
    for g, s in zip(got, serial):
        assert [i for i, _ in g] == [i for i, _ in s]
        np.testing.assert_allclose([x for _, x in g], [x for _, x in s], atol=1e-4)


def test_a_thread_with_bad_input_does_not_disturb_the_others(tiny_dense: DenseEncoder) -> None:
    serial = tiny_dense.encode_documents(TEXTS)

    def bad() -> str:
        for _ in range(20):
            try:
                tiny_dense.encode_documents(["fine", None])  # type: ignore[list-item]
            except TypeError as exc:
                last = str(exc)
        return last

    jobs: list[Callable[[], Any]] = [lambda: tiny_dense.encode_documents(TEXTS)] * 6 + [bad] * 2
    results = run_in_threads(jobs)
    for out in results[:6]:
        assert_same(out, serial, "documents")
    assert results[6:] == ["texts[1] is None; expected str"] * 2


def test_loading_from_several_threads_gives_working_independent_encoders(
    tiny_colbert_dir: Any, tiny_colbert: LateInteractionEncoder
) -> None:
    expected = tiny_colbert.encode_queries(TEXTS[:6])
    loaded = run_in_threads(
        [
            lambda: LateInteractionEncoder.from_pretrained(tiny_colbert_dir, device="cpu")
            for _ in range(4)
        ]
    )
    assert len({id(e) for e in loaded}) == 4
    for out in run_in_threads([lambda e=e: e.encode_queries(TEXTS[:6]) for e in loaded]):
        assert_same(out, expected, "queries")


# ------------------------------------------------------------------------ asyncio


def test_asyncio_tasks_sharing_an_encoder_match_serial(
    encoder: DenseEncoder | LateInteractionEncoder,
) -> None:
    serial = {side: getattr(encoder, side)(TEXTS) for side in SIDES}
    slices = [(SIDES[k % 2], slice(3 * k, 3 * k + 9)) for k in range(12)]

    async def main() -> list[Any]:
        tasks = [asyncio.to_thread(getattr(encoder, side), TEXTS[part]) for side, part in slices]
        return await asyncio.gather(*tasks)

    for (side, part), out in zip(slices, run_async(main)):
        assert_same(out, rows(serial[side])[part], side)


def test_async_adapters_sharing_one_model_match_their_sync_calls(
    tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    """LangChain and LlamaIndex async methods, all on one dense and one ColBERT model at once."""
    from langchain_core.documents import Document

    lc = LFMEmbeddings(encoder=tiny_dense)
    li = LFMEmbedding(encoder=tiny_dense, embed_batch_size=7)
    reranker = LFMColBERTReranker(encoder=tiny_colbert, top_n=5)
    docs = [Document(page_content=t or "empty") for t in TEXTS[:20]]
    expected_docs = lc.embed_documents(TEXTS)
    expected_query = lc.embed_query("where is my refund")
    expected_rerank = [d.page_content for d in reranker.compress_documents(docs, "refund")]

    async def main() -> list[Any]:
        jobs = []
        for _ in range(3):
            jobs += [
                lc.aembed_documents(TEXTS),
                li.aget_text_embedding_batch(TEXTS),
                lc.aembed_query("where is my refund"),
                li.aget_query_embedding("where is my refund"),
                reranker.acompress_documents(docs, "refund"),
            ]
        return await asyncio.gather(*jobs)

    results = run_async(main)
    for k in range(3):
        lc_docs, li_docs, lc_q, li_q, reranked = results[5 * k : 5 * k + 5]
        np.testing.assert_allclose(lc_docs, expected_docs, atol=1e-5)
        np.testing.assert_allclose(li_docs, expected_docs, atol=1e-5)
        np.testing.assert_allclose(lc_q, expected_query, atol=1e-5)
        np.testing.assert_allclose(li_q, expected_query, atol=1e-5)
        assert [d.page_content for d in reranked] == expected_rerank

"""MaxSim scoring and the batch planner."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lfm_core import scoring
from lfm_core.batching import plan_batches, prefetch, split_on_oom


def _naive_maxsim(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    return np.array(
        [(q @ d.T).max(axis=1).sum() if len(d) else -np.inf for d in docs], dtype=np.float32
    )


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_maxsim_matches_naive_and_never_picks_padding() -> None:
    rng = np.random.default_rng(0)
    q = _unit(rng, 32, 16)
    # All similarities negative: zero padding would wrongly win every max.
    docs = [-np.abs(_unit(rng, n, 16)) for n in (1, 7, 300)]
    q = np.abs(q)
    got = scoring.maxsim(q, docs)
    np.testing.assert_allclose(got, _naive_maxsim(q, docs), rtol=1e-5)
    assert (got < 0).all()


def test_maxsim_chunks_stay_under_budget(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    q = _unit(rng, 32, 8)
    docs = [_unit(rng, int(n), 8) for n in rng.integers(1, 512, size=300)]
    blocks = []
    original = scoring._maxsim_chunk

    def spy(qt, chunk, device):
        blocks.append(len(chunk) * qt.shape[0] * max(d.shape[0] for d in chunk))
        return original(qt, chunk, device)

    monkeypatch.setattr(scoring, "_maxsim_chunk", spy)
    budget = 32 * 512 * 10
    got = scoring.maxsim(q, docs, budget=budget)
    assert len(blocks) > 10 and max(blocks) <= budget
    np.testing.assert_allclose(got, _naive_maxsim(q, docs), rtol=1e-5)


def test_maxsim_empty_document_scores_minus_inf_and_shapes_checked() -> None:
    q = np.eye(2, dtype=np.float32)
    got = scoring.maxsim(q, [np.zeros((0, 2), np.float32), np.eye(2, dtype=np.float32)])
    assert got[0] == -np.inf and got[1] == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"documents\[0\] has shape"):
        scoring.maxsim(q, [np.zeros((3, 5), np.float32)])
    assert scoring.maxsim(q, []).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 600), max_size=80),
    max_tokens=st.integers(1, 2048),
    max_batch_size=st.integers(1, 64),
    padded=st.booleans(),
)
def test_plan_batches_covers_each_index_once_within_budget(
    lengths, max_tokens, max_batch_size, padded
) -> None:
    plan = plan_batches(
        lengths, max_tokens=max_tokens, max_batch_size=max_batch_size, padded=padded
    )
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    for batch in plan:
        assert len(batch) <= max_batch_size
        cost = (
            len(batch) * max(lengths[i] for i in batch)
            if padded
            else sum(lengths[i] for i in batch)
        )
        assert cost <= max_tokens or len(batch) == 1


def test_split_on_oom_keeps_order_and_content() -> None:
    calls = []

    def run(items: list[int]) -> list[int]:
        calls.append(len(items))
        if len(items) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [i * 10 for i in items]

    assert split_on_oom(run, list(range(13))) == [i * 10 for i in range(13)]
    assert max(c for c in calls if c <= 3) <= 3


def test_split_on_oom_single_item_reraises_and_other_errors_pass_through() -> None:
    def oom(items):
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        split_on_oom(oom, [1])

    def bug(items):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        split_on_oom(bug, [1, 2, 3])


@pytest.mark.parametrize("n_chunks", [0, 1, 2, 5])
def test_prefetch_keeps_order_and_starts_a_thread_only_when_there_is_overlap(n_chunks) -> None:
    caller = threading.current_thread()
    seen: list[tuple[int, bool]] = []

    def prepare(chunk: int) -> int:
        seen.append((chunk, threading.current_thread() is caller))
        return chunk * 10

    assert list(prefetch(iter(range(n_chunks)), prepare)) == [10 * i for i in range(n_chunks)]
    assert sorted(c for c, _ in seen) == list(range(n_chunks))
    on_caller = {c for c, inline in seen if inline}
    # One chunk has nothing to overlap with: no thread. Several: all on the prefetch thread.
    assert on_caller == ({0} if n_chunks == 1 else set())


def test_prefetch_raises_the_failing_chunks_error() -> None:
    def prepare(chunk: int) -> int:
        if chunk == 2:
            raise ValueError("chunk 2 is bad")
        return chunk

    out = prefetch(iter(range(4)), prepare)
    assert [next(out), next(out)] == [0, 1]
    with pytest.raises(ValueError, match="chunk 2 is bad"):
        next(out)
    with pytest.raises(ValueError, match="chunk 2 is bad"):  # inline, as a single chunk
        list(prefetch([2], prepare))


def test_encoder_recovers_from_simulated_oom(tiny_dense_dir) -> None:
    from lfm_core import DenseEncoder

    enc = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu")
    texts = [f"document number {i} " * (1 + i % 7) for i in range(40)]
    expected = enc.encode_documents(texts)
    real = enc._forward_module
    sizes = []

    def flaky(ids, cu, key_mask):
        sizes.append(len(cu) - 1)
        if len(cu) - 1 > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(ids, cu, key_mask)

    enc._forward_module = flaky
    got = enc.encode_documents(texts)
    assert max(sizes) > 4, "the first attempt used a big batch"
    np.testing.assert_allclose(got, expected, atol=1e-5)

"""Invariants of DenseEncoder and LateInteractionEncoder on tiny LFM2.5-layout checkpoints."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from lfm_core import DenseEncoder, InputError, LateInteractionEncoder

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "",
    "日本語のテキスト検索",
    "Arc<Mutex<T>> is the idiomatic way to share mutable state across threads in Rust. " * 3,
    "a",
    "   ",
    "Preheat the oven to 200C, then butter a cake tin.",
]


def _hidden(encoder, ids: list[int], key_mask: list[bool] | None = None) -> torch.Tensor:
    """One sequence through the backbone alone: the reference for pooling and heads."""
    with torch.inference_mode():
        t = torch.tensor(ids)
        cu = torch.tensor([0, len(ids)], dtype=torch.int32)
        km = None if key_mask is None else torch.tensor(key_mask)
        return encoder.backbone(t, cu, km).float()


# ---------------------------------------------------------------- dense


def test_dense_shape_dtype_norm(tiny_dense: DenseEncoder) -> None:
    out = tiny_dense.encode_documents(TEXTS)
    assert out.shape == (len(TEXTS), tiny_dense.dim) == (len(TEXTS), 64)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_dense_empty_list_has_model_width(tiny_dense: DenseEncoder) -> None:
    assert tiny_dense.encode_queries([]).shape == (0, 64)
    assert tiny_dense.encode_documents(iter([])).shape == (0, 64)


@pytest.mark.parametrize("method", ["encode_queries", "encode_documents"])
def test_dense_prompt_bos_and_cls_pooling(tiny_dense: DenseEncoder, method: str) -> None:
    prompt = "query: " if method == "encode_queries" else "document: "
    text = "where is my order"
    ids = tiny_dense.tokenizer.encode([prompt + text], 512).ids[0]
    assert ids[0] == 1, "BOS (id 1) must open every sequence: it is the pooled CLS position"
    expected = _hidden(tiny_dense, ids)[0]
    expected = expected / expected.norm()
    got = getattr(tiny_dense, method)([text])[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_dense_queries_and_documents_differ(tiny_dense: DenseEncoder) -> None:
    q = tiny_dense.encode_queries(["shipping times"])[0]
    d = tiny_dense.encode_documents(["shipping times"])[0]
    assert not np.allclose(q, d, atol=1e-4), "query and document prompts must both be applied"


def test_dense_empty_string_is_the_prompt_alone(tiny_dense: DenseEncoder) -> None:
    ids = tiny_dense.tokenizer.encode(["query: "], 512).ids[0]
    expected = _hidden(tiny_dense, ids)[0]
    got = tiny_dense.encode_queries([""])[0]
    np.testing.assert_allclose(got, (expected / expected.norm()).numpy(), atol=1e-5)


def test_dense_batch_independence_and_order(tiny_dense: DenseEncoder) -> None:
    batched = tiny_dense.encode_documents(TEXTS)
    alone = np.stack([tiny_dense.encode_documents([t])[0] for t in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    reversed_ = tiny_dense.encode_documents(TEXTS[::-1])
    np.testing.assert_allclose(reversed_[::-1], batched, atol=1e-5)


def test_dense_small_batches_equal_one_batch(tiny_dense_dir) -> None:
    small = DenseEncoder.from_pretrained(
        tiny_dense_dir, device="cpu", max_tokens_per_batch=16, max_batch_size=2
    )
    big = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu")
    np.testing.assert_allclose(
        small.encode_documents(TEXTS), big.encode_documents(TEXTS), atol=1e-5
    )


def test_dense_truncation_warns_once_with_count(tiny_dense: DenseEncoder, caplog) -> None:
    long = "word " * 2000
    with caplog.at_level(logging.WARNING, logger="lfm_core"):
        out = tiny_dense.encode_documents([long, "short", long])
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 of 3 documents" in warnings[0].getMessage()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["ok", None], r"texts\[1\] is None; expected str"),
        (["ok", "ok", b"bytes"], r"texts\[2\] is a bytes; expected str"),
        ([3.5], r"texts\[0\] is a float; expected str"),
        ([["nested"]], r"texts\[0\] is a list; expected str"),
        ("a bare string", r"must be a list of str"),
        (42, r"must be an iterable of str"),
    ],
)
def test_dense_wrong_types(tiny_dense: DenseEncoder, bad, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        tiny_dense.encode_documents(bad)


def test_dense_generator_is_consumed_once(tiny_dense: DenseEncoder) -> None:
    gen = (t for t in TEXTS)
    out = tiny_dense.encode_documents(gen)
    assert out.shape[0] == len(TEXTS)
    np.testing.assert_allclose(out, tiny_dense.encode_documents(TEXTS), atol=1e-6)


def test_dense_normalize_false_keeps_raw_cls(tiny_dense_dir) -> None:
    raw = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu", normalize=False)
    out = raw.encode_queries(["hello"])
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)


# ---------------------------------------------------------------- ColBERT


def test_colbert_query_layout(tiny_colbert: LateInteractionEncoder) -> None:
    """BOS, [Q] (second to last id), text, then EOS (7) expansion up to 32, masked as keys."""
    q_id = tiny_colbert.tokenizer.token_id("[Q] ")
    assert q_id is not None
    captured = {}
    original = tiny_colbert._forward

    def spy(idx, prep, head):
        captured["ids"], captured["mask"] = prep.ids[idx[0]], prep.key_masks[idx[0]]
        return original(idx, prep, head)

    tiny_colbert._forward = spy
    try:
        vectors = tiny_colbert.encode_queries(["where is my order"])[0]
    finally:
        del tiny_colbert._forward
    ids, mask = captured["ids"], captured["mask"]
    text_ids = tiny_colbert.tokenizer.encode(["where is my order"], 31).ids[0]
    assert ids[:2] == [1, q_id]
    assert ids[2 : len(text_ids) + 1] == text_ids[1:]
    assert len(ids) == 32 and set(ids[len(text_ids) + 1 :]) == {7}
    assert mask == [True] * (len(text_ids) + 1) + [False] * (32 - len(text_ids) - 1)
    assert vectors.shape == (32, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_colbert_expansion_is_returned_and_masked_as_keys(
    tiny_colbert: LateInteractionEncoder,
) -> None:
    text = "threads"
    text_ids = tiny_colbert.tokenizer.encode([text], 31).ids[0]
    q_id = tiny_colbert.tokenizer.token_id("[Q] ")
    ids = [1, q_id, *text_ids[1:]]
    n_real = len(ids)
    ids += [7] * (32 - n_real)
    mask = [True] * n_real + [False] * (32 - n_real)
    hidden = _hidden(tiny_colbert, ids, mask)
    expected = torch.nn.functional.normalize(tiny_colbert._project(hidden), dim=-1)
    got = tiny_colbert.encode_queries([text])[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    # Attending to the expansion would change the real tokens' vectors.
    attended = tiny_colbert._project(_hidden(tiny_colbert, ids, [True] * 32))
    assert not np.allclose(got[:n_real], attended[:n_real].numpy(), atol=1e-4)


def test_colbert_documents_drop_skiplist_tokens(tiny_colbert: LateInteractionEncoder) -> None:
    text = "stop , threads ; now !"
    ids = tiny_colbert.tokenizer.encode([text], 511).ids[0]
    d_id = tiny_colbert.tokenizer.token_id("[D] ")
    full = [1, d_id, *ids[1:]]
    skip = set(tiny_colbert._skiplist.tolist())
    keep = [i for i, t in enumerate(full) if t not in skip]
    assert len(keep) < len(full), "the text has punctuation tokens to drop"
    expected = tiny_colbert._project(_hidden(tiny_colbert, full))[keep]
    got = tiny_colbert.encode_documents([text])[0]
    assert got.shape == (len(keep), 16)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_colbert_batch_independence(tiny_colbert: LateInteractionEncoder) -> None:
    docs = tiny_colbert.encode_documents(TEXTS)
    for text, batched in zip(TEXTS, docs):
        np.testing.assert_allclose(batched, tiny_colbert.encode_documents([text])[0], atol=1e-5)
    queries = tiny_colbert.encode_queries(TEXTS)
    for text, batched in zip(TEXTS, queries):
        np.testing.assert_allclose(batched, tiny_colbert.encode_queries([text])[0], atol=1e-5)


def test_colbert_empty_inputs(tiny_colbert: LateInteractionEncoder) -> None:
    assert tiny_colbert.encode_documents([]) == []
    assert tiny_colbert.encode_queries([]) == []
    assert tiny_colbert.rerank("q", []) == []
    empty_doc = tiny_colbert.encode_documents([""])[0]
    assert empty_doc.shape == (2, 16), "an empty document keeps its BOS and [D] vectors"


def test_colbert_long_query_truncated_with_warning(
    tiny_colbert: LateInteractionEncoder, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="lfm_core"):
        out = tiny_colbert.encode_queries(["many words " * 50])
    assert out[0].shape == (32, 16)
    assert any("1 of 1 queries" in r.getMessage() for r in caplog.records)


def test_colbert_rerank_matches_score(tiny_colbert: LateInteractionEncoder) -> None:
    docs = ["threads share state", "cake tin", "Rust mutex", "oven"]
    ranked = tiny_colbert.rerank("threads and mutex", docs)
    scores = tiny_colbert.score(
        tiny_colbert.encode_queries(["threads and mutex"])[0], tiny_colbert.encode_documents(docs)
    )
    assert [i for i, _ in ranked] == list(np.argsort(-scores, kind="stable"))
    np.testing.assert_allclose([s for _, s in ranked], np.sort(scores)[::-1], rtol=1e-6)
    assert len(tiny_colbert.rerank("threads", docs, top_k=2)) == 2
    with pytest.raises(InputError, match="top_k"):
        tiny_colbert.rerank("threads", docs, top_k=-1)
    with pytest.raises(TypeError, match=r"documents\[1\] is None"):
        tiny_colbert.rerank("threads", ["a", None])
    with pytest.raises(TypeError, match="query is None"):
        tiny_colbert.rerank(None, ["a"])

"""Golden outputs of the real LFM2.5 checkpoints (needs the real weights; skips without them).

Point ``LFM_EMBEDDING_CHECKPOINT`` / ``LFM_COLBERT_CHECKPOINT`` at local copies of
LiquidAI/LFM2.5-Embedding-350M and LiquidAI/LFM2.5-ColBERT-350M. The references in
``../shared/data/lfm25-reference`` were made one text at a time in float32.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder

EMBEDDING_TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "Rust's borrow checker: not a suggestion.",
    "日本語（にほんご）を勉強中です。",
    "vector search 🔍 with a 350M encoder",
]
COLBERT_QUERIES = ["how do I stop two threads corrupting shared state", "日本語のテキスト検索"]
COLBERT_DOCUMENTS = [
    "Arc<Mutex<T>> is the idiomatic way to share mutable state across threads in Rust.",
    "Preheat the oven to 200C, then butter a cake tin.",
    "Punctuation!! Should, be; skipped: right? (yes)",
]


def _checkpoint(var: str) -> Path:
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"real checkpoint absent: set {var} to a local folder of the real model")
    return Path(value)


def _reference(shared_data: Path, name: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(shared_data / "lfm25-reference" / f"{name}_reference.safetensors"))


def test_embedding_checkpoint_matches_reference(shared_data: Path) -> None:
    ref = _reference(shared_data, "embedding")
    enc = DenseEncoder.from_pretrained(
        _checkpoint("LFM_EMBEDDING_CHECKPOINT"), device="cpu", dtype="float32", normalize=False
    )
    for kind, prompt in (("query", enc.head.query_prompt), ("document", enc.head.document_prompt)):
        ids = enc.tokenizer.encode([prompt + t for t in EMBEDDING_TEXTS], enc.max_length).ids
        method = enc.encode_queries if kind == "query" else enc.encode_documents
        got = method(EMBEDDING_TEXTS)
        for i in range(len(EMBEDDING_TEXTS)):
            assert ids[i] == ref[f"{kind}.{i}.input_ids"][0].tolist()
            np.testing.assert_allclose(got[i], ref[f"{kind}.{i}.pooled"][0], atol=1e-4)


def test_colbert_checkpoint_matches_reference(shared_data: Path) -> None:
    ref = _reference(shared_data, "colbert")
    enc = LateInteractionEncoder.from_pretrained(
        _checkpoint("LFM_COLBERT_CHECKPOINT"), device="cpu", dtype="float32"
    )
    queries = enc.encode_queries(COLBERT_QUERIES)
    documents = enc.encode_documents(COLBERT_DOCUMENTS)
    for i, q in enumerate(queries):
        np.testing.assert_allclose(q, ref[f"query.{i}.vectors"], atol=1e-4)
    for i, d in enumerate(documents):
        np.testing.assert_allclose(d, ref[f"document.{i}.vectors"], atol=1e-4)
    scores = enc.score(queries[0], documents)
    np.testing.assert_allclose(scores, [ref[f"maxsim.0.{j}"][0] for j in range(3)], atol=1e-3)


def test_trunk_matches_reference_unpadded(shared_data: Path) -> None:
    import torch

    ref = _reference(shared_data, "trunk")
    enc = DenseEncoder.from_pretrained(
        _checkpoint("LFM_EMBEDDING_CHECKPOINT"), device="cpu", dtype="float32"
    )
    ids = torch.from_numpy(ref["single.input_ids"][0])
    with torch.inference_mode():
        hidden = enc.backbone(ids, torch.tensor([0, len(ids)], dtype=torch.int32), None)
    np.testing.assert_allclose(hidden.numpy(), ref["single.hidden_states"][0], atol=1e-4)

"""Real weights: our DenseEncoder vs sentence-transformers' encode on all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

pytest.importorskip("sentence_transformers")


def _texts() -> list[str]:
    """A few hundred real texts: SciFact abstracts when shared data is present, plus edge cases."""
    corpus = SHARED_DATA / "beir-scifact" / "corpus.jsonl"
    texts = []
    if corpus.is_file():
        with corpus.open(encoding="utf-8") as f:
            docs = [json.loads(line) for line, _ in zip(f, range(300))]
        # Titles are short; 40 full abstracts exercise the 256-token truncation.
        texts = [d["title"] for d in docs[:260]] + [f"{d['title']} {d['text']}" for d in docs[260:]]
    else:
        texts = [
            f"Sentence {i}: retrieval of product {i} in catalog section {i % 7}."
            for i in range(300)
        ]
    return texts + ["", " ", "a", "Ünïcödé — 日本語 — العربية", "word " * 600]


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> tuple[list[str], np.ndarray]:
    from sentence_transformers import SentenceTransformer

    texts = _texts()
    st = SentenceTransformer(str(minilm_dir), device="cpu")
    return texts, st.encode(texts, batch_size=64, convert_to_numpy=True)


def test_minilm_vectors_equal_sentence_transformers(minilm, reference) -> None:
    texts, ref = reference
    ours = minilm.encode_documents(texts)
    assert ours.shape == ref.shape == (len(texts), 384)
    cosine = (ours * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.99999, f"worst cosine {cosine.min()} at {int(cosine.argmin())}"
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_minilm_has_no_prompts_so_queries_equal_documents(minilm) -> None:
    texts = ["how do vaccines work", "0-dimensional biomaterials show inductive properties"]
    np.testing.assert_allclose(
        minilm.encode_queries(texts), minilm.encode_documents(texts), atol=1e-6
    )

"""The GPU path: bfloat16 default, packing exactness on CUDA, flash-attn vs SDPA, compile.

These run only where CUDA is available (a lent GPU machine, not CI); each test says why it
skips. Run them with ``pytest tests/lfm_core/test_cuda.py`` on the GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfm_core import DenseEncoder, LateInteractionEncoder, modeling_lfm2, packing

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device: the GPU path needs a GPU"
    ),
]

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "",
    "日本語のテキスト検索",
    "Arc<Mutex<T>> is the idiomatic way to share mutable state across threads. " * 6,
    "a",
    "Preheat the oven to 200C, then butter a cake tin.",
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_cuda_defaults_to_bfloat16_and_stays_close_to_cpu_float32(tiny_dense_dir) -> None:
    gpu = DenseEncoder.from_pretrained(tiny_dense_dir, device="cuda")
    assert gpu.dtype == torch.bfloat16
    cpu = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu")
    cos = _cos(gpu.encode_documents(TEXTS), cpu.encode_documents(TEXTS))
    assert cos.min() >= 0.99, cos.min()


def test_cuda_float32_packed_equals_alone(tiny_dense_dir, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    enc = DenseEncoder.from_pretrained(tiny_dense_dir, device="cuda", dtype="float32")
    batched = enc.encode_documents(TEXTS)
    alone = np.stack([enc.encode_documents([t])[0] for t in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_cuda_colbert_packed_equals_alone_in_float32(tiny_colbert_dir, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    enc = LateInteractionEncoder.from_pretrained(tiny_colbert_dir, device="cuda", dtype="float32")
    batched = enc.encode_documents(TEXTS)
    for text, vectors in zip(TEXTS, batched):
        np.testing.assert_allclose(vectors, enc.encode_documents([text])[0], atol=1e-5)


@pytest.mark.skipif(packing.flash_attn_varlen() is None, reason="flash-attn is not installed")
def test_flash_attention_matches_sdpa_in_bfloat16(tiny_dense_dir, monkeypatch) -> None:
    enc = DenseEncoder.from_pretrained(tiny_dense_dir, device="cuda")
    flash = enc.encode_documents(TEXTS)
    monkeypatch.setattr(modeling_lfm2, "flash_applies", lambda hidden: False)
    sdpa = enc.encode_documents(TEXTS)
    cos = _cos(flash, sdpa)
    assert cos.min() >= 0.999, cos.min()


def test_compiled_backbone_gives_the_same_vectors(tiny_dense_dir) -> None:
    eager = DenseEncoder.from_pretrained(tiny_dense_dir, device="cuda")
    compiled = DenseEncoder.from_pretrained(tiny_dense_dir, device="cuda", compile=True)
    cos = _cos(eager.encode_documents(TEXTS), compiled.encode_documents(TEXTS))
    assert cos.min() >= 0.999, cos.min()


def test_int8_is_refused_on_cuda(tiny_dense_dir) -> None:
    with pytest.raises(ValueError, match="CPU option"):
        DenseEncoder.from_pretrained(tiny_dense_dir, device="cuda", quantize="int8")

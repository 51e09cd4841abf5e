"""Opt-in int8 linear layers: exactness of the arithmetic, and vectors close to float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_core.quantization import Int8Linear, quantize_linears_int8

PRODUCTS = [f"product {i} ships in {i % 5} days from warehouse {i % 3}" for i in range(64)]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Retour gratuit sous 30 jours pour toutes les commandes.",
    "Die Lieferung dauert zwei bis drei Werktage.",
    "配送には通常3〜5営業日かかります。",
    "",
    "a",
    "warranty " * 80,
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_int8_linear_equals_its_dequantized_arithmetic() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(48, 20)
    q = Int8Linear(linear)
    x = torch.randn(3, 5, 48)
    rows = x.reshape(-1, 48)
    xs = rows.abs().amax(dim=1, keepdim=True) / 127
    xq = torch.round(rows / xs)
    w = q.weight_int8.float()  # [in, out]
    expected = (xq @ w) * xs * q.weight_scale + linear.bias
    torch.testing.assert_close(q(x), expected.reshape(3, 5, 20), rtol=1e-5, atol=1e-5)
    assert q.weight_int8.dtype == torch.int8
    assert q.weight_int8.abs().max() <= 127


def test_int8_linear_is_close_to_float_and_handles_zeros_and_single_rows() -> None:
    torch.manual_seed(1)
    linear = nn.Linear(64, 32, bias=False)
    q = Int8Linear(linear)
    x = torch.randn(17, 64)
    x[3] = 0.0  # an all-zero row must not divide by zero
    out = q(x)
    assert torch.isfinite(out).all()
    assert torch.equal(out[3], torch.zeros(32))
    ref = linear(x)
    keep = torch.ones(17, dtype=torch.bool)
    keep[3] = False
    cos = torch.nn.functional.cosine_similarity(out[keep], ref[keep], dim=-1)
    assert cos.min() > 0.999
    assert q(x[:1]).shape == (1, 32)
    assert q(x[:0]).shape == (0, 32)
    odd = nn.Linear(37, 13)
    y = torch.randn(1, 37)
    assert torch.nn.functional.cosine_similarity(Int8Linear(odd)(y), odd(y)).item() > 0.999


def test_quantize_replaces_every_linear_in_place() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 4)))
    out = quantize_linears_int8(model)
    assert out is model
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == 2


def test_outlier_features_are_multiplied_in_float32() -> None:
    torch.manual_seed(2)
    linear = nn.Linear(64, 16)
    x = torch.randn(9, 64)
    x[:, 5] *= 40.0  # one outlier feature, as transformer hidden states have
    ref = linear(x)
    plain = Int8Linear(linear, outlier_threshold=float("inf"))(x)
    mixed = Int8Linear(linear, outlier_threshold=6.0)(x)
    q = Int8Linear(linear)
    rest = x.clone()
    rest[:, 5] = 0.0
    xs = rest.abs().amax(dim=1, keepdim=True) / 127
    expected = (torch.round(rest / xs) @ q.weight_int8.float()) * xs * q.weight_scale
    expected += x[:, 5:6] @ (q.weight_int8[5:6].float() * q.weight_scale) + linear.bias
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-5)
    assert (mixed - ref).abs().max() < (plain - ref).abs().max() / 2


def test_int8_is_refused_on_gpu_with_a_clear_error() -> None:
    from lfm_core.encoders import _quantize_int8

    with pytest.raises(ValueError, match="CPU option"):
        _quantize_int8(nn.Linear(2, 2), torch.device("cuda"))


def test_minilm_int8_cosine_to_float32_is_at_least_0_99(minilm_dir, minilm: DenseEncoder) -> None:
    int8 = DenseEncoder.from_pretrained(minilm_dir, device="cpu", quantize="int8")
    texts = PRODUCTS + SENTENCES
    cos = _cosines(minilm.encode_documents(texts), int8.encode_documents(texts))
    assert cos.min() >= 0.99, cos.min()


def test_tiny_lfm2_int8_cosine_to_float32_is_at_least_0_99(
    tiny_dense_dir, tiny_dense: DenseEncoder
) -> None:
    int8 = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu", quantize="int8")
    texts = PRODUCTS + SENTENCES
    cos = _cosines(tiny_dense.encode_documents(texts), int8.encode_documents(texts))
    assert cos.min() >= 0.99, cos.min()
    q = _cosines(tiny_dense.encode_queries(texts), int8.encode_queries(texts))
    assert q.min() >= 0.99, q.min()


def test_tiny_colbert_int8_keeps_shapes_and_ranking(
    tiny_colbert_dir, tiny_colbert: LateInteractionEncoder
) -> None:
    int8 = LateInteractionEncoder.from_pretrained(tiny_colbert_dir, device="cpu", quantize="int8")
    exact = tiny_colbert.encode_documents(PRODUCTS[:16])
    approx = int8.encode_documents(PRODUCTS[:16])
    assert [e.shape for e in exact] == [a.shape for a in approx]
    cos = _cosines(np.concatenate(exact), np.concatenate(approx))
    assert cos.mean() >= 0.99, cos.mean()

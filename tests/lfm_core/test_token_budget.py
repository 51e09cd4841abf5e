"""The encoders' default token budget per forward follows the device."""

from __future__ import annotations

from pathlib import Path

from lfm_core import BatchingConfig, DenseEncoder, LateInteractionEncoder


def test_the_default_token_budget_follows_the_device() -> None:
    assert BatchingConfig.for_device("cpu").max_tokens_per_batch == 2048
    assert BatchingConfig.for_device("cuda").max_tokens_per_batch == 8192
    assert BatchingConfig.for_device("mps").max_tokens_per_batch == 8192


def test_a_cpu_encoder_gets_the_cpu_budget_unless_told(
    tiny_dense_dir: Path, tiny_colbert_dir: Path
) -> None:
    dense = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu")
    colbert = LateInteractionEncoder.from_pretrained(tiny_colbert_dir, device="cpu")
    assert dense.batching.max_tokens_per_batch == 2048
    assert colbert.batching.max_tokens_per_batch == 2048
    told = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu", max_tokens_per_batch=96)
    assert told.batching.max_tokens_per_batch == 96

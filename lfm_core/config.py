"""Frozen configuration dataclasses: the model, the retrieval heads and the batching.

Config flows one way: checkpoint files -> ``from_dict`` -> these dataclasses -> objects.
Each ``from_dict`` renames legacy keys from one table, raises :class:`CheckpointError`
naming the file and the key, and derives sizes once (the FFN width auto-adjust).
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import CheckpointError
from .validation import check_positive_int

LayerType = Literal["conv", "full_attention"]
PoolingMode = Literal["cls", "mean", "lasttoken"]

# Older LFM2 configs spell some fields differently; map them to the current names.
_LEGACY_LFM2_KEYS = {
    "block_dim": "hidden_size",
    "num_heads": "num_attention_heads",
    "block_norm_eps": "norm_eps",
}


def _int(d: Mapping[str, Any], key: str, source: str, default: int | None = None) -> int:
    """``d[key]`` as an int (``default`` if absent), or a ``CheckpointError`` naming both."""
    value = d.get(key, default) if default is not None else _require(d, key, source)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{key!r} in {source} must be an integer, got {value!r}")
    return value


def _require(d: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in d:
        raise CheckpointError(f"missing key {key!r} in {source}")
    return d[key]


def adjusted_ffn_width(
    intermediate_size: int,
    *,
    auto_adjust: bool,
    multiplier: float | None,
    multiple_of: int,
) -> int:
    """The SwiGLU width the checkpoint really has, from the width its config declares.

    LFM2 configs declare 6656 but store 4608-wide ``w1``/``w3``: two thirds of the
    declared width, scaled, rounded up to a multiple of ``multiple_of``.

    >>> adjusted_ffn_width(6656, auto_adjust=True, multiplier=1.0, multiple_of=256)
    4608
    >>> adjusted_ffn_width(64, auto_adjust=False, multiplier=None, multiple_of=256)
    64
    """
    if not auto_adjust:
        return intermediate_size
    width = int(2 * intermediate_size / 3)
    if multiplier is not None:
        width = int(multiplier * width)
    return multiple_of * ((width + multiple_of - 1) // multiple_of)


@dataclass(frozen=True)
class Lfm2Config:
    """Shape of an LFM2 backbone, as read from a checkpoint's ``config.json``.

    ``intermediate_size`` is the *real* SwiGLU width (already auto-adjusted).
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    layer_types: tuple[LayerType, ...]
    conv_L_cache: int = 3
    conv_bias: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 128_000
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 7
    tie_embedding: bool = True

    @property
    def head_dim(self) -> int:
        """Width of one attention head: ``hidden_size // num_attention_heads``."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config.json") -> Lfm2Config:
        """Build from a ``config.json`` mapping (``layer_types`` or legacy ``full_attn_idxs``)."""
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"{source} must hold a JSON object, not {type(raw).__name__}")
        d = dict(raw)
        for old, new in _LEGACY_LFM2_KEYS.items():
            if old in d and new not in d:
                d[new] = d[old]
        model_type = d.get("model_type")
        if model_type not in (None, "lfm2"):
            raise CheckpointError(f"model_type {model_type!r} in {source} is not 'lfm2'")
        n_layers = _int(d, "num_hidden_layers", source)
        layer_types = _layer_types(d, n_layers, source)
        rope = d.get("rope_parameters") or {}
        rope_theta = float(rope.get("rope_theta", d.get("rope_theta", 1_000_000.0)))
        ffn = adjusted_ffn_width(
            _int(d, "block_ff_dim", source)
            if "block_ff_dim" in d
            else _int(d, "intermediate_size", source),
            auto_adjust=bool(d.get("block_auto_adjust_ff_dim", False)),
            multiplier=d.get("block_ffn_dim_multiplier"),
            multiple_of=_int(d, "block_multiple_of", source, 256),
        )
        hidden = _int(d, "hidden_size", source)
        heads = _int(d, "num_attention_heads", source)
        if hidden % heads:
            raise CheckpointError(
                f"hidden_size {hidden} in {source} is not a multiple of num_attention_heads {heads}"
            )
        return cls(
            vocab_size=_int(d, "vocab_size", source),
            hidden_size=hidden,
            num_hidden_layers=n_layers,
            num_attention_heads=heads,
            num_key_value_heads=_int(d, "num_key_value_heads", source, heads),
            intermediate_size=ffn,
            layer_types=layer_types,
            conv_L_cache=_int(d, "conv_L_cache", source, 3),
            conv_bias=bool(d.get("conv_bias", False)),
            norm_eps=float(d.get("norm_eps", 1e-5)),
            rope_theta=rope_theta,
            max_position_embeddings=_int(d, "max_position_embeddings", source, 128_000),
            pad_token_id=int(d.get("pad_token_id") or 0),
            bos_token_id=int(d.get("bos_token_id") or 1),
            eos_token_id=int(d.get("eos_token_id") or 7),
            tie_embedding=bool(d.get("tie_embedding", d.get("tie_word_embeddings", True))),
        )


def _layer_types(d: Mapping[str, Any], n_layers: int, source: str) -> tuple[LayerType, ...]:
    if "layer_types" in d and d["layer_types"] is not None:
        types = tuple(d["layer_types"])
    elif "full_attn_idxs" in d:
        attn = set(d["full_attn_idxs"])
        types = tuple("full_attention" if i in attn else "conv" for i in range(n_layers))
    else:
        raise CheckpointError(f"{source} has neither 'layer_types' nor 'full_attn_idxs'")
    if len(types) != n_layers:
        raise CheckpointError(
            f"{source} lists {len(types)} layer_types for num_hidden_layers={n_layers}"
        )
    for i, t in enumerate(types):
        if t not in ("conv", "full_attention"):
            raise CheckpointError(
                f"unknown layer_types[{i}] {t!r} in {source}; supported: conv, full_attention"
            )
    return types  # type: ignore[return-value,unused-ignore]


@dataclass(frozen=True)
class DenseHeadConfig:
    """How a dense (sentence-transformers layout) checkpoint turns token states into a vector."""

    pooling: PoolingMode = "cls"
    max_length: int = 512
    query_prompt: str = ""
    document_prompt: str = ""
    normalize: bool = True


@dataclass(frozen=True)
class ColBERTHeadConfig:
    """PyLate's ColBERT settings (``config_sentence_transformers.json``)."""

    query_prefix: str = "[Q] "
    document_prefix: str = "[D] "
    query_length: int = 32
    # PyLate's own defaults, for checkpoints whose config leaves these keys out.
    document_length: int = 180
    attend_to_expansion_tokens: bool = False
    do_query_expansion: bool = True
    skiplist_words: tuple[str, ...] = tuple(string.punctuation)
    dim: int = 128


@dataclass(frozen=True)
class BatchingConfig:
    """Limits for the batch planner.

    Attributes:
        max_tokens_per_batch: token budget of one forward pass (sum of sequence lengths;
            :meth:`for_device` gives the encoders' defaults).
        max_batch_size: most texts in one forward pass.
        progress_threshold: show a progress bar by default from this many texts on.
    """

    max_tokens_per_batch: int = 8192
    max_batch_size: int = 256
    progress_threshold: int = 2048

    @classmethod
    def for_device(cls, device_type: str) -> BatchingConfig:
        """The defaults for a device: a 2,048-token budget on CPU, 8,192 on accelerators.

        On CPU a bigger forward spills the caches and runs no faster: all-MiniLM-L6-v2
        documents ran 1.4x faster at 2,048 than at 8,192 tokens per forward on 2 EPYC cores
        (benchmarks/bench_cpu_serving.py); the LFM2.5 350M config no slower
        (docs/benchmarks.md). A GPU wants big forwards.
        """
        return cls(max_tokens_per_batch=2048 if device_type == "cpu" else 8192)

    def __post_init__(self) -> None:
        for name in ("max_tokens_per_batch", "max_batch_size", "progress_threshold"):
            object.__setattr__(self, name, check_positive_int(getattr(self, name), name))

    def replace(self, **overrides: Any) -> BatchingConfig:
        """Return a copy with the non-None ``overrides`` applied."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


__all__ = [
    "BatchingConfig",
    "ColBERTHeadConfig",
    "DenseHeadConfig",
    "Lfm2Config",
    "adjusted_ffn_width",
]

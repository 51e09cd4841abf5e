"""The LFM2 backbone in plain torch, run on packed sequences.

LFM2 stacks pre-norm residual blocks. Each block mixes tokens with either a gated short
depthwise convolution or grouped-query attention, then applies a SwiGLU feed-forward;
a final RMSNorm (``embedding_norm``) closes the stack. The retrieval checkpoints use it
as an encoder: attention is bidirectional and the convolution is centered. With
``causal=True`` the same weights run as the decoder (transformers' ``Lfm2Model``), which
is how parity with a reference implementation is checked.

Sequences are packed end to end (:mod:`.packing`): ``input_ids`` is ``[T]`` and
``cu_seqlens`` marks where each sequence starts. Padding never enters the convolution, so
a sequence's hidden states are the same alone or in any batch.

Attribute names follow the checkpoint weights, so a checkpoint's state dict loads with
``load_state_dict`` once a ``model.`` / ``lfm2.`` prefix is stripped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Lfm2Config
from .packing import (
    PackedBatch,
    check_tokens,
    checked_bounds,
    flash_applies,
    packed_attention,
)

__all__ = ["Lfm2Model"]

RotaryTables = tuple[Tensor, Tensor]


# --------------------------------------------------------------------------- pieces


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension, computed in float32.

    ``weight * (x / sqrt(mean(x**2) + eps))``, the normalized value cast back to the
    input dtype before the weight multiplies it (the order transformers uses for LFM2).
    """

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """``[..., size]`` -> ``[..., size]``, same dtype."""
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def rotary_tables(
    positions: Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> RotaryTables:
    """RoPE cosines and sines for the given positions (half-split pairing: ``i`` with ``i + d/2``).

    Args:
        positions: ``[T]`` int64 positions.
        head_dim: per-head width ``d`` (even).
        theta: RoPE base.
        dtype: dtype of the queries and keys they will rotate.

    Returns:
        ``(cos, sin)``, each ``[T, 1, head_dim]`` in ``dtype`` (broadcast over heads).
    """
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device)
    inv_freq = 1.0 / (theta ** (exponents / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)[:, None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, rope: RotaryTables) -> Tensor:
    """Rotate ``x`` ``[T, heads, head_dim]`` by the per-token angles in ``rope``."""
    cos, sin = rope
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


class SwiGLU(nn.Module):
    """Gated feed-forward ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.w3 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.w2 = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, hidden]`` -> ``[T, hidden]``."""
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ShortConv(nn.Module):
    """Gated short depthwise convolution: ``out_proj(C * conv(B * x))``.

    ``in_proj`` yields the gates ``B``, ``C`` and the input ``x`` (in that order). The
    convolution is centered (``k // 2`` taps on each side) for the encoder and causal
    (``k - 1`` taps to the left) for the decoder; outside its own sequence a token sees
    zeros, exactly as if each sequence ran alone with zero padding.
    """

    def __init__(self, config: Lfm2Config) -> None:
        super().__init__()
        hidden, kernel = config.hidden_size, config.conv_L_cache
        self.in_proj = nn.Linear(hidden, 3 * hidden, bias=config.conv_bias)
        # Only the weight ([hidden, 1, kernel]) and bias are used; forward does its own padding.
        self.conv = nn.Conv1d(hidden, hidden, kernel, groups=hidden, bias=config.conv_bias)
        self.out_proj = nn.Linear(hidden, hidden, bias=config.conv_bias)

    def forward(self, x: Tensor, batch: PackedBatch, rope: RotaryTables) -> Tensor:
        """``[T, hidden]`` -> ``[T, hidden]``; ``rope`` is unused (uniform block interface)."""
        b_gate, c_gate, values = self.in_proj(x).chunk(3, dim=-1)
        mixed = packed_depthwise_conv(b_gate * values, self.conv.weight, self.conv.bias, batch)
        return self.out_proj(c_gate * mixed)


def packed_depthwise_conv(
    x: Tensor, weight: Tensor, bias: Tensor | None, batch: PackedBatch
) -> Tensor:
    """Depthwise 1-D convolution of each packed sequence with zero padding at its ends.

    The tokens are copied into a "gapped" layout where ``k - 1`` zeros separate
    neighbouring sequences, so every window sees its own sequence or zeros, never a
    neighbour; the taps are then summed as shifted slices, which keeps the ``[T, hidden]``
    layout (no transposes) on every device.

    Args:
        x: ``[T, hidden]`` packed inputs.
        weight: ``[hidden, 1, k]`` depthwise kernel (``nn.Conv1d`` layout, cross-correlation).
        bias: ``[hidden]`` or None.
        batch: the forward pass's plan (``conv_index``, ``conv_width``, ``causal``).

    Returns:
        ``[T, hidden]``, same dtype as ``x``.
    """
    kernel = weight.shape[-1]
    left = kernel - 1 if batch.causal else kernel // 2
    gapped = x.new_zeros(batch.conv_width, x.shape[1])
    gapped = gapped.index_copy(0, batch.conv_index + left, x)
    n_out = batch.conv_width - kernel + 1
    taps = weight[:, 0, :]
    out = gapped[:n_out] * taps[:, 0]
    for j in range(1, kernel):
        out = out + gapped[j : j + n_out] * taps[:, j]
    if bias is not None:
        out = out + bias
    return out.index_select(0, batch.conv_index)


class GroupedQueryAttention(nn.Module):
    """Attention with per-head RMSNorm on queries and keys before RoPE, and shared KV heads."""

    def __init__(self, config: Lfm2Config) -> None:
        super().__init__()
        hidden, head_dim = config.hidden_size, config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = head_dim
        self.q_proj = nn.Linear(hidden, self.num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, self.num_kv_heads * head_dim, bias=False)
        self.out_proj = nn.Linear(self.num_heads * head_dim, hidden, bias=False)
        self.q_layernorm = RMSNorm(head_dim, config.norm_eps)
        self.k_layernorm = RMSNorm(head_dim, config.norm_eps)

    def forward(self, x: Tensor, batch: PackedBatch, rope: RotaryTables) -> Tensor:
        """``[T, hidden]`` -> ``[T, hidden]``; attention stays inside each sequence."""
        n_tokens = x.shape[0]
        q = self.q_proj(x).view(n_tokens, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(n_tokens, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(n_tokens, self.num_kv_heads, self.head_dim)
        q = apply_rotary(self.q_layernorm(q), rope)
        k = apply_rotary(self.k_layernorm(k), rope)
        out = packed_attention(q, k, v, batch)
        return self.out_proj(out.reshape(n_tokens, -1))


# --------------------------------------------------------------------------- the model


class Lfm2Block(nn.Module):
    """One pre-norm residual block: a token mixer (``conv`` or ``self_attn``), then SwiGLU."""

    def __init__(self, config: Lfm2Config, layer_type: str) -> None:
        super().__init__()
        self.operator_norm = RMSNorm(config.hidden_size, config.norm_eps)
        # The mixer keeps its checkpoint name; a second attribute would duplicate its weights
        # in the state dict.
        self.mixer_name = "conv" if layer_type == "conv" else "self_attn"
        mixer = ShortConv(config) if layer_type == "conv" else GroupedQueryAttention(config)
        self.add_module(self.mixer_name, mixer)
        self.ffn_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.feed_forward = SwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, x: Tensor, batch: PackedBatch, rope: RotaryTables) -> Tensor:
        """``[T, hidden]`` -> ``[T, hidden]``."""
        mixer = getattr(self, self.mixer_name)
        x = x + mixer(self.operator_norm(x), batch, rope)
        return x + self.feed_forward(self.ffn_norm(x))


class Lfm2Model(nn.Module):
    """The LFM2 backbone on packed sequences: bidirectional encoder, or causal decoder.

    Build it on the ``meta`` device and load with ``load_state_dict(sd, assign=True)`` to
    skip random initialisation of the 350M weights.

    Args:
        config: the backbone's shapes.
        causal: run as the decoder (causal attention, left-padded convolution) instead
            of the bidirectional encoder of the retrieval checkpoints.
    """

    def __init__(self, config: Lfm2Config, *, causal: bool = False) -> None:
        super().__init__()
        self.config = config
        self.causal = causal
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.layers = nn.ModuleList(Lfm2Block(config, t) for t in config.layer_types)
        self.embedding_norm = RMSNorm(config.hidden_size, config.norm_eps)

    def forward(
        self, input_ids: Tensor, cu_seqlens: Tensor, key_mask: Tensor | None = None
    ) -> Tensor:
        """Hidden states of every packed token.

        Args:
            input_ids: ``[T]`` int64 token ids, the sequences packed end to end.
            cu_seqlens: ``[n_seqs + 1]`` int32 boundaries: ``0 = cu[0] < cu[1] < ... = T``.
            key_mask: ``[T]`` bool; False marks a token other tokens may not attend to
                (ColBERT query expansion). Such tokens still get hidden states and still
                feed the convolution. None = every token is visible.

        Returns:
            ``[T, hidden]`` after ``embedding_norm``, in the model's dtype.

        Raises:
            TypeError: ``input_ids``, ``cu_seqlens`` or ``key_mask`` has the wrong shape or dtype.
            InputError: ``cu_seqlens`` does not describe ``T`` tokens in non-empty sequences,
                or ``key_mask`` hides every key a query could see.
        """
        n_tokens = check_tokens(input_ids, key_mask)
        device = input_ids.device
        bounds = checked_bounds(cu_seqlens, n_tokens)
        hidden = self.embed_tokens(input_ids)
        if n_tokens == 0:
            return self.embedding_norm(hidden)
        batch = PackedBatch.build(
            cu_seqlens.to(device),
            bounds,
            None if key_mask is None else key_mask.to(device),
            causal=self.causal,
            conv_kernel_size=self.config.conv_L_cache,
            allow_flash=flash_applies(hidden),
        )
        rope = rotary_tables(
            batch.positions, self.config.head_dim, self.config.rope_theta, hidden.dtype
        )
        for layer in self.layers:
            hidden = layer(hidden, batch, rope)
        return self.embedding_norm(hidden)

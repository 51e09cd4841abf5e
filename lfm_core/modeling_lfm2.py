"""The LFM2 backbone in plain torch, run on packed sequences.

LFM2 stacks pre-norm residual blocks. Each block mixes tokens with either a gated short
depthwise convolution or grouped-query attention, then applies a SwiGLU feed-forward;
a final RMSNorm (``embedding_norm``) closes the stack. The retrieval checkpoints use it
as an encoder: attention is bidirectional and the convolution is centered. With
``causal=True`` the same weights run as the decoder (transformers' ``Lfm2Model``), which
is how parity with a reference implementation is checked.

Sequences are packed end to end: ``input_ids`` is ``[T]`` and ``cu_seqlens`` marks where
each sequence starts. Padding never enters the convolution, so a sequence's hidden
states are the same alone or in any batch. Attention uses flash-attn's varlen kernel
when it is installed and applicable, and torch SDPA on a padded copy with an exact key
mask otherwise.

Attribute names follow the checkpoint weights, so a checkpoint's state dict loads with
``load_state_dict`` once a ``model.`` / ``lfm2.`` prefix is stripped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Lfm2Config
from .errors import InputError

__all__ = [
    "Lfm2Model",
    "PackedBatch",
    "sequence_ids_from_cu_seqlens",
]

AttentionPath = Literal["flash", "dense", "padded"]
RotaryTables = tuple[Tensor, Tensor]


# --------------------------------------------------------------------------- packing


def sequence_ids_from_cu_seqlens(cu_seqlens: Tensor, n_tokens: int) -> Tensor:
    """The index of the sequence each packed token belongs to.

    Args:
        cu_seqlens: ``[n_seqs + 1]`` integer boundaries, ``cu_seqlens[0] == 0``.
        n_tokens: ``cu_seqlens[-1]``, passed in so that no device sync is needed.

    Returns:
        ``[n_tokens]`` int64 on ``cu_seqlens.device``.

    >>> sequence_ids_from_cu_seqlens(torch.tensor([0, 3, 5]), 5)
    tensor([0, 0, 0, 1, 1])
    """
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    seq_ids = torch.arange(lengths.shape[0], device=cu_seqlens.device)
    return torch.repeat_interleave(seq_ids, lengths, output_size=n_tokens)


def _checked_bounds(cu_seqlens: Tensor, n_tokens: int) -> list[int]:
    """``cu_seqlens`` on the host, after checking it describes ``n_tokens`` packed tokens."""
    if cu_seqlens.ndim != 1 or cu_seqlens.dtype.is_floating_point or cu_seqlens.dtype == torch.bool:
        raise TypeError(
            f"cu_seqlens must be a 1-D integer tensor, got shape {tuple(cu_seqlens.shape)} "
            f"and dtype {cu_seqlens.dtype}"
        )
    bounds: list[int] = cu_seqlens.tolist()
    rising = all(a < b for a, b in pairwise(bounds))
    if not bounds or bounds[0] != 0 or bounds[-1] != n_tokens or not rising:
        shown = bounds if len(bounds) <= 10 else [*bounds[:5], "...", *bounds[-3:]]
        raise InputError(
            f"cu_seqlens must rise strictly from 0 to the number of tokens ({n_tokens}), "
            f"one entry per sequence boundary; got {shown}"
        )
    return bounds


def _has_masked_keys(key_mask: Tensor, cu_seqlens: Tensor, causal: bool) -> bool:
    """Whether ``key_mask`` hides any key; raises if some query would be left with none."""
    counts = torch.cat([key_mask.new_zeros(1, dtype=torch.long), key_mask.cumsum(0)])
    keys_per_seq = counts[cu_seqlens[1:].long()] - counts[cu_seqlens[:-1].long()]
    # A query with no visible key would turn softmax into NaN. Causally, the first token
    # of a sequence sees only itself; bidirectionally, every token sees the whole sequence.
    first_visible = key_mask[cu_seqlens[:-1].long()]
    keyless = first_visible.logical_not() if causal else keys_per_seq == 0
    all_visible, any_keyless = torch.stack([key_mask.all(), keyless.any()]).tolist()
    if any_keyless:
        first = int(keyless.nonzero()[0, 0])
        where = "its first token" if causal else "every token"
        raise InputError(f"key_mask hides {where} of sequence {first}; nothing left to attend to")
    return not all_visible


def _padded_attention_mask(
    pad_index: Tensor, key_mask: Tensor | None, n_seqs: int, max_len: int, causal: bool
) -> Tensor:
    """Boolean SDPA mask for the padded layout: True where a query may attend to a key.

    Returns:
        ``[n_seqs, 1, 1, max_len]`` bool, or ``[n_seqs, 1, max_len, max_len]`` when causal.
    """
    visible = key_mask if key_mask is not None else torch.ones_like(pad_index, dtype=torch.bool)
    slots = torch.zeros(n_seqs * max_len, dtype=torch.bool, device=pad_index.device)
    mask = slots.index_copy(0, pad_index, visible).view(n_seqs, 1, 1, max_len)
    if causal:
        mask = mask & torch.ones(max_len, max_len, dtype=torch.bool, device=mask.device).tril()
    return mask


@dataclass(frozen=True)
class PackedBatch:
    """Index tensors of one packed forward pass, computed once and shared by every layer.

    Attributes:
        cu_seqlens: ``[n_seqs + 1]`` int32 sequence boundaries in the packed tokens.
        positions: ``[T]`` int64 position of each token inside its own sequence.
        n_seqs: number of sequences.
        max_len: length of the longest sequence.
        causal: attention and convolution look only backwards.
        attention: ``"flash"`` (varlen kernel on the packed tokens), ``"dense"`` (all
            sequences have one length and no key is hidden: a free reshape to
            ``[n_seqs, max_len]``), or ``"padded"`` (scatter to a padded layout, masked SDPA).
        pad_index: ``[T]`` int64 slot of each token in the ``[n_seqs * max_len]`` padded
            layout; ``"padded"`` only.
        attn_mask: bool SDPA mask for the padded layout (True = may attend); ``"padded"`` only.
        conv_index: ``[T]`` int64 slot of each token's convolution output in the gapped
            layout (sequences separated by ``kernel_size - 1`` zeros).
        conv_width: length of the gapped layout.
    """

    cu_seqlens: Tensor
    positions: Tensor
    n_seqs: int
    max_len: int
    causal: bool
    attention: AttentionPath
    pad_index: Tensor | None
    attn_mask: Tensor | None
    conv_index: Tensor
    conv_width: int

    @classmethod
    def build(
        cls,
        cu_seqlens: Tensor,
        bounds: list[int],
        key_mask: Tensor | None,
        *,
        causal: bool,
        conv_kernel_size: int,
        allow_flash: bool,
    ) -> PackedBatch:
        """Plan one forward pass.

        Args:
            cu_seqlens: ``[n_seqs + 1]`` integer boundaries on the model's device.
            bounds: the same boundaries on the host, already checked.
            key_mask: ``[T]`` bool, False = may not be attended to as a key; or None.
            causal: plan for the decoder form.
            conv_kernel_size: the short convolution's kernel size.
            allow_flash: flash-attn is importable and the model is on CUDA in half precision.
        """
        n_tokens, n_seqs = bounds[-1], len(bounds) - 1
        lengths = [b - a for a, b in pairwise(bounds)]
        max_len = max(lengths)
        cu32 = cu_seqlens.to(torch.int32)
        seq_ids = sequence_ids_from_cu_seqlens(cu32, n_tokens)
        token_index = torch.arange(n_tokens, device=cu_seqlens.device)
        positions = token_index - cu32.long()[seq_ids]
        masked = key_mask is not None and _has_masked_keys(key_mask, cu32, causal)
        pad_index = attn_mask = None
        attention: AttentionPath
        if allow_flash and not masked:
            attention = "flash"
        elif not masked and min(lengths) == max_len:
            attention = "dense"
        else:
            attention = "padded"
            pad_index = seq_ids * max_len + positions
            attn_mask = _padded_attention_mask(
                pad_index, key_mask if masked else None, n_seqs, max_len, causal
            )
        gap = conv_kernel_size - 1
        return cls(
            cu_seqlens=cu32,
            positions=positions,
            n_seqs=n_seqs,
            max_len=max_len,
            causal=causal,
            attention=attention,
            pad_index=pad_index,
            attn_mask=attn_mask,
            conv_index=token_index + gap * seq_ids,
            conv_width=n_tokens + gap * n_seqs,
        )


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


# --------------------------------------------------------------------------- attention


@functools.cache
def _flash_attn_varlen() -> Callable[..., Tensor] | None:
    """flash-attn's varlen kernel, or None when flash-attn is not installed."""
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


def packed_attention(q: Tensor, k: Tensor, v: Tensor, batch: PackedBatch) -> Tensor:
    """Softmax attention of each packed sequence over its own (visible) keys.

    Args:
        q: ``[T, heads, head_dim]`` rotated queries.
        k: ``[T, kv_heads, head_dim]`` rotated keys; query head ``h`` uses KV head
            ``h // (heads // kv_heads)``.
        v: ``[T, kv_heads, head_dim]`` values.
        batch: the forward pass's plan; ``batch.attention`` picks the kernel.

    Returns:
        ``[T, heads, head_dim]``, same dtype as ``q``.
    """
    if batch.attention == "flash":
        flash = _flash_attn_varlen()
        if flash is None:
            raise RuntimeError("PackedBatch planned flash attention but flash-attn is missing")
        cu, longest = batch.cu_seqlens, batch.max_len
        return flash(q, k, v, cu, cu, longest, longest, causal=batch.causal)
    n_seqs, longest = batch.n_seqs, batch.max_len
    if batch.attention == "dense":
        q4, k4, v4 = (t.view(n_seqs, longest, *t.shape[1:]) for t in (q, k, v))
        return _sdpa(q4, k4, v4, None, batch.causal).reshape(q.shape)
    if batch.pad_index is None:
        raise RuntimeError("PackedBatch planned padded attention without pad_index")
    index = batch.pad_index
    q4, k4, v4 = (_scatter_padded(t, index, n_seqs, longest) for t in (q, k, v))
    # The mask already carries causality, so SDPA's own is_causal flag stays off.
    out = _sdpa(q4, k4, v4, batch.attn_mask, False)
    return out.reshape(n_seqs * longest, *q.shape[1:]).index_select(0, index)


def _scatter_padded(x: Tensor, pad_index: Tensor, n_seqs: int, max_len: int) -> Tensor:
    """Packed ``[T, heads, d]`` -> zero-padded ``[n_seqs, max_len, heads, d]``."""
    slots = x.new_zeros(n_seqs * max_len, *x.shape[1:])
    return slots.index_copy(0, pad_index, x).view(n_seqs, max_len, *x.shape[1:])


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
    """Torch SDPA on ``[n, L, heads, d]`` inputs, returning ``[n, L, heads, d]``."""
    groups = q.shape[2] // k.shape[2]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if groups > 1:
        # Explicit repeats rather than enable_gqa: works on torch < 2.5 and keeps the fused
        # CUDA kernels eligible when a mask is given.
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    return out.transpose(1, 2)


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
        n_tokens = _check_tokens(input_ids, key_mask)
        device = input_ids.device
        bounds = _checked_bounds(cu_seqlens, n_tokens)
        hidden = self.embed_tokens(input_ids)
        if n_tokens == 0:
            return self.embedding_norm(hidden)
        batch = PackedBatch.build(
            cu_seqlens.to(device),
            bounds,
            None if key_mask is None else key_mask.to(device),
            causal=self.causal,
            conv_kernel_size=self.config.conv_L_cache,
            allow_flash=_flash_applies(hidden),
        )
        rope = rotary_tables(
            batch.positions, self.config.head_dim, self.config.rope_theta, hidden.dtype
        )
        for layer in self.layers:
            hidden = layer(hidden, batch, rope)
        return self.embedding_norm(hidden)


def _check_tokens(input_ids: Tensor, key_mask: Tensor | None) -> int:
    """The number of packed tokens, after checking ``input_ids`` and ``key_mask``."""
    if input_ids.ndim != 1 or input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"input_ids must be a 1-D int64 tensor of packed tokens, got shape "
            f"{tuple(input_ids.shape)} and dtype {input_ids.dtype}"
        )
    n_tokens = input_ids.shape[0]
    if key_mask is not None and (key_mask.dtype != torch.bool or key_mask.shape != (n_tokens,)):
        raise TypeError(
            f"key_mask must be a bool tensor of shape ({n_tokens},) like input_ids, got shape "
            f"{tuple(key_mask.shape)} and dtype {key_mask.dtype}"
        )
    return n_tokens


def _flash_applies(hidden: Tensor) -> bool:
    """flash-attn runs only on CUDA in half precision."""
    return (
        hidden.is_cuda
        and hidden.dtype in (torch.float16, torch.bfloat16)
        and _flash_attn_varlen() is not None
    )

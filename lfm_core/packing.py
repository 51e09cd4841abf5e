"""Packed sequences: the plan of one forward pass and attention that stays inside each sequence.

A batch of sequences is laid end to end: ``input_ids`` is ``[T]`` and ``cu_seqlens`` marks
where each sequence starts, so no padding enters the linear layers. Our model files
(``modeling_lfm2``, ``modeling_bert``) share this: :class:`PackedBatch` is planned once per
forward and read by every layer; :func:`packed_attention` runs flash-attn's varlen kernel
when it applies (CUDA, half precision, installed), else torch SDPA on a padded copy of
``q``/``k``/``v`` with an exact key mask, so a sequence's states are the same alone or in
any batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError

__all__ = [
    "PackedBatch",
    "check_tokens",
    "checked_bounds",
    "flash_applies",
    "flash_attn_varlen",
    "packed_attention",
    "sequence_ids_from_cu_seqlens",
]

AttentionPath = Literal["flash", "dense", "padded"]


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


def checked_bounds(cu_seqlens: Tensor, n_tokens: int) -> list[int]:
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


# --------------------------------------------------------------------------- attention


@functools.cache
def flash_attn_varlen() -> Callable[..., Tensor] | None:
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
        flash = flash_attn_varlen()
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


# --------------------------------------------------------------------------- checks


def check_tokens(input_ids: Tensor, key_mask: Tensor | None) -> int:
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


def flash_applies(hidden: Tensor) -> bool:
    """flash-attn runs only on CUDA in half precision."""
    return (
        hidden.is_cuda
        and hidden.dtype in (torch.float16, torch.bfloat16)
        and flash_attn_varlen() is not None
    )

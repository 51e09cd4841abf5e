"""Opt-in int8 inference for the linear layers on CPU.

Weights are quantized once, symmetrically, with one scale per output channel; activations
are quantized on the fly with one scale per token, and the few input features whose
magnitude exceeds a threshold are multiplied in float32 instead (the mixed-precision
decomposition of LLM.int8(), Dettmers et al. 2022). Both keep the vectors close to float32:

- torch.ao's ``quantize_dynamic`` uses one scale for a whole batch (and 7-bit activations
  on x86), so one outlier token coarsens every other token in the batch;
- transformer hidden states carry a handful of outlier features (all-MiniLM-L6-v2 has ~2
  per layer above 6.0); with them in the int8 scale, the other features lose their bits.

On all-MiniLM-L6-v2 the worst cosine to float32 is 0.957 with ``quantize_dynamic``, 0.986
with per-token scales alone, and >= 0.99 with the decomposition (docs/benchmarks.md). The
product runs in int8 with int32 accumulation (``torch._int_mm``, the kernel torchao's int8
path uses too).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Int8Linear", "quantize_linears_int8", "replace_linears"]

_QMAX = 127.0


def _symmetric_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize each row of ``x`` to int8 with its own scale; returns (values, scales[rows, 1])."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / _QMAX
    return torch.round(x / scale).clamp_(-_QMAX, _QMAX).to(torch.int8), scale


def _int8_rows_without(
    rows: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row int8 of ``rows`` with the columns above ``threshold`` zeroed (and left out of
    the scales); returns (values, scales[rows, 1], indices of those columns)."""
    magnitude = rows.abs()
    outliers = (magnitude.amax(dim=0) > threshold).nonzero().squeeze(1)
    if outliers.numel():
        magnitude.index_fill_(1, outliers, 0.0)
    scale = magnitude.amax(dim=1, keepdim=True).clamp_min_(1e-12).div_(_QMAX)
    scaled = rows.div(scale)
    if outliers.numel():
        scaled.index_fill_(1, outliers, 0.0)
    return scaled.round_().clamp_(-_QMAX, _QMAX).to(torch.int8), scale, outliers


class Int8Linear(nn.Module):
    """A frozen ``nn.Linear`` computing ``x @ W.T + b`` with int8 weights and activations."""

    weight_int8: torch.Tensor  # [in, out]
    weight_scale: torch.Tensor  # [1, out]
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, outlier_threshold: float = 6.0) -> None:
        super().__init__()
        if linear.weight.device.type != "cpu":
            raise ValueError("Int8Linear runs on CPU only")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.outlier_threshold = outlier_threshold
        weight, scale = _symmetric_int8(linear.weight.detach().float())
        # Stored as [in, out] so the product needs no transpose per call.
        self.register_buffer("weight_int8", weight.t().contiguous())
        self.register_buffer("weight_scale", scale.reshape(1, -1))
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        if rows.shape[0] == 0:
            return x.new_zeros(*x.shape[:-1], self.out_features)
        values, scale, outliers = _int8_rows_without(rows, self.outlier_threshold)
        acc = torch._int_mm(values, self.weight_int8)
        out = acc.float().mul_(scale).mul_(self.weight_scale)
        if outliers.numel():
            out.addmm_(rows[:, outliers], self.weight_int8[outliers].float() * self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def replace_linears(module: nn.Module, make: Callable[[nn.Linear], nn.Module | None]) -> int:
    """Replace each ``nn.Linear`` inside ``module`` by ``make(linear)``, in place.

    ``make`` returns the replacement, or None to keep that layer. Returns how many were replaced.
    """
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            new = make(child)
            if new is not None:
                setattr(module, name, new)
                count += 1
        else:
            count += replace_linears(child, make)
    return count


def quantize_linears_int8(module: nn.Module, outlier_threshold: float = 6.0) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` by an :class:`Int8Linear`, in place.

    Returns ``module``. Only for inference: the int8 weights have no gradient.
    ``outlier_threshold``: input features above it (in any row) skip int8; ``inf`` turns the
    decomposition off.
    """
    replace_linears(module, lambda linear: Int8Linear(linear, outlier_threshold))
    return module

"""Float32 linear layers on CPU with their weights pre-packed for oneDNN.

``F.linear`` hands each product to the BLAS with the weight in its checkpoint layout, and
the BLAS re-blocks it on every call. oneDNN can re-block the weight once, at load time,
into the layout its kernels read; on the 2-core AMD EPYC of docs/benchmarks.md that made
the products up to 1.4x faster, the LFM2 350M encoder 1.15-1.3x faster on documents and
1.9x on a single query, with vectors within 1e-6 of ``F.linear``'s. torch.compile's CPU backend does the same
(``torch.ops.mkldnn._reorder_linear_weight`` / ``_linear_pointwise``); this module uses
those ops in eager mode. Where they are missing or disagree with ``F.linear`` (a torch
build without oneDNN, another CPU), :func:`pack_linears_for_cpu` leaves the layers as
they are.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .quantization import replace_linears

__all__ = [
    "OneDNNLinear",
    "onednn_linear_available",
    "pack_linears_checked",
    "pack_linears_for_cpu",
]

logger = logging.getLogger(__name__)

# oneDNN picks its weight layout for a typical row count; any count works with it.
_ROWS_HINT = 1024


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().float().contiguous(), _ROWS_HINT)


def _linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@functools.cache
def onednn_linear_available() -> bool:
    """True when this torch build packs linear weights for oneDNN and computes them right."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        weight = torch.randn(24, 40, generator=gen)
        bias = torch.randn(24, generator=gen)
        x = torch.randn(3, 7, 40, generator=gen)
        with torch.inference_mode():
            got = _linear(x, _pack(weight), bias)
        return bool(torch.allclose(got, F.linear(x, weight, bias), rtol=1e-4, atol=1e-4))
    except (RuntimeError, AttributeError, NotImplementedError) as exc:
        logger.debug("oneDNN linear packing unavailable: %s", exc)
        return False


class OneDNNLinear(nn.Module):
    """A frozen float32 ``nn.Linear`` whose weight lives in oneDNN's blocked layout (CPU only).

    The packed weight is an opaque tensor, so this module saves, copies and pickles its
    weight in the ordinary layout (``state_dict`` keys ``weight`` and ``bias``, as
    ``nn.Linear``'s) and packs it again when loaded.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.weight.device.type != "cpu":
            raise ValueError("OneDNNLinear runs on CPU only")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self._set(linear.weight, linear.bias)

    def _set(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        # A plain attribute, not a buffer: module.to() and friends cannot handle the layout.
        self.packed_weight = _pack(weight)
        self.bias = None if bias is None else bias.detach().float().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x.float(), self.packed_weight, self.bias).to(x.dtype)

    def dense_weight(self) -> torch.Tensor:
        """The weight as ``nn.Linear`` holds it, ``[out_features, in_features]``."""
        return self.packed_weight.to_dense()

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.dense_weight()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        if prefix + "weight" not in state_dict:
            missing_keys.append(prefix + "weight")
            return
        self._set(state_dict[prefix + "weight"], state_dict.get(prefix + "bias"))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["packed_weight"] = self.dense_weight()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.packed_weight = _pack(state["packed_weight"])

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def pack_linears_for_cpu(module: nn.Module) -> int:
    """Replace every float32 CPU ``nn.Linear`` inside ``module`` by a :class:`OneDNNLinear`.

    In place; returns how many were replaced (0 where oneDNN packing is unavailable).
    """
    if not onednn_linear_available():
        return 0

    def pack(linear: nn.Linear) -> OneDNNLinear | None:
        weight = linear.weight
        return OneDNNLinear(linear) if weight.is_cpu and weight.dtype == torch.float32 else None

    return replace_linears(module, pack)


def pack_linears_checked(module: nn.Module, probe: Callable[[], torch.Tensor]) -> int:
    """:func:`pack_linears_for_cpu`, kept only if ``probe()`` gives the same output after.

    For models whose code we do not own (transformers' AutoModels): one of them may read a
    linear layer's ``.weight`` itself, which a packed layer no longer has. ``probe`` runs a
    small forward; if it fails or differs (beyond 1e-5) once packed, every layer is put
    back as it was. Returns how many layers stay packed.
    """
    originals = {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    with torch.inference_mode():
        before = probe()
    if not pack_linears_for_cpu(module):
        return 0
    try:
        with torch.inference_mode():
            same = bool(torch.allclose(probe(), before, rtol=1e-5, atol=1e-5))
    except (RuntimeError, AttributeError, TypeError) as exc:
        logger.debug("oneDNN-packed model failed its probe: %s", exc)
        same = False
    if same:
        return len(originals)
    for name, linear in originals.items():
        module.set_submodule(name, linear)
    return 0

"""Float32 linear layers on CPU with their weights pre-packed for oneDNN.

``F.linear`` hands each product to the BLAS with the weight in its checkpoint layout, and
the BLAS re-blocks it on every call. oneDNN can re-block the weight once, at load time,
into the layout its kernels read; on the 2-core AMD EPYC (Zen 5, AVX-512) of
docs/benchmarks.md that made the products up to 1.4x faster, the LFM2 350M encoder
1.15-1.3x faster on documents and 1.9x on a single query, with vectors within 1e-6 of
``F.linear``'s. torch.compile's CPU backend does the same
(``torch.ops.mkldnn._reorder_linear_weight`` / ``_linear_pointwise``); this module uses
those ops in eager mode. Where they are missing or disagree with ``F.linear`` (a torch
build without oneDNN, another CPU), :func:`pack_linears_for_cpu` leaves the layers as
they are.

Which kernel is faster depends on the CPU and on the number of rows: on a Zen 3 host
(AVX2, no AVX-512) the packed kernel won below ~64 rows (1.1-2.4x) and lost above
(0.8-0.9x, MiniLM shapes), while on Zen 5 it won at every size. So each layer shape is
timed once at load (:func:`plain_from_rows`; 0.1 s for MiniLM, 1-1.5 s for LFM2): a layer keeps
``F.linear`` with its plain weight for products of that many rows and more, where
``F.linear`` is faster here, and the packed kernel below.
"""

from __future__ import annotations

import functools
import logging
import time
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
    "plain_from_rows",
]

logger = logging.getLogger(__name__)

# oneDNN picks its weight layout for a typical row count; any count works with it.
_ROWS_HINT = 1024
# Row counts at which the two kernels are timed (a query is ~16 tokens, a merged batch of
# queries or a few documents hundreds). F.linear takes over only where it is clearly
# faster: the packed kernel keeps ties.
_PROBE_ROWS = (16, 64, 256)
_PLAIN_MARGIN = 0.95
_FRESH_ROWS = 256
_TIMED_CALLS = 2


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

    Args:
        linear: the layer to serve; its weight is copied, not aliased.
        plain_from_rows: products of at least this many rows (all dimensions but the last)
            run through ``F.linear`` on a plain copy of the weight, where that is faster on
            this CPU (:func:`plain_from_rows`); ``None``: always the packed kernel, and no
            plain copy is kept.

    The packed weight is an opaque tensor, so this module saves, copies and pickles its
    weight in the ordinary layout (``state_dict`` keys ``weight`` and ``bias``, as
    ``nn.Linear``'s) and packs it again when loaded.
    """

    def __init__(self, linear: nn.Linear, plain_from_rows: int | None = None) -> None:
        super().__init__()
        if linear.weight.device.type != "cpu":
            raise ValueError("OneDNNLinear runs on CPU only")
        if plain_from_rows is not None and plain_from_rows < 1:
            raise ValueError(f"plain_from_rows must be >= 1 or None, not {plain_from_rows}")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.plain_from_rows = plain_from_rows
        # The same threshold in elements of the input, what forward() compares.
        self._plain_from_numel = (plain_from_rows or 0) * linear.in_features
        self._set(linear.weight, linear.bias)

    def _set(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        # Plain attributes, not buffers: module.to() and friends cannot handle the layout.
        weight = weight.detach().to(torch.float32, copy=True).contiguous()
        self.packed_weight = _pack(weight)
        self.plain_weight = weight if self.plain_from_rows is not None else None
        self.bias = None if bias is None else bias.detach().float().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        plain = self.plain_weight
        if plain is not None and x32.numel() >= self._plain_from_numel:
            out = F.linear(x32, plain, self.bias)
        else:
            out = _linear(x32, self.packed_weight, self.bias)
        return out.to(x.dtype)

    def dense_weight(self) -> torch.Tensor:
        """The weight as ``nn.Linear`` holds it, ``[out_features, in_features]``."""
        if self.plain_weight is not None:
            return self.plain_weight
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
        state["plain_weight"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._set(state["packed_weight"], state["bias"])

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, plain_from_rows={self.plain_from_rows}"
        )


def plain_from_rows(in_features: int, out_features: int, bias: bool) -> int | None:
    """The row count from which ``F.linear`` beats the packed kernel for this layer shape
    on this CPU, with torch's current thread count; ``None`` where it never does.

    Both kernels are timed (best of two after a warm-up) at 256, 64 and 16 rows, largest
    first: the answer is the smallest of those from which ``F.linear`` is at least 5 %
    faster at every larger one. At 256 rows each timed call has a row count of its own, as
    merged batches do, so oneDNN's per-row-count kernel build is counted. Measured once
    per shape and thread count per process (0.1 s for MiniLM's three shapes, 1-1.5 s for
    the LFM2 350M layers on the Zen 3 host).
    """
    return _plain_from_rows(in_features, out_features, bias, torch.get_num_threads())


@functools.cache
def _plain_from_rows(in_features: int, out_features: int, bias: bool, threads: int) -> int | None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(out_features, in_features, generator=gen)
    b = torch.randn(out_features, generator=gen) if bias else None
    packed = _pack(weight)
    x = torch.randn(max(_PROBE_ROWS) + 2 * _TIMED_CALLS, in_features, generator=gen)

    def seconds(rows: int) -> tuple[float, float]:
        # oneDNN builds a kernel per row count and caches it. Queries repeat their few
        # lengths, so small products are timed with the kernel cached; a merged batch or a
        # batch of documents has a token count of its own, so large ones pay for the build.
        fresh = rows >= _FRESH_ROWS
        sizes = [rows + i + 1 if fresh else rows for i in range(2 * _TIMED_CALLS)]
        with torch.inference_mode():
            # The warm-up runs at `rows`, which no timed call uses when they must be fresh.
            plain_s = _best_time(lambda n: F.linear(x[:n], weight, b), rows, sizes[:_TIMED_CALLS])
            packed_s = _best_time(lambda n: _linear(x[:n], packed, b), rows, sizes[_TIMED_CALLS:])
        return plain_s, packed_s

    return _crossover(seconds)


def _crossover(seconds: Callable[[int], tuple[float, float]]) -> int | None:
    """The smallest probed row count from which ``F.linear`` is faster at every larger one,
    given ``seconds(rows) -> (f_linear_s, packed_s)``; ``None`` if it loses at the largest."""
    answer = None
    for rows in sorted(_PROBE_ROWS, reverse=True):
        plain_s, packed_s = seconds(rows)
        if plain_s > _PLAIN_MARGIN * packed_s:
            break
        answer = rows
    return answer


def _best_time(fn: Callable[[int], Any], warm_up: int, sizes: list[int]) -> float:
    """The fastest of ``fn(n)`` over ``sizes``, after a warm-up call ``fn(warm_up)``."""
    fn(warm_up)
    best = float("inf")
    for n in sizes:
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return best


def pack_linears_for_cpu(
    module: nn.Module,
    choose: Callable[[int, int, bool], int | None] = plain_from_rows,
) -> int:
    """Replace every float32 CPU ``nn.Linear`` inside ``module`` by a :class:`OneDNNLinear`.

    In place; returns how many were replaced (0 where oneDNN packing is unavailable).
    ``choose(in_features, out_features, bias)`` gives each layer's ``plain_from_rows``
    (default: timed on this CPU, :func:`plain_from_rows`).
    """
    if not onednn_linear_available():
        return 0

    def pack(linear: nn.Linear) -> OneDNNLinear | None:
        weight = linear.weight
        if not (weight.is_cpu and weight.dtype == torch.float32):
            return None
        rows = choose(linear.in_features, linear.out_features, linear.bias is not None)
        return OneDNNLinear(linear, plain_from_rows=rows)

    return replace_linears(module, pack)


def pack_linears_checked(
    module: nn.Module,
    probe: Callable[[], torch.Tensor],
    choose: Callable[[int, int, bool], int | None] = plain_from_rows,
) -> int:
    """:func:`pack_linears_for_cpu`, kept only if ``probe()`` gives the same output after.

    For models whose code we do not own (transformers' AutoModels): one of them may read a
    linear layer's ``.weight`` itself, which a packed layer no longer has. ``probe`` runs a
    small forward; if it fails or differs (beyond 1e-5) once packed, every layer is put
    back as it was. Returns how many layers stay packed.
    """
    originals = {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    with torch.inference_mode():
        before = probe()
    if not pack_linears_for_cpu(module, choose):
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

"""Timing and memory measurement shared by the harness and the PyLate worker.

Standard library and torch only: the PyLate worker imports it from its own environment.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Resident memory of this process (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def sync(device: str) -> None:
    """Wait for queued GPU work, so a timer stops when the work is done."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory added while the block runs, over what was in use when it started.

    On CUDA: ``max_memory_allocated`` (exact, tensors only). On CPU: resident memory
    sampled every 2 ms by a thread (an estimate: the allocator may reuse memory freed
    by an earlier run, and a spike shorter than 2 ms can be missed).
    """

    def __init__(self, device: str):
        self.device = device
        self.extra_bytes: int | None = None
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            base = rss_bytes()
            self._base = base or 0
            self._peak = self._base
            if base is not None:
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, rss_bytes() or 0)

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.extra_bytes = torch.cuda.max_memory_allocated() - self._base
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, rss_bytes() or 0)
            self.extra_bytes = self._peak - self._base


def weights_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (oneDNN-packed weights included)."""
    tensors = [*module.parameters(), *module.buffers()]
    # lfm_core.onednn.OneDNNLinear keeps its tensors as plain attributes (duck-typed here:
    # this module also runs in the PyLate environment, which has no lfm_core).
    for m in module.modules():
        if isinstance(getattr(m, "packed_weight", None), torch.Tensor):
            tensors += [t for t in (m.packed_weight, m.bias) if t is not None]
    return sum(t.numel() * t.element_size() for t in tensors)


def timed_run(fn: Callable[[], Any], device: str) -> dict[str, Any]:
    """Run ``fn`` once; its wall time and peak extra memory."""
    with PeakMemory(device) as mem:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "extra_bytes": mem.extra_bytes}


def latencies(fn: Callable[[], Any], device: str, *, warmup: int, reps: int) -> list[float]:
    """Wall time of ``reps`` calls of ``fn`` after ``warmup`` untimed ones."""
    return interleaved_latencies([fn], device, warmup=warmup, reps=reps)[0]


def interleaved_latencies(
    fns: Sequence[Callable[[], Any]], device: str, *, warmup: int, reps: int
) -> list[list[float]]:
    """Wall times of several functions called in turn, so drifting machine load hits all alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync(device)
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for times, fn in zip(out, fns):
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([4.0, 1.0, 3.0, 2.0], 50)
    2.0
    >>> percentile([4.0, 1.0, 3.0, 2.0], 95)
    4.0
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def batch_size_runs(
    encode: Callable[[Sequence[str], int], Any],
    documents: Sequence[str],
    device: str,
    *,
    default: int,
    candidates: Sequence[int],
    sweep_docs: int,
) -> list[dict[str, Any]]:
    """A peer's throughput at its default batch size and at its best one.

    The candidates (default included) are timed on the first ``sweep_docs`` documents;
    the fastest is then run on all of them, unless it is the default. No candidates: no sweep.

    Returns:
        ``[{"label", "batch_size", "seconds", "extra_bytes"}, ...]``: the default run,
        then the best run (with ``"label": "best of ..."``) when it differs.
    """
    runs = [
        {
            "label": "default",
            "batch_size": default,
            **timed_run(lambda: encode(documents, default), device),
        }
    ]
    if not candidates:  # no sweep (--quick on CPU): the default only
        return runs
    subset = documents[:sweep_docs]
    sizes = sorted({default, *candidates})
    speed = {b: timed_run(lambda b=b: encode(subset, b), device)["seconds"] for b in sizes}
    best = min(sizes, key=lambda b: speed[b])
    label = "best of " + ", ".join(str(b) for b in sizes)
    if best == default:
        runs[0]["label"] = f"default = {label}"
    else:
        runs.append(
            {
                "label": label,
                "batch_size": best,
                **timed_run(lambda: encode(documents, best), device),
            }
        )
    return runs

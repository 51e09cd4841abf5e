"""Which device an encoder runs on: ``"auto"`` resolved, any other name checked here first.

A device this machine lacks is refused before any weight is read, with one line naming
the ``device`` parameter and the devices there are (not torch's ``AssertionError: Torch not
compiled with CUDA enabled`` from deep inside the first forward pass).
"""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["available_devices", "parse_device", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> cuda, then mps, then cpu; any other device checked against this machine.

    Raises:
        InputError: ``device`` is not a device name, or names one this machine does not
            have (one line naming the ``device`` parameter and the devices there are).
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    wanted = parse_device(device)
    missing = _missing(wanted)
    if missing:
        raise InputError(
            f"device={str(device)!r} is not available: {missing}; pass device='auto' or one "
            f"of {', '.join(repr(d) for d in available_devices())}"
        )
    return wanted


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, without asking whether this machine has it.

    Raises:
        InputError: not a device name (``"gpu"``, ``"cuda:x"``, ``3``).
    """
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'"
        ) from None


def available_devices() -> list[str]:
    """The devices an encoder can run on here: ``cpu``, then ``cuda:N`` and ``mps`` if present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def _missing(device: torch.device) -> str:
    """Why ``device`` cannot be used on this machine ("" when it can)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            if torch.version.cuda is None:
                return f"this torch ({torch.__version__}) was built without CUDA"
            return "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES)"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA device{'s' if count != 1 else ''}"
    elif device.type == "mps" and not _mps_available():
        return "MPS needs Apple silicon and a torch built with it"
    elif device.type not in ("cpu", "cuda", "mps", "meta"):
        backend = getattr(torch, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            return f"this torch sees no {device.type} device"
    return ""

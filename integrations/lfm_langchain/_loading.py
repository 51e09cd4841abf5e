"""Checks shared by the adapters that load a model or take an already loaded one."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

# Fields that only mean something when the adapter loads the model itself.
_LOADING_OPTIONS = ("device", "batch_size", "max_tokens_per_batch")


def coerce_model_name(value: Any) -> Any:
    """Accept a ``pathlib.Path`` (or any ``os.PathLike``) for ``model_name``."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def check_loading_options(
    adapter: BaseModel, encoder: Any, expected: type[Any], adapter_name: str
) -> None:
    """Reject an ``encoder=`` of the wrong kind, or one combined with loading options.

    Args:
        adapter: The adapter being built; its explicitly set fields are inspected.
        encoder: What the caller passed as ``encoder=``.
        expected: The lfm_core encoder class the adapter needs.
        adapter_name: The adapter's class name, for messages.

    Raises:
        TypeError: ``encoder`` is not an instance of ``expected``.
        ValueError: ``model_name`` or a loading option was given as well.
    """
    if not isinstance(encoder, expected):
        raise TypeError(
            f"{adapter_name}: encoder is {type(encoder).__name__}; "
            f"expected lfm_core.{expected.__name__}"
        )
    if "model_name" in adapter.model_fields_set:
        raise ValueError(
            f"{adapter_name}: pass model_name= or encoder=, not both "
            f"(encoder already holds {encoder.model_name!r})"
        )
    given = [name for name in _LOADING_OPTIONS if getattr(adapter, name) is not None]
    if given:
        raise ValueError(
            f"{adapter_name}: {', '.join(given)} cannot be combined with encoder= (they are "
            f"used only when loading model_name=); pass them to "
            f"{expected.__name__}.from_pretrained(...)"
        )

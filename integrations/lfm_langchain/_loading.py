"""The loading fields the LangChain adapters share, as one :class:`lfm_core.LoadOptions`."""

from __future__ import annotations

import os
import warnings
from typing import Any

from lfm_core import LoadOptions


def coerce_model_name(value: Any) -> Any:
    """Accept a ``pathlib.Path`` (or any ``os.PathLike``) for ``model_name``."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def load_options(adapter: Any, owner: str) -> LoadOptions:
    """``model_kwargs`` plus the adapter's own loading fields (which win)."""
    max_batch_size = adapter.max_batch_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = adapter.batch_size
    if old is not None:
        warnings.warn(
            f"{owner}: batch_size is deprecated; it is max_batch_size (texts per forward pass)",
            DeprecationWarning,
            stacklevel=4,
        )
        max_batch_size = max_batch_size or old
    return LoadOptions.from_kwargs(adapter.model_kwargs, owner).replace(
        device=adapter.device,
        max_batch_size=max_batch_size,
        max_tokens_per_batch=adapter.max_tokens_per_batch,
    )

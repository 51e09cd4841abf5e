"""The loading fields the LangChain adapters share, as one :class:`lfm_core.LoadOptions`."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from lfm_core import InputError

if TYPE_CHECKING:
    from lfm_core import LoadOptions
    from lfm_core.remote import RemoteClient

# Fields that load a model in this process: meaningless when a service holds the model.
_LOCAL_ONLY = ("device", "max_tokens_per_batch", "model_kwargs", "normalize")


def coerce_model_name(value: Any) -> Any:
    """Accept a ``pathlib.Path`` (or any ``os.PathLike``) for ``model_name``."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def load_options(adapter: Any, owner: str) -> LoadOptions:
    """``model_kwargs`` plus the adapter's own loading fields (which win)."""
    from lfm_core import LoadOptions

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


def remote_client(adapter: Any, owner: str, encoder: Any) -> RemoteClient:
    """The service's client of an adapter built with ``base_url`` (remote mode).

    Raises:
        InputError: an encoder or a loading option is given too: the service holds the model.
    """
    from lfm_core.remote import RemoteClient

    given = [name for name in _LOCAL_ONLY if name in adapter.model_fields_set]
    if encoder is not None:
        given.insert(0, "encoder")
    if given:
        raise InputError(
            f"{owner}: {', '.join(given)} cannot be given with base_url: the service at "
            f"{adapter.base_url} loads and runs the model"
        )
    key = adapter.api_key.get_secret_value() if adapter.api_key is not None else None
    return RemoteClient(
        adapter.base_url,
        api_key=key,
        model=adapter.model_name if "model_name" in adapter.model_fields_set else None,
        timeout_s=adapter.timeout_s,
        max_retries=adapter.max_retries,
        batch_size=adapter.max_batch_size or 256,
    )

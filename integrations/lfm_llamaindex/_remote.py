"""Remote mode of the LlamaIndex adapters: the service's client, with no torch imported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lfm_core import InputError

if TYPE_CHECKING:
    from lfm_core.remote import RemoteClient

# What ``device`` shows on an adapter whose model runs in the service.
REMOTE_DEVICE = "remote"


def remote_client(
    owner: str,
    base_url: str,
    *,
    api_key: str | None,
    model: str | None,
    timeout_s: float,
    max_retries: int,
    batch_size: int,
    local: dict[str, Any],
) -> RemoteClient:
    """The client of ``lfm-retrieval serve`` at ``base_url``.

    Raises:
        InputError: a loading option (in ``local``) is given too: the service holds the model.
    """
    from lfm_core.remote import RemoteClient

    given = [name for name, value in local.items() if value is not None]
    if given:
        raise InputError(
            f"{owner}: {', '.join(given)} cannot be given with base_url: the service at "
            f"{base_url} loads and runs the model"
        )
    return RemoteClient(
        base_url,
        api_key=api_key,
        model=model,
        timeout_s=timeout_s,
        max_retries=max_retries,
        batch_size=batch_size,
    )

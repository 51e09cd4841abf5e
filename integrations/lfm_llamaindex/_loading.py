"""Resolve the ``encoder=`` / ``model_name=`` / ``device=`` arguments every adapter takes."""

from __future__ import annotations

import os
from typing import TypeVar

import torch

from lfm_core import DenseEncoder, InputError, LateInteractionEncoder

EncoderT = TypeVar("EncoderT", DenseEncoder, LateInteractionEncoder)


def resolve_encoder(
    kind: type[EncoderT],
    *,
    owner: str,
    encoder: EncoderT | None,
    model_name: str | os.PathLike[str] | None,
    device: str | None,
    default_model: str,
) -> EncoderT:
    """Return the encoder an adapter should use, loading it only when none was passed.

    Args:
        kind: The expected encoder class (``DenseEncoder`` or ``LateInteractionEncoder``).
        owner: The adapter's class name, used in error messages.
        encoder: An already loaded encoder to share, or ``None``.
        model_name: A hub id or local folder (``str`` or ``Path``) to load when ``encoder`` is
            ``None``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``None`` (= ``"auto"``).
        default_model: The hub id loaded when neither ``encoder`` nor ``model_name`` is given.

    Returns:
        The shared or freshly loaded encoder.

    Raises:
        TypeError: ``encoder`` is not a ``kind``.
        InputError: ``encoder`` is combined with a ``model_name`` or ``device`` it does not match.
    """
    if isinstance(model_name, os.PathLike):
        model_name = os.fspath(model_name)
    if encoder is None:
        return kind.from_pretrained(model_name or default_model, device=device or "auto")
    if not isinstance(encoder, kind):
        raise TypeError(
            f"{owner}: encoder must be an lfm_core.{kind.__name__}, not {type(encoder).__name__}"
        )
    # A loaded encoder already fixes the model and the device; a second, different answer
    # from the caller is a mistake worth reporting rather than silently ignoring.
    if model_name is not None and model_name != encoder.model_name:
        raise InputError(
            f"{owner}: model_name={model_name!r} does not match the encoder passed in "
            f"({encoder.model_name!r}); pass model_name= or encoder=, not both"
        )
    if (
        device is not None
        and device != "auto"
        and not _same_device(torch.device(device), encoder.device)
    ):
        raise InputError(
            f"{owner}: device={device!r} does not match the encoder passed in, which runs on "
            f"{encoder.device}; load the encoder on that device, or drop device="
        )
    return encoder


def _same_device(wanted: torch.device, actual: torch.device) -> bool:
    """``cuda`` matches ``cuda:0``: an index left out means "the current one"."""
    if wanted.type != actual.type:
        return False
    return wanted.index is None or wanted.index == (actual.index or 0)

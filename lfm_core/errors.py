"""Exceptions raised by lfm_core and the adapters built on it.

Every error the library raises on purpose derives from :class:`LFMError`, so callers
can catch one base class. Input and checkpoint errors are also ``ValueError``s, so code
written against the peers (sentence-transformers, PyLate) keeps catching them.
"""

from __future__ import annotations


class LFMError(Exception):
    """Base class of every error raised on purpose by lfm-retrieval."""


class CheckpointError(LFMError, ValueError):
    """A checkpoint is missing, unreachable, unsafe, or does not match its config."""


class ModelUnavailableError(CheckpointError):
    """A hub model that is not cached, while the Hugging Face Hub cannot be reached.

    Attributes:
        model: the hub id asked for.
        reason: why the hub could not be reached (``HF_HUB_OFFLINE is set``, an error name).
    """

    def __init__(self, message: str, *, model: str, reason: str) -> None:
        super().__init__(message)
        self.model = model
        self.reason = reason


class InputError(LFMError, ValueError):
    """A caller passed a value of the right type but an unusable content."""


class CollectionError(LFMError, ValueError):
    """A vector-store collection does not have the layout this library writes."""

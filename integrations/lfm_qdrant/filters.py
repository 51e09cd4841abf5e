"""Payload filters: what a caller passes as ``query_filter``, checked and made a ``models.Filter``.

One place for the library, the CLI and the service, so a malformed filter gets the same
clear error everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic
from qdrant_client import models

from lfm_core import InputError

__all__ = ["as_filter"]


def as_filter(query_filter: Any) -> models.Filter | None:
    """A ``models.Filter`` from a filter or its dict form; refuses anything else clearly.

    Raises:
        InputError: a dict that is not a Qdrant filter (naming where it is wrong).
        TypeError: neither a ``models.Filter``, a mapping nor ``None``.
    """
    if query_filter is None or isinstance(query_filter, models.Filter):
        return query_filter
    if isinstance(query_filter, Mapping):
        try:
            return models.Filter.model_validate(dict(query_filter))
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top)"
            raise InputError(
                f"query_filter is not a Qdrant filter: at {where}: {first['msg']} "
                f"({error.error_count()} problem(s)); see qdrant_client.models.Filter"
            ) from None
    raise TypeError(
        f"query_filter must be a qdrant_client.models.Filter or a dict, not "
        f"{type(query_filter).__name__}"
    )

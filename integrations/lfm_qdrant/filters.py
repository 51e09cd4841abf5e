"""Payload filters: what a caller passes as ``query_filter``, checked and made a ``models.Filter``.

One place for the library, the CLI and the service, so a malformed filter gets the same
clear error everywhere. Beyond the shape (``models.Filter``'s own validation), the values
are checked against what Qdrant's engine can hold, before it sees them: counts and point
ids are unsigned 64-bit, matched integers signed 64-bit, payload keys follow Qdrant's key
grammar, coordinates are on the globe, and every string can be encoded as UTF-8 (a lone
surrogate such as ``"\\ud800"`` is legal in JSON but not in Rust). Otherwise the engine
answers ``OverflowError``, ``UnicodeEncodeError`` or ``ValueError`` from deep inside.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from qdrant_client import models

from lfm_core import InputError

__all__ = ["FilterError", "as_filter"]

_I64 = (-(2**63), 2**63 - 1)
_U64 = (0, 2**64 - 1)

# Fields the engine stores as unsigned 64-bit (Rust usize/u64); every other int is i64.
_UNSIGNED: dict[type[pydantic.BaseModel], frozenset[str]] = {
    models.ValuesCount: frozenset({"lt", "gt", "lte", "gte"}),
    models.MinShould: frozenset({"min_count"}),
    models.HasIdCondition: frozenset({"has_id"}),
}
# Fields holding a payload key (a JSON path such as ``meta.tags[]`` or ``a."b c"[0]``).
_KEYS: dict[type[pydantic.BaseModel], str] = {
    models.FieldCondition: "key",
    models.PayloadField: "key",
    models.Nested: "key",
}
# Qdrant's key grammar (segment/src/json_path/parse.rs): a bare or double-quoted first key,
# then ``.key``, ``."quoted key"``, ``[N]`` or ``[]``. Bare keys are letters, digits, _ and -.
_PART = r'(?:[^\W_]|[_-])+|"[^"\\]*"'
_KEY = re.compile(rf"(?:{_PART})(?:\.(?:{_PART})|\[[0-9]+\]|\[\])*")
_INDEX = re.compile(r"\[([0-9]+)\]")
# A part of a pydantic error location that names a member of a union, not a field.
_UNION_TAG = re.compile(r"^[A-Z]|[\[(-]|^(str|int|float|bool|none|dict|list|datetime|date)$")


class FilterError(InputError):
    """A filter Qdrant would refuse or cannot hold.

    Attributes:
        path: where in the filter, e.g. ``must[0].values_count.gte`` (``""``: the top).
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


def as_filter(query_filter: Any) -> models.Filter | None:
    """A ``models.Filter`` from a filter or its dict form, checked against Qdrant's limits.

    Raises:
        FilterError: (an ``InputError``) a dict that is not a Qdrant filter, or a value the
            engine cannot hold (a negative ``values_count``, an integer over 64 bits, a key
            outside Qdrant's grammar, a string with a lone surrogate, ...), naming its path.
        TypeError: neither a ``models.Filter``, a mapping nor ``None``.
    """
    if query_filter is None:
        return None
    if isinstance(query_filter, Mapping):
        try:
            query_filter = models.Filter.model_validate(dict(query_filter))
        except pydantic.ValidationError as error:
            # Unions report a failure per member; the deepest location is the real one.
            first = max(error.errors(), key=lambda e: len(e["loc"]))
            where = _path(first["loc"])
            raise FilterError(
                f"query_filter is not a Qdrant filter: at {where or '(top)'}: {first['msg']} "
                f"({error.error_count()} problem(s)); see qdrant_client.models.Filter",
                where,
            ) from None
        except (UnicodeError, RecursionError) as error:
            raise FilterError(f"query_filter cannot be read: {type(error).__name__}", "") from None
    if not isinstance(query_filter, models.Filter):
        raise TypeError(
            f"query_filter must be a qdrant_client.models.Filter or a dict, not "
            f"{type(query_filter).__name__}"
        )
    _check(query_filter, "")
    return query_filter


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _UNION_TAG.search(str(part)):
            out += f".{part}"
    return out.lstrip(".")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check(value: Any, path: str, *, unsigned: bool = False) -> None:
    """Walk a filter's values depth-first, raising ``FilterError`` at the first bad one."""
    if isinstance(value, pydantic.BaseModel):
        unsigned_fields = _UNSIGNED.get(type(value), frozenset())
        for name, info in type(value).model_fields.items():
            item = getattr(value, name)
            if item is None:
                continue
            where = _join(path, info.alias or name)
            if _KEYS.get(type(value)) == name:
                _check_key(item, where)
            _check(item, where, unsigned=name in unsigned_fields)
        if isinstance(value, models.GeoPoint):
            _check_point(value, path)
    elif isinstance(value, (list, tuple, set)):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", unsigned=unsigned)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        low, high = _U64 if unsigned else _I64
        if not low <= value <= high:
            kind = "an unsigned" if unsigned else "a signed"
            raise FilterError(
                f"query_filter {path} = {value} is out of range: Qdrant holds it as {kind} 64-bit "
                f"integer ({low} to {high})",
                path,
            )
    elif isinstance(value, str):
        _check_text(value, path)
        if unsigned:  # a point id given as a string: a UUID
            try:
                uuid.UUID(value)
            except ValueError:
                raise FilterError(
                    f"query_filter {path} = {value!r} is not a point id: Qdrant ids are "
                    "unsigned integers or UUIDs",
                    path,
                ) from None
    elif isinstance(value, Mapping):  # not in today's models; checked should one appear
        for key, item in value.items():
            _check_text(str(key), path)
            _check(item, _join(path, str(key)))


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise FilterError(
            f"query_filter {path} holds an unpaired UTF-16 surrogate "
            f"({text[error.start]!r} at index {error.start}), which cannot be encoded as UTF-8",
            path,
        ) from None


def _check_key(key: str, path: str) -> None:
    _check_text(key, path)
    too_big = next((m for m in _INDEX.finditer(key) if int(m.group(1)) > _U64[1]), None)
    if not _KEY.fullmatch(key) or too_big is not None:
        raise FilterError(
            f"query_filter {path} = {key!r} is not a payload key Qdrant can read: use names of "
            'letters, digits, _ and - joined by ".", "[]" or "[N]" (or a name in double quotes, '
            'e.g. meta."two words"[0])',
            path,
        )


def _check_point(point: models.GeoPoint, path: str) -> None:
    if not (math.isfinite(point.lat) and -90 <= point.lat <= 90):
        raise FilterError(f"query_filter {path}.lat = {point.lat} is not within [-90, 90]", path)
    if not (math.isfinite(point.lon) and -180 <= point.lon <= 180):
        raise FilterError(f"query_filter {path}.lon = {point.lon} is not within [-180, 180]", path)

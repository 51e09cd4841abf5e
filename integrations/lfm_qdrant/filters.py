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

import datetime
import functools
import json
import math
import operator
import re
import types
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

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

    The message is one sentence: ``query_filter must[0].match: expected ..., got 'de'``.
    The CLI and the service name the filter as their users wrote it (``--filter``,
    ``filter``) with :meth:`named`.

    Attributes:
        path: where in the filter, e.g. ``must[0].values_count.gte`` (``""``: the top).
        detail: the message after the filter's name (it starts with the path).
    """

    def __init__(self, detail: str, path: str) -> None:
        super().__init__(f"query_filter {detail}")
        self.path = path
        self.detail = detail

    def named(self, name: str) -> str:
        """The message with the filter called ``name`` (``"--filter"``, ``"filter"``)."""
        return f"{name} {self.detail}"


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
            raise _explain_invalid(dict(query_filter), error) from None
        except (UnicodeError, RecursionError) as error:
            raise FilterError(f"cannot be read: {type(error).__name__}", "") from None
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


def _explain_invalid(data: dict[str, Any], error: pydantic.ValidationError) -> FilterError:
    """One sentence for a dict ``models.Filter`` refused: the path and what was expected.

    pydantic reports a failure for every member of every union on the way (a condition may
    be one of eight shapes, a match one of eight), so its first error is rarely the one the
    caller made. Here each object is matched to the union member that shares its keys,
    and the walk descends into that member only.
    """
    try:
        found = _diagnose(data, models.Filter, "")
    except RecursionError:  # nested deeper than the walk goes: pydantic's report below
        found = None
    if found is not None:
        return FilterError(f"{found[0] or '(the whole filter)'}: {found[1]}", found[0])
    # A rule of a model itself (no field at fault): pydantic's own words, at its place.
    first = max(error.errors(), key=lambda e: len(e["loc"]))
    where = _path(first["loc"])
    return FilterError(f"{where or '(the whole filter)'}: {first['msg']}", where)


def _diagnose(value: Any, annotation: Any, path: str) -> tuple[str, str] | None:
    """The first place where ``value`` does not fit ``annotation``: (path, what was expected)."""
    if _fits(value, annotation):
        return None
    members = _members(annotation)
    shapes = [m for m in members if isinstance(m, type) and issubclass(m, pydantic.BaseModel)]
    if isinstance(value, Mapping) and shapes:
        return _diagnose_object(value, shapes, path)
    if isinstance(value, (list, tuple)):
        items = [get_args(m)[0] for m in members if get_origin(m) in (list, tuple)]
        if len(items) == 1:
            for i, item in enumerate(value):
                found = _diagnose(item, items[0], f"{path}[{i}]")
                if found is not None:
                    return found
            return None
    return path, f"expected {_expected(members)}, got {_shown(value)}"


def _diagnose_object(
    value: Mapping[str, Any], shapes: list[type[pydantic.BaseModel]], path: str
) -> tuple[str, str] | None:
    """An object where one of ``shapes`` is expected: judged as the shape(s) sharing its keys."""
    keys = [str(k) for k in value]
    shared = [len(set(keys) & set(_fields(shape))) for shape in shapes]
    best = max(shared)
    if best == 0 and len(shapes) > 1:
        got = ", ".join(map(repr, keys)) or "no key"
        return path, f"expected {_expected(shapes)}, got an object with {got}"
    # Shapes with the same keys (a number range and a date range) are judged together.
    tied = [shape for shape, n in zip(shapes, shared) if n == best]
    known: dict[str, list[Any]] = {}
    for shape in tied:
        for key, info in _fields(shape).items():
            known.setdefault(key, []).append(info.annotation)
    for key in keys:
        if key not in known:
            return _join(path, key), (
                f"unknown key: {_name(tied[0])} takes {', '.join(map(repr, known))}"
            )
    for key in _fields(tied[0]):
        if key not in value and all(
            key in _fields(shape) and _fields(shape)[key].is_required() for shape in tied
        ):
            return path, f"{_name(tied[0])} needs {key!r}"
    for key in keys:
        annotations = known[key]
        annotation = functools.reduce(operator.or_, annotations)
        found = _diagnose(value[key], annotation, _join(path, key))
        if found is not None:
            return found
    return None


def _fields(shape: type[pydantic.BaseModel]) -> dict[str, Any]:
    """A shape's fields by the keys a caller writes (``except``, not ``except_``)."""
    return {info.alias or name: info for name, info in shape.model_fields.items()}


def _name(shape: type[pydantic.BaseModel]) -> str:
    """``FieldCondition`` -> ``a field condition``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", shape.__name__).lower()
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _fits(value: Any, annotation: Any) -> bool:
    try:
        _adapter(annotation).validate_python(value)
    except pydantic.ValidationError:
        return False
    return True


_ADAPTERS: dict[Any, pydantic.TypeAdapter[Any]] = {}


def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    adapter = _ADAPTERS.get(annotation)
    if adapter is None:
        adapter = _ADAPTERS[annotation] = pydantic.TypeAdapter(annotation)
    return adapter


def _members(annotation: Any) -> list[Any]:
    """A union's members, ``Annotated`` stripped, ``None`` left out."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [] if annotation is type(None) else [annotation]


# In the order they are listed in a message.
_SCALARS = {
    str: ("a string", "strings"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "booleans"),
    uuid.UUID: ("a UUID", "UUIDs"),
    datetime.datetime: ('a date-time such as "2024-05-31T12:00:00Z"', "date-times"),
    datetime.date: ('a date such as "2024-05-31"', "dates"),
}


def _expected(members: Sequence[Any]) -> str:
    """What a place accepts, in words: ``a string, an integer or true or false``."""
    shapes = [m for m in members if isinstance(m, type) and issubclass(m, pydantic.BaseModel)]
    scalars = sorted((m for m in members if m in _SCALARS), key=list(_SCALARS).index)
    words = [_SCALARS[m][0] for m in scalars] + [_shape(m) for m in shapes]
    for member in members:
        if get_origin(member) not in (list, tuple):
            continue
        inner = _members(get_args(member)[0])
        if shapes and all(m in shapes for m in inner):
            words.append("a list of these")  # ``must``: one condition or a list of them
        else:
            plural = [_SCALARS[m][1] for m in inner if m in _SCALARS]
            words.append(f"a list of {' or '.join(plural) or 'objects'}")
    words = list(dict.fromkeys(words))
    if len(words) > 1:
        return f"{', '.join(words[:-1])} or {words[-1]}"
    return words[0] if words else "nothing"


def _shape(shape: type[pydantic.BaseModel]) -> str:
    """An object shape by its keys: ``{"key": ...}``, ``{"lt"|"gt"|"gte"|"lte": ...}``."""
    names = [info.alias or name for name, info in shape.model_fields.items()]
    required = [
        info.alias or name for name, info in shape.model_fields.items() if info.is_required()
    ]
    if required:
        return "{" + ", ".join(f'"{k}": ...' for k in required) + "}"
    return "{" + "|".join(f'"{k}"' for k in names) + ": ...}"


_JSON_KINDS = {
    str: "strings",
    int: "integers",
    float: "numbers",
    bool: "booleans",
    type(None): "nulls",
    list: "lists",
}


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        kinds = dict.fromkeys(_JSON_KINDS.get(type(item), "objects") for item in value)
        return f"a list of {' and '.join(kinds)}" if kinds else "an empty list"
    text = "null" if value is None else json.dumps(value, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: shown escaped, so the message can be sent
        text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:59] + "…"


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
        if isinstance(value, models.FieldCondition):
            _check_condition(value, path)
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
                f"{path} = {value} is out of range: Qdrant holds it as {kind} 64-bit "
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
                    f"{path} = {value!r} is not a point id: Qdrant ids are "
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
            f"{path} holds an unpaired UTF-16 surrogate "
            f"({text[error.start]!r} at index {error.start}), which cannot be encoded as UTF-8",
            path,
        ) from None


def _check_key(key: str, path: str) -> None:
    _check_text(key, path)
    too_big = next((m for m in _INDEX.finditer(key) if int(m.group(1)) > _U64[1]), None)
    if not _KEY.fullmatch(key) or too_big is not None:
        raise FilterError(
            f"{path} = {key!r} is not a payload key Qdrant can read: use names of "
            'letters, digits, _ and - joined by ".", "[]" or "[N]" (or a name in double quotes, '
            'e.g. meta."two words"[0])',
            path,
        )


def _check_condition(condition: models.FieldCondition, path: str) -> None:
    # A Qdrant server refuses a key with no condition; an Edge store would match nothing.
    conditions = [name for name in type(condition).model_fields if name != "key"]
    if all(getattr(condition, name) is None for name in conditions):
        raise FilterError(
            f"{path or '(the whole filter)'}: a condition on {condition.key!r} needs one of "
            f"{', '.join(conditions)}",
            path,
        )


def _check_point(point: models.GeoPoint, path: str) -> None:
    if not (math.isfinite(point.lat) and -90 <= point.lat <= 90):
        raise FilterError(f"{path}.lat = {point.lat} is not within [-90, 90]", path)
    if not (math.isfinite(point.lon) and -180 <= point.lon <= 180):
        raise FilterError(f"{path}.lon = {point.lon} is not within [-180, 180]", path)

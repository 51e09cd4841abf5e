"""Point ids and payloads: what ``add`` stores for each text, checked before the first write.

Ids round-trip: :meth:`MultiVectorWriter.add` returns the ids as Qdrant stores them (an
``int``, or a UUID in canonical lower-case form), search results carry the same values in
``point.id``, and any of them passed back as ``ids=`` names the same point.

- An ``int`` (or numpy integer) in ``[0, 2**64)`` is a Qdrant integer id, kept as it is.
- A ``str`` in canonical UUID form (``"6f9619ff-8b86-d011-b42d-00c04fc964ff"``, what we
  return) is that UUID.
- Any other ``str`` key (``"doc-17"``, ``"42"``, an upper-case or brace-wrapped UUID, an md5
  digest) becomes ``uuid5(KEY_NAMESPACE, key)``: different keys never collapse into one point.
- Without ``ids=``, a text's id is ``uuid5(TEXT_NAMESPACE, text)``: always derived from the
  text, never the text read as a UUID, and in another namespace than keys, so a document whose
  key equals another document's text stays a point of its own.

Payloads are ``{"text": text, **metadata}``, converted to JSON values up front: numpy
scalars and arrays become numbers and lists, dates and datetimes ISO 8601 strings, tuples
lists. Anything without an obvious JSON meaning (bytes, sets, arbitrary objects, NaN,
nesting deeper than :data:`MAX_PAYLOAD_DEPTH`) is refused with an error naming
``metadata[i]`` and the key, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lfm_core import InputError

__all__ = [
    "ID_SCHEME",
    "KEY_NAMESPACE",
    "MAX_PAYLOAD_DEPTH",
    "TEXT_NAMESPACE",
    "PointId",
    "payloads",
    "point_id",
    "point_ids",
    "text_point_id",
    "validate_ids",
]

PointId = int | str
"""A Qdrant point id as stored: an ``int`` or a canonical UUID ``str``."""

ID_SCHEME = 2
"""Version of the id rules above, recorded with every collection. Version 1 (lfm-retrieval
0.1) read any UUID-looking text as its own id and shared one namespace for texts and keys."""

TEXT_NAMESPACE = uuid.UUID("b972c505-6dab-5779-b3f4-ae25039fdea7")
"""UUIDv5 namespace of the ids derived from a document's text:
``uuid5(NAMESPACE_URL, "lfm-retrieval/lfm_qdrant/text-id")``."""
KEY_NAMESPACE = uuid.UUID("4b681242-7a7f-5ae8-a655-56de7db3873f")
"""UUIDv5 namespace of the ids derived from a caller's string key:
``uuid5(NAMESPACE_URL, "lfm-retrieval/lfm_qdrant/point-id")`` (as in 0.1)."""

MAX_PAYLOAD_DEPTH = 32
"""Most levels of nested mappings and lists in one metadata value."""

_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def point_id(key: str | int) -> PointId:
    """The Qdrant point id stored for a caller's key (an ``ids=`` item).

    Args:
        key: an ``int`` in ``[0, 2**64)``, a canonical UUID string, or any other string.

    Returns:
        The ``int`` itself, the UUID string itself, or ``uuid5(KEY_NAMESPACE, key)``.

    Raises:
        TypeError: ``key`` is not a ``str`` or an integer (``bool`` is refused too).
        InputError: an integer outside ``[0, 2**64)``, or a string that cannot be encoded.

    >>> point_id(7)
    7
    >>> point_id("6f9619ff-8b86-d011-b42d-00c04fc964ff")
    '6f9619ff-8b86-d011-b42d-00c04fc964ff'
    >>> point_id("6F9619FF-8B86-D011-B42D-00C04FC964FF") != point_id("6f9619ff-8b86-d011-b42d-00c04fc964ff")
    True
    >>> point_id(point_id("doc-17")) == point_id("doc-17")
    True
    """
    if isinstance(key, bool) or not isinstance(key, (str, numbers.Integral)):
        raise TypeError(f"a point id must be a str or an int, not {type(key).__name__}")
    if isinstance(key, numbers.Integral):  # int, or numpy / pandas integers
        if not 0 <= key < 2**64:
            raise InputError(f"an integer point id must be in [0, 2**64), got {key}")
        return int(key)
    if _CANONICAL_UUID.match(key):
        return key
    return _uuid5(KEY_NAMESPACE, key, "id")


def text_point_id(text: str) -> str:
    """The point id of a document added without ``ids=``: ``uuid5(TEXT_NAMESPACE, text)``.

    >>> text_point_id("hello") == text_point_id("hello") != text_point_id("hello ")
    True
    >>> text_point_id("d41d8cd9-8f00-b204-e980-0998ecf8427e") != "d41d8cd9-8f00-b204-e980-0998ecf8427e"
    True
    """
    return _uuid5(TEXT_NAMESPACE, text, "text")


def _uuid5(namespace: uuid.UUID, name: str, what: str) -> str:
    try:
        return str(uuid.uuid5(namespace, name))
    except UnicodeEncodeError:
        raise InputError(
            f"the {what} {name[:40]!r} holds characters that cannot be encoded as UTF-8 "
            "(lone surrogates); repair it, e.g. with lfm_core.validate_texts"
        ) from None


def point_ids(ids: Iterable[str | int]) -> list[PointId]:
    """The stored ids of ``ids`` (as :meth:`~MultiVectorWriter.add` took or returned them).

    Raises:
        TypeError: ``ids`` is a single string, or an item is not a ``str``/``int``.
        InputError: an id out of range, naming ``ids[i]``.
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be a list of str or int, not a single str")
    keys = []
    for i, key in enumerate(ids):
        try:
            keys.append(point_id(key))
        except (TypeError, InputError) as error:
            raise type(error)(f"ids[{i}]: {error}") from None
    return keys


def validate_ids(ids: Iterable[str | int] | None, texts: list[str]) -> list[PointId]:
    """One stored id per text; refuses a wrong length, a wrong type and duplicates.

    Raises:
        TypeError: ``ids`` is a single string, or an item is not a ``str``/``int``.
        InputError: ``ids`` has another length than ``texts``, an id is out of range, or
            two texts get the same id.
    """
    if ids is None:
        stored: list[PointId] = [text_point_id(text) for text in texts]
    else:
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a list of str or int, not a single str")
        given = list(ids)
        if len(given) != len(texts):
            raise InputError(
                f"ids has {len(given)} items but texts has {len(texts)}; pass one id per text"
            )
        stored = point_ids(given)
    first_seen: dict[PointId, int] = {}
    for i, key in enumerate(stored):
        j = first_seen.setdefault(key, i)
        if j != i:
            if ids is None:
                raise InputError(
                    f"texts[{j}] and texts[{i}] are the same text, so they get the same point "
                    "id; drop the duplicate, or pass ids= to store both"
                )
            raise InputError(
                f"ids[{j}] and ids[{i}] are the same point id ({key}); ids must be unique"
            )
    return stored


def payloads(
    metadata: Iterable[Mapping[str, Any] | None] | None, texts: list[str]
) -> list[dict[str, Any]]:
    """``{"text": text, **metadata}`` for each text, every value converted to JSON.

    Raises:
        TypeError: ``metadata`` is a single mapping, an item is not a mapping, a key is not a
            ``str``, or a value has no JSON form (naming ``metadata[i]`` and the key).
        InputError: the lengths differ, an item has a ``"text"`` key, a float is NaN or
            infinite, or a value is nested too deep.
    """
    if metadata is None:
        return [{"text": text} for text in texts]
    if isinstance(metadata, Mapping):
        raise TypeError("metadata must be a list with one mapping per text, not a single mapping")
    items = list(metadata)
    if len(items) != len(texts):
        raise InputError(
            f"metadata has {len(items)} items but texts has {len(texts)}; "
            "pass one mapping (or None) per text"
        )
    result = []
    for i, (text, meta) in enumerate(zip(texts, items, strict=True)):
        if meta is None:
            meta = {}
        if not isinstance(meta, Mapping):
            raise TypeError(f"metadata[{i}] is a {type(meta).__name__}; expected a mapping or None")
        if "text" in meta:
            raise InputError(
                f"metadata[{i}] has a 'text' key, but payload['text'] holds the document "
                "text; rename that metadata key"
            )
        if "_lfm" in meta:
            raise InputError(
                f"metadata[{i}] has a '_lfm' key, but payload['_lfm'] holds the document's "
                "chunk record; rename that metadata key"
            )
        payload: dict[str, Any] = {"text": text}
        for key, value in meta.items():
            if not isinstance(key, str):
                raise TypeError(f"metadata[{i}] has a non-str key {key!r}; payload keys are str")
            payload[key] = to_json(value, f"metadata[{i}][{key!r}]")
        result.append(payload)
    return result


def to_json(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as JSON data (dict, list, str, int, float, bool, None), or a clear error.

    >>> to_json({"n": np.int64(3), "v": np.array([0.5, 1.0]), "d": dt.date(2024, 5, 1)}, "m")
    {'n': 3, 'v': [0.5, 1.0], 'd': '2024-05-01'}
    >>> to_json(b"raw", "metadata[0]['blob']")
    Traceback (most recent call last):
    ...
    TypeError: metadata[0]['blob'] is a bytes, which has no JSON form; decode it to str or drop it
    """
    if depth > MAX_PAYLOAD_DEPTH:
        raise InputError(f"{where} is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return _check_str(value, where) if isinstance(value, str) else value
    if isinstance(value, np.generic):  # np.float32, np.int64, np.bool_, np.datetime64, ...
        return to_json(value.item(), where, depth)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise InputError(f"{where} is {number}, which JSON cannot hold; use None or a number")
        return number
    if isinstance(value, str):
        return _check_str(value, where)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-str key {key!r}; payload keys are str")
            out[key] = to_json(item, f"{where}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(item, f"{where}[{j}]", depth + 1) for j, item in enumerate(value)]
    hint = (
        "decode it to str or drop it"
        if isinstance(value, (bytes, bytearray))
        else ("convert it to a str, number, list or mapping")
    )
    raise TypeError(f"{where} is a {type(value).__name__}, which has no JSON form; {hint}")


def _check_str(value: str, where: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"{where} holds lone surrogates, which cannot be encoded as UTF-8"
            ) from None
    return value

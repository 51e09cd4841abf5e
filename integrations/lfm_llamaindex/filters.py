"""LlamaIndex ``MetadataFilters`` as Qdrant filters: every operator Qdrant can express exactly.

==========================  ==========================================================
LlamaIndex operator         Qdrant condition
==========================  ==========================================================
``==``                      ``MatchValue`` (a float: the range ``[v, v]``)
``!=``                      ``must_not`` of the ``==`` condition (a missing key passes)
``>``, ``>=``, ``<``, ``<=``  ``Range`` for numbers, ``DatetimeRange`` for ISO 8601 strings
``in`` / ``nin``            ``MatchAny`` / ``must_not`` of it (str or int values)
``any`` / ``all``           ``MatchAny`` / one ``MatchValue`` per value (array fields)
``contains``                ``MatchValue`` (Qdrant matches an array by any element)
``text_match``              ``MatchText`` (substring, or the tokens of a full-text index)
``is_empty``                ``IsEmptyCondition`` (missing, null or ``[]``)
``and`` / ``or`` / ``not``  ``must`` / ``should`` / ``must_not``; nested filters nest
==========================  ==========================================================

``text_match_insensitive`` has no exact Qdrant counterpart (``MatchText`` is case-sensitive
without a lowercasing full-text index) and is refused, as is any other operator.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from qdrant_client import models

from lfm_core import InputError

__all__ = ["to_qdrant_filter"]

_RANGES = {
    FilterOperator.GT: "gt",
    FilterOperator.GTE: "gte",
    FilterOperator.LT: "lt",
    FilterOperator.LTE: "lte",
}


def to_qdrant_filter(filters: MetadataFilters, where: str = "filters") -> models.Filter:
    """A Qdrant filter equivalent to ``filters``.

    Raises:
        InputError: an operator Qdrant cannot express, or a value of the wrong kind for its
            operator; the message names the filter (``filters.filters[2]``) and the key.
    """
    conditions: list[Any] = []
    for i, item in enumerate(filters.filters):
        at = f"{where}.filters[{i}]"
        if isinstance(item, MetadataFilters):
            if item.filters:
                conditions.append(to_qdrant_filter(item, at))
            continue
        conditions.append(_condition(item, at))
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return models.Filter(must=conditions)
    if condition == FilterCondition.OR:
        return models.Filter(should=conditions)
    if condition == FilterCondition.NOT:
        return models.Filter(must_not=conditions)
    raise InputError(f"{where}.condition {condition!r} is not supported; use and, or, not")


def _condition(f: MetadataFilter, at: str) -> Any:
    op, key, value = f.operator, f.key, f.value
    where = f"{at} (key {key!r}, operator {op.value!r})"
    if op == FilterOperator.EQ:
        return _equals(key, value, where)
    if op == FilterOperator.NE:
        return models.Filter(must_not=[_equals(key, value, where)])
    if op in _RANGES:
        return _range(key, _RANGES[op], value, where)
    if op in (FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY):
        match_any = models.FieldCondition(
            key=key, match=models.MatchAny(any=_keywords(value, where))
        )
        return models.Filter(must_not=[match_any]) if op == FilterOperator.NIN else match_any
    if op == FilterOperator.ALL:
        return models.Filter(
            must=[
                models.FieldCondition(key=key, match=models.MatchValue(value=v))
                for v in _keywords(value, where)
            ]
        )
    if op == FilterOperator.CONTAINS:
        return _equals(key, value, where)
    if op == FilterOperator.TEXT_MATCH:
        if not isinstance(value, str):
            raise InputError(f"{where}: the value must be a str, not {type(value).__name__}")
        return models.FieldCondition(key=key, match=models.MatchText(text=value))
    if op == FilterOperator.IS_EMPTY:
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
    raise InputError(
        f"{where}: Qdrant cannot express this operator exactly; supported: ==, !=, >, >=, <, "
        "<=, in, nin, any, all, contains, text_match, is_empty"
    )


def _equals(key: str, value: Any, where: str) -> Any:
    if isinstance(value, float):
        # Qdrant matches keywords, integers and booleans; a float by a closed range.
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    if isinstance(value, (str, int)):  # bool is an int
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    raise InputError(f"{where}: the value must be a str, int, float or bool, not {_kind(value)}")


def _range(key: str, bound: str, value: Any, where: str) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return models.FieldCondition(key=key, range=models.Range(**{bound: value}))
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InputError(
                f"{where}: a str bound must be an ISO 8601 date or datetime, got {value!r}; "
                "Qdrant compares numbers and datetimes, not strings"
            ) from None
        return models.FieldCondition(key=key, range=models.DatetimeRange(**{bound: moment}))
    raise InputError(f"{where}: the bound must be a number or an ISO 8601 str, not {_kind(value)}")


def _keywords(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: the value must be a non-empty list, not {_kind(value)}")
    kinds = {type(v) for v in value}
    if kinds <= {str} or kinds <= {int}:
        return value
    raise InputError(
        f"{where}: Qdrant matches lists of str or of int (not floats or a mix); got "
        f"{sorted(k.__name__ for k in kinds)}"
    )


def _kind(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"

"""``as_filter``: any JSON value gives a filter the engine runs, or a ``FilterError`` naming where.

The property tests hand it arbitrary JSON (surrogates, integers past 64 bits, NaN) in and
out of a filter's shape, then run every filter it accepts on a real Edge collection: the
engine must never be the one to refuse (no ``OverflowError``, ``UnicodeEncodeError``,
``ValueError`` from inside qdrant-edge).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import models

from lfm_core import DenseEncoder, InputError
from lfm_qdrant import EdgeStore, FilterError, MultiVectorWriter, as_filter

# A failing example of a deep filter is long; its repr is still the one worth reading.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

# Every code point, lone surrogates included (legal in JSON: "\ud800").
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8)
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    ANY_TEXT,
    st.sampled_from(["lang", "meta.tags[]", 'a."b c"[0]', "a[99999999999999999999]", ""]),
    st.just("00000000-0000-0000-0000-000000000001"),
)
ANY_JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
# Inside a filter's shape, values the engine holds half the time, so filters reach it.
KEY = st.one_of(
    st.sampled_from(["lang", "n", "tags[]", "a[0]", "a[]", "x y"]),
    st.sampled_from(["lang", "n"]),
    ANY_TEXT,
)
NEAR = st.one_of(st.integers(min_value=-3, max_value=3), st.sampled_from(["en", "de"]), LEAF)
POINT = st.fixed_dictionaries({"lon": NEAR, "lat": NEAR})
MATCH = st.one_of(
    st.fixed_dictionaries({"value": NEAR}),
    st.fixed_dictionaries({"any": st.lists(NEAR, max_size=3)}),
    st.fixed_dictionaries({"except": st.lists(NEAR, max_size=3)}),
    st.fixed_dictionaries({"text": NEAR}),
)
RANGE = st.fixed_dictionaries({}, optional={k: NEAR for k in ("lt", "gt", "gte", "lte")})
FIELD = st.fixed_dictionaries(
    {"key": KEY},
    optional={
        "match": MATCH,
        "range": RANGE,
        "values_count": RANGE,
        "geo_radius": st.fixed_dictionaries({"center": POINT, "radius": NEAR}),
        "geo_bounding_box": st.fixed_dictionaries({"top_left": POINT, "bottom_right": POINT}),
        "is_empty": NEAR,
    },
)
SIMPLE = st.one_of(
    FIELD,
    st.fixed_dictionaries({"has_id": st.lists(NEAR, max_size=3)}),
    st.fixed_dictionaries({"is_empty": st.fixed_dictionaries({"key": KEY})}),
    st.fixed_dictionaries({"is_null": st.fixed_dictionaries({"key": KEY})}),
    st.fixed_dictionaries({"has_vector": st.one_of(st.just("dense"), ANY_TEXT)}),
)


def _filters(condition: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    conditions = st.lists(condition, max_size=3)
    return st.fixed_dictionaries(
        {},
        optional={
            "must": conditions,
            "should": conditions,
            "must_not": condition,
            "min_should": st.fixed_dictionaries({"conditions": conditions, "min_count": NEAR}),
        },
    )


FILTERS = st.recursive(
    _filters(SIMPLE),
    lambda inner: _filters(
        st.one_of(
            SIMPLE,
            inner,
            st.fixed_dictionaries({"nested": st.fixed_dictionaries({"key": KEY, "filter": inner})}),
        )
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory, tiny_dense: DenseEncoder) -> Iterator[Any]:
    store = EdgeStore(tmp_path_factory.mktemp("filters") / "store")
    writer = MultiVectorWriter(store, "faq", dense=tiny_dense)
    writer.add(
        ["orders ship fast", "returns in 30 days", "gift cards"],
        ids=[1, 2, 3],
        metadata=[{"lang": "en", "n": 1, "tags": ["a", "b"]}, {"lang": "de", "n": 2}, {}],
    )
    yield writer
    store.close()


@settings(max_examples=300, deadline=None, database=None)
@given(value=ANY_JSON)
def test_any_json_value_is_a_filter_or_a_filter_error(value: Any) -> None:
    try:
        result = as_filter(value)
    except FilterError as error:
        assert str(error).startswith("query_filter")
        return
    except TypeError as error:  # only for a value that is not a mapping at all
        assert not isinstance(value, dict) and "query_filter must be" in str(error)
        return
    assert result is None if value is None else isinstance(result, models.Filter)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(value=FILTERS)
def test_a_filter_it_accepts_never_fails_in_the_engine(writer: Any, value: dict[str, Any]) -> None:
    try:
        flt = as_filter(value)
    except FilterError:
        return
    try:
        count = writer.count(query_filter=flt)
    except TypeError as error:  # a condition Edge has no counterpart for: a clear refusal
        assert "not supported by an Edge store" in str(error)
        return
    assert 0 <= count <= 3


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"must": [{"key": "lang", "values_count": {"gte": -1}}]}, "must[0].values_count.gte"),
        ({"must": [{"key": "lang", "values_count": {"lt": 2**64}}]}, "must[0].values_count.lt"),
        (
            {"min_should": {"conditions": [{"key": "n", "match": {"value": 1}}], "min_count": -3}},
            "min_should.min_count",
        ),
        ({"must": [{"key": "n", "match": {"value": 2**63}}]}, "must[0].match.value"),
        (
            {"should": [{"key": "n", "match": {"except": [1, -(2**63) - 1]}}]},
            "should[0].match.except[1]",
        ),
        ({"must_not": {"has_id": [1, -1]}}, "must_not.has_id[1]"),
        ({"must": [{"has_id": ["not-a-uuid"]}]}, "must[0].has_id[0]"),
        ({"must": [{"key": "\ud800", "match": {"value": "en"}}]}, "must[0].key"),
        ({"must": [{"key": "lang", "match": {"any": ["en", "x\udfff"]}}]}, "must[0].match.any[1]"),
        ({"must": [{"key": "two words", "match": {"value": "en"}}]}, "must[0].key"),
        ({"must": [{"key": "a[99999999999999999999]", "is_empty": True}]}, "must[0].key"),
        (
            {"must": [{"key": "g", "geo_radius": {"center": {"lon": 0, "lat": 91}, "radius": 1}}]},
            "must[0].geo_radius.center",
        ),
        (
            {"must": [{"nested": {"key": "a", "filter": {"must": [{"has_id": [-2]}]}}}]},
            "must[0].nested.filter.must[0].has_id[0]",
        ),
        ({"must": [{"key": "n", "range": {"gte": "soon"}}]}, "must[0].range.gte"),
    ],
)
def test_each_out_of_range_value_is_named_by_its_path(value: dict[str, Any], path: str) -> None:
    with pytest.raises(FilterError) as caught:
        as_filter(value)
    assert caught.value.path == path
    assert isinstance(caught.value, InputError)


def test_a_filter_object_is_checked_too() -> None:
    flt = models.Filter(
        must=[models.FieldCondition(key="n", values_count=models.ValuesCount(gte=-1))]
    )
    with pytest.raises(FilterError, match=r"must\[0\]\.values_count\.gte = -1 .* unsigned 64-bit"):
        as_filter(flt)


def test_the_writer_refuses_an_out_of_range_filter_with_input_error(writer: Any) -> None:
    bad = {"must": [{"key": "lang", "values_count": {"gte": -1}}]}
    for call in (
        lambda: writer.search("ship", query_filter=bad),
        lambda: writer.count(query_filter=bad),
        lambda: writer.delete(query_filter=bad),
    ):
        with pytest.raises(InputError, match=r"must\[0\]\.values_count\.gte"):
            call()
    assert writer.count() == 3  # nothing deleted


def test_valid_edge_values_reach_the_engine(writer: Any, tmp_path: Path) -> None:
    assert (
        writer.count(query_filter={"must": [{"key": "lang", "values_count": {"gte": 2**64 - 1}}]})
        == 0
    )
    assert writer.count(query_filter={"must": [{"key": "n", "match": {"value": -(2**63)}}]}) == 0
    assert writer.count(query_filter={"must": [{"key": "tags[]", "match": {"value": "a"}}]}) == 1
    assert writer.count(query_filter={"must": [{"has_id": [1, 2**64 - 1]}]}) == 1


_MATCHES = (
    '{"value": ...}, {"text": ...}, {"text_any": ...}, {"phrase": ...}, {"prefix": ...}, '
    '{"substring": ...}, {"any": ...} or {"except": ...}'
)


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        (
            {"must": [{"key": "lang", "match": "de"}]},
            "must[0].match",
            f'expected {_MATCHES}, got "de"',
        ),
        (
            {"must": [{"key": "lang", "match": {"valu": "de"}}]},
            "must[0].match",
            f"expected {_MATCHES}, got an object with 'valu'",
        ),
        (
            {"must": [{"key": "lang", "match": {"value": 1.5}}]},
            "must[0].match.value",
            "expected a string, an integer or true or false, got 1.5",
        ),
        (
            {"must": [{"key": "lang", "match": {"any": ["en", 1]}}]},
            "must[0].match.any",
            "expected a list of strings or a list of integers, got a list of strings and integers",
        ),
        (
            {"should": [{"key": "n", "range": {"gte": "soon"}}]},
            "should[0].range.gte",
            'expected a number, a date-time such as "2024-05-31T12:00:00Z" or a date such as '
            '"2024-05-31", got "soon"',
        ),
        (
            {"must": [{"kye": "lang", "match": {"value": "de"}}]},
            "must[0].kye",
            "unknown key: a field condition takes 'key', 'match', 'range', 'geo_bounding_box', "
            "'geo_radius', 'geo_polygon', 'values_count', 'is_empty', 'is_null'",
        ),
        (
            {"mus": []},
            "mus",
            "unknown key: a filter takes 'should', 'min_should', 'must', 'must_not'",
        ),
        (
            {"must": [{"key": "lang"}]},
            "must[0]",
            "a condition on 'lang' needs one of match, range, geo_bounding_box, geo_radius, "
            "geo_polygon, values_count, is_empty, is_null",
        ),
        (
            {"min_should": {"conditions": [], "min_count": "two"}},
            "min_should.min_count",
            'expected an integer, got "two"',
        ),
        (
            {"must": [{"nested": {"key": "a", "filter": {"must": [{"key": "b", "match": 3}]}}}]},
            "must[0].nested.filter.must[0].match",
            f"expected {_MATCHES}, got 3",
        ),
    ],
)
def test_a_malformed_filter_says_where_and_what_was_expected(
    value: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(FilterError) as caught:
        as_filter(value)
    assert caught.value.path == path
    assert str(caught.value) == f"query_filter {path}: {message}"
    assert caught.value.named("--filter") == f"--filter {path}: {message}"


def test_a_condition_without_a_test_is_refused_as_a_filter_object_too() -> None:
    with pytest.raises(FilterError, match=r"^query_filter must\[1\]: a condition on 'n' needs"):
        as_filter(
            models.Filter(must=[models.HasIdCondition(has_id=[1]), models.FieldCondition(key="n")])
        )

"""Contract v1: the msgspec decoder and the published JSON Schemas agree."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from streams.contract import Ev, InvalidRecord, Kind, Source, decode

SCHEMAS = Path(__file__).parents[2] / "schemas"
NOW = 1_700_000_000_000
SKEW = 60_000

VALIDATORS = {
    Source.VIEWS: Draft202012Validator(
        json.loads((SCHEMAS / "live.views.schema.json").read_text())
    ),
    Source.CLICKS: Draft202012Validator(
        json.loads((SCHEMAS / "live.clicks.schema.json").read_text())
    ),
    Source.ORDERS: Draft202012Validator(
        json.loads((SCHEMAS / "live.orders.schema.json").read_text())
    ),
}

BASE = {"event_id": "e1", "room_id": "r1", "user_id": "u1", "ts": NOW - 1000}
ORDER = {
    "order_id": "o1",
    "product_id": "p1",
    "quantity": 2,
    "amount_cents": 1999,
    "currency": "CNY",
}

VALID = [
    (Source.VIEWS, {**BASE, "type": "impression"}),
    (Source.VIEWS, {**BASE, "type": "enter"}),
    (Source.VIEWS, {**BASE, "type": "leave", "watch_ms": 0}),
    (Source.CLICKS, {**BASE, "type": "product_impression", "product_id": "p1"}),
    (Source.CLICKS, {**BASE, "type": "product_click", "product_id": "p1", "extra": [1, 2]}),
    (Source.ORDERS, {**BASE, "type": "created", **ORDER}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER}),
    (Source.ORDERS, {**BASE, "type": "refunded", **ORDER, "future_field": {"x": 1}}),
]

INVALID = [
    (Source.VIEWS, {**BASE, "type": "leave"}),  # no watch_ms
    (Source.VIEWS, {**BASE, "type": "leave", "watch_ms": -1}),
    (Source.VIEWS, {**BASE, "type": "product_click", "product_id": "p"}),  # wrong topic
    (Source.VIEWS, {**BASE, "type": "enter", "ts": "1700000000000"}),
    (Source.VIEWS, {**BASE, "type": "enter", "ts": -5}),
    (Source.VIEWS, {**BASE, "type": "enter", "user_id": ""}),
    (Source.VIEWS, {k: v for k, v in BASE.items() if k != "event_id"} | {"type": "enter"}),
    (Source.VIEWS, {**BASE}),  # no type
    (Source.CLICKS, {**BASE, "type": "product_click"}),  # no product_id
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "quantity": 0}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "amount_cents": -1}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "cny"}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "YUAN"}),
    (Source.ORDERS, {**BASE, "type": "shipped", **ORDER}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "quantity": True}),
]


def _decode(src: Source, obj: object, key: bytes | None = b"r1") -> Ev:
    return decode(src, 7, key, orjson.dumps(obj), NOW, SKEW)


@pytest.mark.parametrize(("src", "obj"), VALID)
def test_valid_records_pass_both(src: Source, obj: dict) -> None:
    assert VALIDATORS[src].is_valid(obj)
    ev = _decode(src, obj)
    assert (ev.src, ev.offset, ev.ts, ev.room) == (src, 7, obj["ts"], "r1")


@pytest.mark.parametrize(("src", "obj"), INVALID)
def test_invalid_records_fail_both(src: Source, obj: dict) -> None:
    assert not VALIDATORS[src].is_valid(obj)
    with pytest.raises(InvalidRecord) as info:
        _decode(src, obj)
    assert info.value.category == "schema"


def test_reduced_fields() -> None:
    enter = _decode(Source.VIEWS, {**BASE, "type": "enter"})
    assert (enter.kind, enter.user) == (Kind.ENTER, "u1")
    leave = _decode(Source.VIEWS, {**BASE, "type": "leave", "watch_ms": 1234})
    assert (leave.kind, leave.value) == (Kind.LEAVE, 1234)
    paid = _decode(Source.ORDERS, {**BASE, "type": "paid", **ORDER})
    assert (paid.kind, paid.value) == (Kind.ORDER_PAID, 1999)
    refund = _decode(Source.ORDERS, {**BASE, "type": "refunded", **ORDER})
    assert (refund.kind, refund.value) == (Kind.ORDER_REFUNDED, 1999)


@pytest.mark.parametrize(
    ("key", "value", "category"),
    [
        (b"r1", b"{not json", "json"),
        (b"r1", b"", "json"),
        (b"r1", None, "schema"),
        (None, orjson.dumps({**BASE, "type": "enter"}), "key"),
        (b"other", orjson.dumps({**BASE, "type": "enter"}), "key"),
        (b"r1", orjson.dumps({**BASE, "type": "enter", "ts": NOW + SKEW + 1}), "clock"),
    ],
)
def test_record_level_failures(key: bytes | None, value: bytes | None, category: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        decode(Source.VIEWS, 0, key, value, NOW, SKEW)
    assert info.value.category == category
    assert info.value.reason


def test_event_time_at_the_skew_limit_is_valid() -> None:
    assert _decode(Source.VIEWS, {**BASE, "type": "enter", "ts": NOW + SKEW}).ts == NOW + SKEW


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)
_field_values = st.one_of(
    st.integers(-3, 3),
    st.integers(0, 2**40),
    st.sampled_from(["", "x", "CNY", "cny", "1"]),
    st.none(),
    st.booleans(),
    _json_values,
)
_names = [
    "event_id",
    "room_id",
    "user_id",
    "ts",
    "type",
    "watch_ms",
    "product_id",
    "order_id",
    "quantity",
    "amount_cents",
    "currency",
]
_types = [
    "impression",
    "enter",
    "leave",
    "product_impression",
    "product_click",
    "created",
    "paid",
    "refunded",
    "other",
]


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[Source, dict]:
    src = draw(st.sampled_from(list(Source)))
    obj = {**BASE, "type": draw(st.sampled_from(_types)), "watch_ms": 5, "product_id": "p", **ORDER}
    for name in draw(st.lists(st.sampled_from(_names), max_size=3, unique=True)):
        if draw(st.booleans()):
            obj.pop(name, None)
        else:
            obj[name] = draw(_field_values)
    return src, obj


@settings(max_examples=400, deadline=None)
@given(_mutated())
def test_decoder_and_schema_agree(case: tuple[Source, dict]) -> None:
    src, obj = case
    expected = VALIDATORS[src].is_valid(obj)
    key = obj["room_id"].encode() if isinstance(obj.get("room_id"), str) else b"r1"
    try:
        decode(src, 0, key, orjson.dumps(obj), NOW + 10**15, SKEW)
        accepted = True
    except InvalidRecord as bad:
        accepted = bad.category != "schema"
        assert bad.category in ("schema", "key")
    assert accepted == expected, obj

"""Contract v1: the msgspec decoder and the published JSON Schemas agree, bounds included, and
the decoder is total (an Ev or an InvalidRecord, whatever the bytes)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from streams.core import contract
from streams.core.contract import (
    AMOUNT_MAX,
    ID_MAX_LENGTH,
    MAX_DEPTH,
    QUANTITY_MAX,
    TS_MAX,
    WATCH_MS_MAX,
    Ev,
    InvalidRecord,
    Kind,
    Source,
    decode,
    fingerprint,
)
from streams.core.currencies import CURRENCIES
from streams.core.partitioner import partition_of

SCHEMAS = Path(__file__).parents[2] / "schemas"
TOPIC_NAMES = {
    Source.VIEWS: "live.views",
    Source.CLICKS: "live.clicks",
    Source.ORDERS: "live.orders",
}
NOW = 1_700_000_000_000
SKEW = 60_000

VALIDATORS = {
    src: Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))
    for src, name in TOPIC_NAMES.items()
}

BASE = {"event_id": "e1", "room_id": "r1", "user_id": "u1", "ts": NOW - 1000}
ORDER = {
    "order_id": "o1",
    "product_id": "p1",
    "quantity": 2,
    "amount_cents": 1999,
    "currency": "CNY",
}


def nested(depth: int) -> object:
    """A JSON value ``depth`` containers deep (0: a scalar)."""
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


VALID = [
    (Source.VIEWS, {**BASE, "type": "impression"}),
    (Source.VIEWS, {**BASE, "type": "enter"}),
    (Source.VIEWS, {**BASE, "type": "leave", "watch_ms": 0}),
    (Source.CLICKS, {**BASE, "type": "product_impression", "product_id": "p1"}),
    (Source.CLICKS, {**BASE, "type": "product_click", "product_id": "p1", "extra": [1, 2]}),
    (Source.ORDERS, {**BASE, "type": "created", **ORDER}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER}),
    (Source.ORDERS, {**BASE, "type": "refunded", **ORDER, "future_field": {"x": 1}}),
    # the bounds themselves
    (Source.VIEWS, {**BASE, "type": "enter", "ts": 0}),
    (Source.VIEWS, {**BASE, "type": "enter", "ts": TS_MAX}),
    (Source.VIEWS, {**BASE, "type": "leave", "watch_ms": WATCH_MS_MAX}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "quantity": QUANTITY_MAX}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "amount_cents": AMOUNT_MAX}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "amount_cents": 0, "currency": "JPY"}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "KWD"}),
    (Source.VIEWS, {**BASE, "type": "enter", "event_id": "e" * ID_MAX_LENGTH}),
    (Source.VIEWS, {**BASE, "type": "enter", "user_id": "用户" * (ID_MAX_LENGTH // 2)}),
    (Source.VIEWS, {**BASE, "type": "enter", "user_id": "_u", "room_id": "r_1"}),
    (Source.VIEWS, {**BASE, "type": "enter", "user_id": "__u"}),  # only rooms are reserved
    # integral numbers are integers (JSON Schema's rule)
    (Source.VIEWS, {**BASE, "type": "enter", "ts": float(NOW - 1000)}),
    (Source.VIEWS, {**BASE, "type": "leave", "watch_ms": 3.0}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "quantity": 1.0, "amount_cents": 1e3}),
    # ignored fields may nest, up to the bound (the record itself is the first container)
    (Source.VIEWS, {**BASE, "type": "enter", "extra": nested(MAX_DEPTH - 1)}),
]

INVALID = [
    (Source.VIEWS, {**BASE, "type": "leave"}),  # no watch_ms
    (Source.VIEWS, {**BASE, "type": "leave", "watch_ms": -1}),
    (Source.VIEWS, {**BASE, "type": "leave", "watch_ms": WATCH_MS_MAX + 1}),
    (Source.VIEWS, {**BASE, "type": "leave", "watch_ms": 1.5}),
    (Source.VIEWS, {**BASE, "type": "product_click", "product_id": "p"}),  # wrong topic
    (Source.VIEWS, {**BASE, "type": "enter", "ts": "1700000000000"}),
    (Source.VIEWS, {**BASE, "type": "enter", "ts": -5}),
    (Source.VIEWS, {**BASE, "type": "enter", "ts": TS_MAX + 1}),
    (Source.VIEWS, {**BASE, "type": "enter", "ts": 2**64}),
    (Source.VIEWS, {**BASE, "type": "enter", "ts": NOW + 0.5}),
    (Source.VIEWS, {**BASE, "type": "enter", "ts": True}),
    (Source.VIEWS, {**BASE, "type": "enter", "user_id": ""}),
    (Source.VIEWS, {**BASE, "type": "enter", "user_id": "u" * (ID_MAX_LENGTH + 1)}),
    (Source.VIEWS, {**BASE, "type": "enter", "room_id": "\x00flush"}),
    (Source.VIEWS, {**BASE, "type": "enter", "room_id": "r\x1fw"}),
    (Source.VIEWS, {**BASE, "type": "enter", "user_id": "u\n"}),
    (Source.VIEWS, {**BASE, "type": "enter", "event_id": "e\x7f"}),
    (Source.VIEWS, {**BASE, "type": "enter", "event_id": "e\x85"}),  # C1 control
    (Source.VIEWS, {**BASE, "type": "enter", "room_id": "__other__"}),
    (Source.VIEWS, {**BASE, "type": "enter", "room_id": "__x"}),
    (Source.VIEWS, {k: v for k, v in BASE.items() if k != "event_id"} | {"type": "enter"}),
    (Source.VIEWS, {**BASE}),  # no type
    (Source.VIEWS, {**BASE, "type": "enter", "extra": nested(MAX_DEPTH)}),
    (Source.VIEWS, {**BASE, "type": "enter", "extra": nested(60)}),
    (Source.CLICKS, {**BASE, "type": "product_click"}),  # no product_id
    (Source.CLICKS, {**BASE, "type": "product_click", "product_id": "__other__"}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "quantity": 0}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "quantity": QUANTITY_MAX + 1}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "amount_cents": -1}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "amount_cents": AMOUNT_MAX + 1}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "amount_cents": 2**64}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "cny"}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "YUAN"}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "ZZZ"}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "XXX"}),  # no minor unit
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "XAU"}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "order_id": "o" * 129}),
    (Source.ORDERS, {**BASE, "type": "shipped", **ORDER}),
    (Source.ORDERS, {**BASE, "type": "paid", **ORDER, "quantity": True}),
]


def dumps(obj: object, ascii: bool = True) -> bytes:
    """JSON text of ``obj`` (stdlib: integers of any size; ``ascii`` escapes non-ASCII)."""
    return json.dumps(obj, ensure_ascii=ascii, allow_nan=False).encode()


def _decode(src: Source, obj: object, key: bytes | None = b"r1") -> Ev:
    """Decoded with a wall clock at the end of time, so only the schema and key rules apply."""
    return decode(src, 7, key, dumps(obj), TS_MAX, SKEW)


def _key(obj: dict) -> bytes:
    room = obj.get("room_id")
    return room.encode() if isinstance(room, str) else b"r1"


def test_the_published_schemas_are_generated_from_the_contract() -> None:
    for name, schema in contract.json_schemas(TOPIC_NAMES).items():
        assert json.loads((SCHEMAS / name).read_text()) == schema, (
            f"{name} is stale: run python -m streams.core.contract schemas"
        )


@pytest.mark.parametrize(("src", "obj"), VALID)
def test_valid_records_pass_both(src: Source, obj: dict) -> None:
    assert VALIDATORS[src].is_valid(obj)
    ev = _decode(src, obj, _key(obj))
    assert (ev.src, ev.offset, ev.ts, ev.room) == (src, 7, obj["ts"], obj["room_id"])
    assert type(ev.ts) is int and type(ev.value) is int


@pytest.mark.parametrize(("src", "obj"), INVALID)
def test_invalid_records_fail_both(src: Source, obj: dict) -> None:
    assert not VALIDATORS[src].is_valid(obj)
    with pytest.raises(InvalidRecord) as info:
        _decode(src, obj, _key(obj))
    assert info.value.category == "schema"


def test_reduced_fields() -> None:
    enter = _decode(Source.VIEWS, {**BASE, "type": "enter"})
    assert (enter.kind, enter.user, enter.eid) == (Kind.ENTER, "u1", fingerprint("e1"))
    leave = _decode(Source.VIEWS, {**BASE, "type": "leave", "watch_ms": 1234.0})
    assert (leave.kind, leave.value) == (Kind.LEAVE, 1234)
    created = _decode(Source.ORDERS, {**BASE, "type": "created", **ORDER})
    assert (created.kind, created.value, created.product, created.oid) == (
        Kind.ORDER_CREATED,
        1999,
        "p1",
        0,
    )
    paid = _decode(Source.ORDERS, {**BASE, "type": "paid", **ORDER, "currency": "JPY"})
    assert (paid.kind, paid.value, paid.oid, paid.currency) == (
        Kind.ORDER_PAID,
        1999,
        fingerprint("o1"),
        CURRENCIES["JPY"][0],
    )
    refund = _decode(Source.ORDERS, {**BASE, "type": "refunded", **ORDER})
    assert (refund.kind, refund.value, refund.oid) == (
        Kind.ORDER_REFUNDED,
        1999,
        fingerprint("o1"),
    )
    assert fingerprint("o1") != fingerprint("o2") and fingerprint("") != 0


@pytest.mark.parametrize(
    ("key", "value", "category"),
    [
        (b"r1", b"{not json", "json"),
        (b"r1", b"", "json"),
        (b"r1", b"\xff\xfe", "json"),
        (b"r1", b'{"event_id": "\xff"}', "json"),  # invalid UTF-8 in a string
        (b"r1", b'{"event_id": "\\ud800"}', "json"),  # a lone surrogate
        (b"r1", b'{"ts": NaN}', "json"),
        (b"r1", b"[" * 100_000 + b"]" * 100_000, "schema"),
        # the issue's record: 2 KB, an ignored field 1 000 deep (msgspec alone would recurse)
        (
            b"r1",
            dumps({**BASE, "type": "enter"})[:-1] + b', "x": ' + b"[" * 1000 + b"]" * 1000 + b"}",
            "schema",
        ),
        (b"r1", None, "schema"),
        (None, orjson.dumps({**BASE, "type": "enter"}), "key"),
        (b"other", orjson.dumps({**BASE, "type": "enter"}), "key"),
        (b"\xff", orjson.dumps({**BASE, "type": "enter"}), "key"),
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


def test_a_record_on_another_partition_than_its_key_is_invalid() -> None:
    value = orjson.dumps({**BASE, "type": "enter"})
    home = partition_of(b"r1", 4)
    assert decode(Source.VIEWS, 0, b"r1", value, NOW, SKEW, home, 4).room == "r1"
    for other in set(range(4)) - {home}:
        with pytest.raises(InvalidRecord) as info:
            decode(Source.VIEWS, 0, b"r1", value, NOW, SKEW, other, 4)
        assert info.value.category == "partition"
        assert f"partition {home}" in info.value.reason


def test_control_characters_in_ids_are_found_however_they_are_written() -> None:
    # escaped, raw DEL, raw C1 (UTF-8 0xC2 0x85), and harmless escapes elsewhere
    template = b'{"event_id":"%s","room_id":"r1","user_id":"u1","ts":1,"type":"enter"%s}'
    bad = [b"e\\u0001", b"e\\n", b"e\x7f", b"e\xc2\x85", b"e\\u0085"]
    for event_id in bad:
        with pytest.raises(InvalidRecord) as info:
            decode(Source.VIEWS, 0, b"r1", template % (event_id, b""), NOW, SKEW)
        assert info.value.category == "schema", event_id
    fine = template % (b'e\\u00e9\\/\\"', b',"note":"line\\nbreak \xc2\xa9"')
    assert decode(Source.VIEWS, 0, b"r1", fine, NOW, SKEW).room == "r1"


# -- agreement: generated records, valid and not, judged by both ----------------------------
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=4)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(_text, inner, max_size=2),
    max_leaves=6,
)
_field_values = st.one_of(
    st.integers(-3, 3),
    st.integers(0, 2**40),
    st.sampled_from([TS_MAX, TS_MAX + 1, AMOUNT_MAX, AMOUNT_MAX + 1, 2**63, 2**64, -(2**63)]),
    st.floats(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-3, 2**45).map(float),  # integral floats: integers by JSON Schema's rule
    st.sampled_from(["", "x", "CNY", "JPY", "cny", "ZZZ", "XXX", "1", "__x", "a\x00", "\x85"]),
    st.text(max_size=3).map(lambda t: "r" + t),
    st.integers(ID_MAX_LENGTH - 1, ID_MAX_LENGTH + 1).map(lambda n: "x" * n),
    st.integers(MAX_DEPTH - 2, MAX_DEPTH + 1).map(nested),
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
    "extra",
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


@settings(max_examples=800, deadline=None)
@given(_mutated(), st.booleans())
def test_decoder_and_schema_agree(case: tuple[Source, dict], ascii: bool) -> None:
    src, obj = case
    expected = VALIDATORS[src].is_valid(obj)
    try:
        decode(src, 0, _key(obj), dumps(obj, ascii), TS_MAX, SKEW)
        accepted = True
    except InvalidRecord as bad:
        accepted = bad.category != "schema"
        assert bad.category in ("schema", "key")
    assert accepted == expected, obj


# -- totality: nothing but an Ev or an InvalidRecord ------------------------------------------
@settings(max_examples=500, deadline=None)
@given(
    src=st.sampled_from(list(Source)),
    key=st.none() | st.binary(max_size=8),
    value=st.none()
    | st.binary(max_size=64)
    | _json_values.map(dumps)
    | _mutated().map(lambda case: dumps(case[1])),
    partition=st.none() | st.integers(-1, 5),
)
def test_decode_is_total(
    src: Source, key: bytes | None, value: bytes | None, partition: int | None
) -> None:
    try:
        ev = decode(src, 0, key, value, NOW, SKEW, partition, 4)
    except InvalidRecord as bad:
        assert bad.category in contract.CATEGORIES and bad.category != "internal", bad.reason
    else:
        assert isinstance(ev, Ev) and 0 <= ev.ts <= NOW + SKEW


def test_every_kind_keeps_its_user_and_every_product_kind_its_product() -> None:
    """The people of each funnel stage and the per-product columns need them (issue 15)."""
    cases = [
        (Source.VIEWS, {"type": "impression"}, ""),
        (Source.VIEWS, {"type": "enter"}, ""),
        (Source.VIEWS, {"type": "leave", "watch_ms": 5}, ""),
        (Source.CLICKS, {"type": "product_impression", "product_id": "p9"}, "p9"),
        (Source.CLICKS, {"type": "product_click", "product_id": "p9"}, "p9"),
        (Source.ORDERS, {"type": "created", **ORDER}, "p1"),
        (Source.ORDERS, {"type": "paid", **ORDER}, "p1"),
        (Source.ORDERS, {"type": "refunded", **ORDER}, "p1"),
    ]
    for src, fields, product in cases:
        ev = _decode(src, {**BASE, **fields})
        assert (ev.user, ev.product) == ("u1", product), fields

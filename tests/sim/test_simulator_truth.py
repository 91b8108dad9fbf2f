"""The simulator's ground truth on hand-made records: windows, lateness, malformed records."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from streams.core.partitioner import partition_of
from streams.sim import Emitted, SimConfig, compute_truth
from streams.sim.truth import check
from tests.support import scenario
from tests.support.events import assert_windows_equal

B = 1_700_000_040_000  # a window start (multiple of 60 000)
CONFIG = SimConfig(end_ms=None, incidents=(), window_ms=60_000, grace_ms=5_000, partitions=4)
SCHEMAS = Path(__file__).parents[2] / "schemas"
VALIDATORS = {
    topic: Draft202012Validator(json.loads((SCHEMAS / f"live.{topic}.schema.json").read_text()))
    for topic in ("views", "clicks", "orders")
}
ORDER = {"product_id": "p1", "currency": "CNY", "quantity": 2}


def rec(
    topic: str,
    room: str,
    n: int,
    type_: str,
    user: str,
    ts: int,
    label: str = "ok",
    arrival: int | None = None,
    key: bytes | str | None = "room",
    **extra: object,
) -> Emitted:
    body = {"event_id": f"e{n}", "room_id": room, "user_id": user, "ts": ts, "type": type_}
    body.update(extra)
    return Emitted(
        topic=topic,
        key=room.encode() if key == "room" else key,  # type: ignore[arg-type]
        value=orjson.dumps(body),
        arrival_ms=ts if arrival is None else arrival,
        label=label,
        event_id=f"e{n}",
    )


def test_the_hand_made_rooms_partitions() -> None:
    # the hand-made case below relies on these
    assert [partition_of(k, 4) for k in (b"room-a", b"room-b", b"room-c")] == [2, 3, 3]


def order(room: str, n: int, type_: str, user: str, ts: int, oid: str, cents: int) -> Emitted:
    return rec("orders", room, n, type_, user, ts, order_id=oid, amount_cents=cents, **ORDER)


def hand_made() -> list[Emitted]:
    """room-b and room-c share partition 3, room-a is on partition 2."""
    return [
        rec("views", "room-b", 1, "impression", "u1", B + 1_000),
        rec("views", "room-b", 2, "enter", "u1", B + 2_000),
        rec("views", "room-c", 3, "impression", "u2", B + 30_000),
        # 10 s behind the largest time of views/partition 3 (room-c's): late, although it is
        # ahead of everything room-b has sent
        rec("views", "room-b", 4, "enter", "u3", B + 20_000, "out_of_order", B + 30_001),
        # another partition has its own clock
        rec("views", "room-a", 5, "enter", "u4", B + 3_000),
        # and so has another topic on the same partition
        rec("clicks", "room-b", 6, "product_click", "u1", B + 10_000, product_id="p1"),
        order("room-b", 7, "created", "u1", B + 11_000, "o1", 2_000),
        order("room-b", 8, "paid", "u1", B + 12_000, "o1", 2_000),
        # exactly grace behind views/partition 3: on time; u1 again (one unique viewer)
        rec("views", "room-b", 9, "enter", "u1", B + 25_000),
        # malformed: no key, not JSON, schema (quantity 0), key of another room
        rec("views", "room-b", 10, "enter", "u9", B + 26_000, label="malformed", key=None),
        Emitted("orders", b"room-b", b'{"event_id": "e11", "room', B + 26_000, "malformed", "e11"),
        rec(
            "orders",
            "room-b",
            12,
            "paid",
            "u1",
            B + 26_000,
            label="malformed",
            order_id="o1",
            amount_cents=2_000,
            product_id="p1",
            currency="CNY",
            quantity=0,
        ),
        rec("views", "room-b", 13, "enter", "u9", B + 26_000, label="malformed", key=b"room-a"),
        # window 1
        order("room-b", 14, "paid", "u5", B + 61_000, "o2", 3_000),
        order("room-b", 15, "paid", "u6", B + 62_000, "o3", 1_000),
        rec("views", "room-b", 16, "leave", "u1", B + 61_000, watch_ms=59_000),
        rec("views", "room-b", 17, "impression", "u5", B + 90_000),
        order("room-b", 18, "refunded", "u1", B + 91_000, "o1", 2_000),
    ]


NONE_DERIVED = dict.fromkeys(
    ("enter_rate", "ctr", "conversion_rate", "click_to_order_rate", "gpm", "aov"), None
)
ZERO = dict.fromkeys(
    (
        "impressions", "enters", "unique_viewers", "leaves", "watch_ms_total",
        "product_impressions", "product_clicks", "orders_created", "orders_paid", "gmv_cents",
        "refunds", "refund_cents",
    ),
    0,
)  # fmt: skip


def window(room: str, start: int, **values: object) -> dict:
    return {
        "room_id": room,
        "window_start": start,
        "window_end": start + 60_000,
        **ZERO,
        **NONE_DERIVED,
        "order_growth": None,
        "gmv_growth": None,
        "products": {},
        **values,
    }


def test_hand_made_records_give_hand_computed_windows() -> None:
    truth = compute_truth(CONFIG, hand_made())
    expected = [
        window("room-a", B, enters=1, unique_viewers=1, conversion_rate=0.0, gpm=0.0),
        window(
            "room-b",
            B,
            impressions=1,
            enters=2,
            unique_viewers=1,
            product_clicks=1,
            orders_created=1,
            orders_paid=1,
            gmv_cents=2_000,
            enter_rate=2.0,
            conversion_rate=0.5,
            click_to_order_rate=1.0,
            gpm=10_000.0,  # 20 CNY * 1000 / 2 enters
            aov=20.0,
            products={"p1": [1, 1]},  # clicks, orders created
        ),
        window(
            "room-b",
            B + 60_000,
            impressions=1,
            leaves=1,
            watch_ms_total=59_000,
            orders_paid=2,
            gmv_cents=4_000,
            refunds=1,
            refund_cents=2_000,
            enter_rate=0.0,
            aov=20.0,
            order_growth=1.0,  # 2 paid after 1
            gmv_growth=1.0,  # 40 CNY after 20
        ),
        window("room-c", B, impressions=1, enter_rate=0.0),
    ]
    assert_windows_equal(truth["windows"], expected)
    late = {"event_id": "e4", "topic": "views", "room_id": "room-b", "ts": B + 20_000}
    assert truth["late"] == [{**late, "arrival_ms": B + 30_001}]
    assert truth["late_by_room"] == {"room-b": 1}
    assert truth["malformed"] == [
        {"event_id": "e10", "topic": "views", "reason": "key"},
        {"event_id": "e11", "topic": "orders", "reason": "json"},
        {"event_id": "e12", "topic": "orders", "reason": "schema"},
        {"event_id": "e13", "topic": "views", "reason": "key"},
    ]
    assert truth["totals"] == {
        "emitted": 18,
        "ok": 13,
        "out_of_order": 1,
        "late": 0,  # by label: the generator's labels are counted, not trusted
        "malformed": 4,
        "duplicate": 0,
        "repeated_payment": 0,
        "foreign_currency": 0,
        "applied": 13,
        "late_by_contract": 1,
        "malformed_by_contract": 4,
    }
    assert truth["incidents"] == []
    assert json.loads(json.dumps(truth)) == truth


def test_growth_is_none_after_a_window_without_paid_orders_or_without_events() -> None:
    records = [
        rec("views", "room-a", 1, "impression", "u1", B + 1_000),  # window 0: no paid orders
        order("room-a", 2, "paid", "u1", B + 61_000, "o1", 500),
        # window 2 empty, window 3 has a paid order: no previous window at all
        order("room-a", 3, "paid", "u1", B + 181_000, "o2", 700),
        order("room-a", 4, "paid", "u1", B + 241_000, "o3", 350),
    ]
    rows = compute_truth(CONFIG, records)["windows"]
    assert [r["window_start"] - B for r in rows] == [0, 60_000, 180_000, 240_000]
    assert [r["order_growth"] for r in rows] == [None, None, None, 0.0]
    assert [r["gmv_growth"] for r in rows] == [None, None, None, -0.5]


def test_duplicates_count_once_and_a_room_keeps_its_first_currency() -> None:
    def paid(n: int, ts: int, oid: str, cents: int, currency: str = "JPY") -> Emitted:
        return rec("orders", "room-a", n, "paid", "u1", ts, order_id=oid, amount_cents=cents,
                   product_id="p1", currency=currency, quantity=1)  # fmt: skip

    first = rec("views", "room-a", 1, "enter", "u1", B + 1_000)
    records = [
        first,
        first,  # a producer retry: the same record again
        rec("views", "room-a", 1, "enter", "u1", B + 61_000),  # the same id, another window
        paid(2, B + 2_000, "o1", 1_500),  # the room's first order: it sells in yen
        paid(3, B + 3_000, "o1", 1_500),  # the callback again, new event id: counted once
        paid(4, B + 4_000, "o2", 900, currency="CNY"),  # another currency: a dead letter
        rec("orders", "room-a", 5, "refunded", "u1", B + 5_000, order_id="o1",
            amount_cents=1_500, **ORDER | {"currency": "JPY"}),  # a refund is not a payment
        paid(6, B + 61 * 60_000, "o1", 1_500),  # 61 windows later: paid again, counted
    ]  # fmt: skip
    truth = compute_truth(CONFIG, records)
    rows = {(r["window_start"] - B) // 60_000: r for r in truth["windows"]}
    assert (rows[0]["enters"], rows[1]["enters"]) == (1, 1)
    assert (rows[0]["orders_paid"], rows[0]["gmv_cents"], rows[0]["refunds"]) == (1, 1_500, 1)
    assert rows[0]["aov"] == 1_500.0  # JPY: no minor unit
    assert rows[61]["orders_paid"] == 1
    assert truth["currencies"] == {"room-a": "JPY"}
    assert truth["duplicates"] == {"event_id": 1, "order_id": 1}
    assert truth["dead_letters"] == [{"event_id": "e4", "room_id": "room-a", "reason": "currency"}]
    assert truth["totals"]["applied"] == 5


def test_the_shared_scenario_gives_its_hand_computed_windows() -> None:
    """tests/support/scenario.py (worked out by hand for the stream) through the truth's
    own rules."""
    base = B
    records = []
    for n, (kind, body) in enumerate(scenario.events("room-s", base)):
        records.append(
            Emitted(kind, b"room-s", orjson.dumps(body), body["ts"], "ok", body["event_id"])
        )
        assert n < 100
    truth = compute_truth(CONFIG, records)
    expected = [
        {"room_id": "room-s", **{k: v for k, v in w.items() if k != "closed"}}
        for w in scenario.expected_closed_windows(base)
    ]
    # the scenario's windows are the worker's /rooms view, which has no per-product counts
    rows = [{k: v for k, v in w.items() if k != "products"} for w in truth["windows"]]
    assert_windows_equal(rows, expected)
    assert len(truth["late"]) == scenario.EXPECTED_LATE


GOOD = {
    "views": {"type": "leave", "watch_ms": 10},
    "clicks": {"type": "product_click", "product_id": "p1"},
    "orders": {"type": "paid", "order_id": "o1", "amount_cents": 100, **ORDER},
}
FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([1.5, "", "x", "CNY", "cny", "CNYX", "impression", "paid", "product_click"]),
    # the bounds of contract v1
    st.sampled_from([3.0, 1e3, 253_402_300_799_999, 253_402_300_800_000, 10**12, 10**12 + 1]),
    st.sampled_from(["JPY", "ZZZ", "XXX", "x" * 128, "x" * 129, "a\x00", "a\n", "\x85", "__x"]),
    st.integers(1, 20).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    st.lists(st.integers(-3, 3), max_size=1),
    st.just({"a": 1}),
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(GOOD)),
    st.sampled_from(
        [
            "event_id", "room_id", "user_id", "ts", "type", "watch_ms", "product_id",
            "order_id", "quantity", "amount_cents", "currency",
        ]
    ),
    st.one_of(st.just("drop"), FIELD_VALUES),
)  # fmt: skip
def test_validation_agrees_with_the_json_schemas(topic: str, name: str, value: object) -> None:
    body = {"event_id": "e1", "room_id": "r1", "user_id": "u1", "ts": B, **GOOD[topic]}
    if value == "drop":
        body.pop(name, None)
    else:
        body[name] = value
    schema_ok = VALIDATORS[topic].is_valid(body)
    event, reason = check(topic, b"r1", orjson.dumps(body))
    if schema_ok:
        key_ok = body["room_id"] == "r1"
        assert (event is not None) == key_ok, (body, reason)
    else:
        assert event is None and reason == "schema", body


ENTER = orjson.dumps({"event_id": "e", "room_id": "r1", "user_id": "u", "ts": 1, "type": "enter"})


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"r1", b"\xff\xfe{}", "json"),
        (b"r1", b"[1, 2]", "schema"),
        (b"r1", b'{"event_id": "e1"', "json"),
        (None, b"not json", "json"),  # the value is judged before the key, like the stream
        (None, ENTER, "key"),
        (b"r2", ENTER, "key"),
    ],
)
def test_malformed_reasons(key: bytes | None, value: bytes, reason: str) -> None:
    assert check("views", key, value) == (None, reason)

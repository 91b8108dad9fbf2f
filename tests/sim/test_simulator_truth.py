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
        **values,
    }


def contract_v1(rows: list[dict]) -> list[dict]:
    """The keys a window had before issue 15 (the tests below check the others)."""
    keys = set(window("r", 0))
    return [{k: v for k, v in row.items() if k in keys} for row in rows]


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
    assert_windows_equal(contract_v1(truth["windows"]), expected)
    p1 = {"product_id": "p1", "product_impressions": 0, "product_clicks": 1}
    assert [w["products"] for w in truth["windows"]] == [
        [],
        [{**p1, "orders_created": 1, "orders_paid": 1, "gmv_cents": 2_000, "refunds": 0,
          "ctr": None, "click_to_order_rate": 1.0}],
        [{**p1, "product_clicks": 0, "orders_created": 0, "orders_paid": 2, "gmv_cents": 4_000,
          "refunds": 1, "ctr": None, "click_to_order_rate": None}],
        [],
    ]  # fmt: skip
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
    # the scenario's windows are contract v1's (before issue 15)
    assert_windows_equal(contract_v1(truth["windows"]), expected)
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


# --- issue 15: people, online viewers, products, rolling and session blocks --------------------


def live_screen() -> tuple[list[Emitted], int]:
    """One room (partition 2), arrivals in event time: windows 0, 1 and 5."""
    o = 1_700_000_040  # the window's first second
    return [
        rec("views", "room-a", 1, "impression", "u1", B + 1_000),
        rec("views", "room-a", 2, "impression", "u2", B + 1_500),
        rec("views", "room-a", 3, "impression", "u1", B + 1_999),  # u1 again: one person
        rec("views", "room-a", 4, "enter", "u1", B + 2_000),
        rec("views", "room-a", 5, "enter", "u2", B + 2_500),  # R(o + 2) = 2
        rec("views", "room-a", 6, "leave", "u1", B + 10_000, watch_ms=8_000),  # R = 1
        rec("clicks", "room-a", 7, "product_impression", "u2", B + 11_000, product_id="p1"),
        rec("clicks", "room-a", 8, "product_impression", "u2", B + 11_500, product_id="p2"),
        rec("clicks", "room-a", 9, "product_click", "u2", B + 12_000, product_id="p1"),
        rec("clicks", "room-a", 10, "product_click", "u2", B + 12_500, product_id="p1"),
        order("room-a", 11, "created", "u2", B + 20_000, "o1", 1_000),
        rec("orders", "room-a", 12, "created", "u2", B + 21_000, order_id="o2",
            amount_cents=500, **ORDER | {"product_id": "p2"}),
        order("room-a", 13, "paid", "u2", B + 30_000, "o1", 1_000),
        rec("views", "room-a", 14, "enter", "u3", B + 40_000),
        rec("views", "room-a", 15, "enter", "u4", B + 40_999),  # R(o + 40) = 3: the peak
        rec("views", "room-a", 16, "leave", "u3", B + 41_000, watch_ms=1_000),  # R = 2
        # window 1
        rec("views", "room-a", 17, "leave", "u2", B + 61_000, watch_ms=58_500),  # R = 1
        order("room-a", 18, "refunded", "u2", B + 62_000, "o1", 1_000),
        rec("views", "room-a", 19, "leave", "u4", B + 63_000, watch_ms=22_001),  # R = 0
        rec("views", "room-a", 20, "leave", "u1", B + 64_000, watch_ms=100),  # R = -1
        rec("views", "room-a", 21, "impression", "u1", B + 70_000),
        rec("views", "room-a", 22, "enter", "u3", B + 71_000),  # R = 0
        # window 5
        rec("views", "room-a", 23, "enter", "u1", B + 300_000),  # R = 1
    ], o  # fmt: skip


def test_people_rates_online_and_products_of_hand_computed_windows() -> None:
    records, o = live_screen()
    rows = compute_truth(CONFIG, records)["windows"]
    assert [r["window_start"] - B for r in rows] == [0, 60_000, 300_000]
    w0, w1, w5 = rows
    assert {k: w0[k] for k in w0 if k not in contract_v1([w0])[0] and k != "products"} == {
        "impression_users": 2,
        "viewers": 4,
        "product_impression_users": 1,
        "clicker_users": 1,
        "buyers": 1,
        "enter_rate_users": 2.0,  # 4 viewers / 2 people shown the room
        "ctr_users": 1.0,
        "click_to_buy_users": 1.0,
        "conversion_rate_users": 0.25,
        "payment_success_rate": 0.5,
        "refund_rate": 0.0,
        "unpaid_orders": 1,
        "uv_value": 2.5,  # 10 CNY / 4 viewers
        "aov_per_buyer": 10.0,
        "watch_seconds_per_viewer": 2.25,  # 9 s / 4 viewers
        "avg_watch_seconds": 4.5,  # 9 s / 2 leaves
        "online_end": 2,
        "online_peak": 3,
        "online_peak_at": (o + 40) * 1000,
    }
    assert (w0["unique_viewers"], w0["enters"], w0["impressions"]) == (4, 4, 3)
    none = {"ctr": None, "click_to_order_rate": None}
    assert w0["products"] == [
        {"product_id": "p1", "product_impressions": 1, "product_clicks": 2, "orders_created": 1,
         "orders_paid": 1, "gmv_cents": 1_000, "refunds": 0, "ctr": 2.0,
         "click_to_order_rate": 0.5},
        {"product_id": "p2", "product_impressions": 1, "product_clicks": 0, "orders_created": 1,
         "orders_paid": 0, "gmv_cents": 0, "refunds": 0, "ctr": 0.0,
         "click_to_order_rate": None},
    ]  # fmt: skip
    assert w1["products"] == [
        {"product_id": "p1", **dict.fromkeys(("product_impressions", "product_clicks",
         "orders_created", "orders_paid", "gmv_cents"), 0), "refunds": 1, **none}
    ]  # fmt: skip
    # R falls to -1 and is shown as 0; the peak is the first second reaching 1
    assert (w1["online_end"], w1["online_peak"], w1["online_peak_at"]) == (0, 1, (o + 61) * 1000)
    assert (w1["impression_users"], w1["viewers"], w1["buyers"]) == (1, 1, 0)
    assert (w1["payment_success_rate"], w1["refund_rate"], w1["aov_per_buyer"]) == (None,) * 3
    assert w1["avg_watch_seconds"] == pytest.approx(80.601 / 3)
    assert w1["watch_seconds_per_viewer"] == pytest.approx(80.601)
    assert (w1["uv_value"], w1["unpaid_orders"], w1["order_growth"]) == (0.0, 0, -1.0)
    assert (w5["online_end"], w5["online_peak"], w5["online_peak_at"]) == (1, 1, B + 300_000)
    assert w5["products"] == []


def test_rolling_merges_people_and_compares_spans() -> None:
    records, o = live_screen()
    rolling = compute_truth(CONFIG, records, rolling=(1, 3))["rooms"]["room-a"]["rolling"]
    end = B + 360_000  # the end of the room's last window
    one = rolling["1"]
    assert (one["current"]["span_start"], one["current"]["span_end"]) == (B + 300_000, end)
    assert one["previous"]["windows"] == 0 and one["previous"]["enters"] == 0
    assert one["previous"]["online_end"] is one["previous"]["online_peak"] is None
    assert all(v is None for v in one["change"].values())
    three = rolling["3"]
    current, previous, change = three["current"], three["previous"], three["change"]
    assert (previous["span_start"], previous["span_end"], previous["windows"]) == (
        B,
        B + 180_000,
        2,
    )
    # windows 0 and 1 merged: u1 shown the room in both is one person, u3 entered in both
    assert (previous["impressions"], previous["impression_users"]) == (4, 2)
    assert (previous["enters"], previous["viewers"], previous["leaves"]) == (5, 4, 5)
    assert (previous["refunds"], previous["refund_rate"], previous["uv_value"]) == (1, 1.0, 2.5)
    assert previous["gpm"] == 2_000.0  # 10 CNY * 1000 / 5 enters
    assert (previous["online_end"], previous["online_peak"]) == (0, 3)
    assert previous["online_peak_at"] == (o + 40) * 1000
    assert "order_growth" not in previous
    assert (current["windows"], current["enters"], current["viewers"]) == (1, 1, 1)
    assert (current["online_end"], current["online_peak"]) == (1, 1)
    assert change["enters"] == pytest.approx(-0.8)
    assert change["viewers"] == pytest.approx(-0.75)
    assert change["impressions"] == -1.0
    assert change["online_peak"] == pytest.approx(1 / 3 - 1)
    assert change["online_end"] is None  # previous 0
    assert change["aov"] is None  # current None
    assert change["unpaid_orders"] == -1.0
    assert set(change) == set(current) - {"span_start", "span_end", "windows", "online_peak_at"}


def test_session_totals_people_peak_and_best_window() -> None:
    records, o = live_screen()
    session = compute_truth(CONFIG, records)["rooms"]["room-a"]["session"]
    assert {k: session[k] for k in ("impressions", "enters", "leaves", "watch_ms_total")} == {
        "impressions": 4,
        "enters": 6,
        "leaves": 5,
        "watch_ms_total": 89_601,
    }
    assert (session["viewers"], session["buyers"], session["gmv_cents"]) == (4, 1, 1_000)
    assert (session["online_now"], session["online_peak"]) == (1, 3)
    assert session["online_peak_at"] == (o + 40) * 1000
    assert (session["peak_gmv_window_start"], session["peak_gmv_cents"]) == (B, 1_000)
    assert session["conversion_rate_users"] == 0.25 and session["uv_value"] == 2.5
    assert session["watch_seconds_per_viewer"] == pytest.approx(89.601 / 4)
    # only viewers and buyers are kept for the session: no rate of the other people
    assert not {"enter_rate_users", "ctr_users", "click_to_buy_users"} & set(session)


def test_products_beyond_the_cap_are_summed_and_online_follows_event_time() -> None:
    def card(n: int, type_: str, product: str, ts: int) -> Emitted:
        return rec("clicks", "room-a", n, type_, "u1", ts, product_id=product)

    enter = rec("views", "room-a", 1, "enter", "u1", B + 10_000)
    records = [
        enter,
        enter,  # sent twice: applied once
        # 2 s behind views' time, within grace: R(B + 8 s) = -1, R(B + 10 s) = 0
        rec("views", "room-a", 2, "leave", "u2", B + 8_000, "out_of_order", B + 10_001,
            watch_ms=5),
        # beyond grace: late, not applied
        rec("views", "room-a", 3, "enter", "u3", B + 1_000, "late", B + 10_002),
        order("room-a", 4, "paid", "u1", B + 11_000, "o1", 500) ,
        rec("orders", "room-a", 5, "paid", "u1", B + 11_000, order_id="o2", amount_cents=500,
            **ORDER | {"product_id": "pB"}),
        *(card(10 + i, "product_click", "pB", B + 12_000) for i in range(3)),
        *(card(20 + i, "product_click", "pC", B + 12_000) for i in range(5)),
        *(card(30 + i, "product_click", "pD", B + 12_000) for i in range(5)),
        card(40, "product_impression", "pD", B + 12_000),
        card(41, "product_impression", "pE", B + 12_000),
    ]  # fmt: skip
    (row,) = compute_truth(CONFIG, records, products_per_window=2)["windows"]
    assert [p["product_id"] for p in row["products"]] == ["pB", "p1", "__other__"]
    assert row["products"][2] == {
        "product_id": "__other__",
        "product_impressions": 2,
        "product_clicks": 10,
        "orders_created": 0,
        "orders_paid": 0,
        "gmv_cents": 0,
        "refunds": 0,
        "ctr": 5.0,
        "click_to_order_rate": 0.0,
    }
    assert (row["online_end"], row["online_peak"], row["online_peak_at"]) == (0, 0, B + 8_000)
    assert (row["enters"], row["leaves"]) == (1, 1)

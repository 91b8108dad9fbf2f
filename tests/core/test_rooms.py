"""One room's state: viewers, round trips through its changelog records, products, bounds."""

from __future__ import annotations

import random

import msgspec
import pytest
from datasketches import hll_sketch
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.changelog import SEP, window_key
from streams.core.contract import ID_MAX_LENGTH, OTHER, Ev, Kind
from streams.core.funnel import PEOPLE_FIELDS, Counts
from streams.core.rooms import RoomConfig, RoomState, Tally, WindowRecord

CONFIG = RoomConfig(size_ms=60_000, retention=60)


def _enter(offset: int, ts: int, user: str) -> tuple[Ev, bool]:
    return Ev(0, offset, ts, "r", int(Kind.ENTER), user), False


def apply(room: RoomState, events: list[tuple[Ev, bool]], config: RoomConfig = CONFIG) -> Tally:
    """Apply (event, late) pairs as the processor does."""
    tally = Tally()
    _apply(room, events, config, tally)
    return tally


def _apply(
    room: RoomState, events: list[tuple[Ev, bool]], config: RoomConfig, tally: Tally
) -> None:
    late = {(ev.src, ev.offset) for ev, is_late in events if is_late}
    room.apply([ev for ev, _ in events], config, None, tally, [], late)


def round_trip(room: RoomState, config: RoomConfig = CONFIG) -> RoomState:
    """What a new worker restores from the room's changelog records."""
    table: dict[str, bytes] = {}
    before, head, graves = room.changes()
    for key, value in [*before, *([head] if head else [])]:
        table[key] = value
    for key in graves:
        table.pop(key, None)
    copy, unused = RoomState.restore(room.room_id, table.pop(room.room_id), table, config)
    assert unused == []
    return copy


def test_unique_viewers_within_two_percent_for_a_big_room() -> None:
    room = RoomState("r", 0)
    rng = random.Random(1)
    users = [f"user-{rng.getrandbits(64)}" for _ in range(50_000)]
    truth = len(set(users))
    apply(room, [_enter(i, 1000, u) for i, u in enumerate(users)])
    window = room.open[0]
    assert abs(window.viewers() - truth) / truth < 0.02
    room.close_until(60_000, CONFIG)
    assert abs(window.viewers() - truth) / truth < 0.02
    assert window.sketches is None and window.packed is not None  # compact, for rolling
    # the session's people: a running union, the same after a round trip through the changelog
    assert abs(room.session()["viewers"] - truth) / truth < 0.02
    apply(room, [_enter(len(users), 60_500, "late-comer")])
    assert round_trip(room).session() == room.session()


def test_small_rooms_count_viewers_exactly() -> None:
    room = RoomState("r", 0)
    apply(room, [_enter(i, 5, u) for i, u in enumerate(["a", "b", "a", "c", "b", "d"])])
    assert room.open[0].viewers() == 4


def test_changelog_round_trip_keeps_everything_including_open_sketches() -> None:
    room = RoomState("room-ü", 3)
    tally = Tally()
    events = [_enter(i, 1000 + i, f"u{i % 7}") for i in range(30)]
    _apply(room, events, CONFIG, tally)
    _apply(
        room,
        [
            (Ev(2, 4, 61_000, "room-ü", int(Kind.ORDER_PAID), "", 1234, "", 5, 6, 392), False),
            (Ev(0, 99, 500, "room-ü", int(Kind.ENTER), "x"), True),
        ],
        CONFIG,
        tally,
    )
    room.close_until(60_000, CONFIG)
    copy = round_trip(room)
    assert copy.describe_all(60_000) == room.describe_all(60_000)
    assert (copy.room_id, copy.partition, copy.applied, copy.late_events, copy.last_ts) == (
        "room-ü",
        3,
        [99, -1, 4],
        1,
        61_000,
    )
    assert (copy.currency_code, copy.exponent) == ("JPY", 0)
    assert copy.describe_all(60_000)[-1]["aov"] == 1234.0  # yen have no minor unit
    # the open window's sketch survives: the same new user counts once more on both copies
    for state in (room, copy):
        apply(state, [(Ev(0, 100, 61_500, "room-ü", int(Kind.ENTER), "new"), False)])
    assert copy.describe_all(60_000) == room.describe_all(60_000)
    # so do the payment's fingerprint (a repeat counts once) and the applied offsets
    for state in (room, copy):
        again = Ev(2, 5, 61_000, "room-ü", int(Kind.ORDER_PAID), "", 1234, "", 7, 6, 392)
        assert apply(state, [(again, False)]).duplicates["order_id"] == [0, 0, 1]


def test_offsets_already_applied_are_skipped() -> None:
    room = RoomState("r", 0)
    tally = Tally()
    _apply(room, [_enter(0, 10, "a"), _enter(1, 11, "b")], CONFIG, tally)
    _apply(room, [_enter(1, 11, "b"), _enter(2, 12, "c")], CONFIG, tally)
    assert room.open[0].counts.enters == 3
    assert tally.duplicates["offset"] == [1, 0, 0]
    assert tally.applied == [3, 0, 0]


def test_product_counts_per_window_match_the_events_and_are_kept_in_its_record() -> None:
    rng = random.Random(7)
    products = ["p-a", "p-b", "p-c"]
    events = []
    truth: dict[int, dict[str, list[int]]] = {}
    for offset in range(2_000):
        ts = rng.randrange(0, 180_000)
        product = rng.choice(products)
        if rng.random() < 0.7:
            events.append((Ev(1, offset, ts, "r", int(Kind.PRODUCT_CLICK), "", 0, product), False))
            column = 0
        else:
            created = Ev(2, offset, ts, "r", int(Kind.ORDER_CREATED), "", 990, product, 0, 0, 156)
            events.append((created, False))
            column = 1
        truth.setdefault(ts - ts % 60_000, {}).setdefault(product, [0, 0])[column] += 1
    # other kinds carry no product and are not counted per product
    events.append((Ev(0, 0, 10, "r", int(Kind.ENTER), "u"), False))
    room = RoomState("r", 0)
    apply(room, events)
    assert {s: w.products for s, w in room.open.items()} == truth
    assert {s: w.products for s, w in round_trip(room).open.items()} == truth
    room.close_until(60_000, CONFIG)
    assert room.closed[-1].products == truth[0]  # the detector judges it after this close
    room.close_until(180_000, CONFIG)
    assert [w.products for w in room.closed] == [truth[0], truth[60_000], truth[120_000]]
    # closed windows keep them (the rooms API shows them), and so do their records
    restored = round_trip(room)
    assert [w.products for w in restored.closed] == [truth[0], truth[60_000], truth[120_000]]


def test_a_window_names_a_bounded_number_of_products() -> None:
    config = RoomConfig(size_ms=60_000, products_per_window=5)
    room = RoomState("r", 0)
    clicks = [f"p{n:03d}" for n in range(100) for _ in range(n)]  # product n clicked n times
    events = [
        (Ev(1, offset, 1000, "r", int(Kind.PRODUCT_CLICK), "", 0, product), False)
        for offset, product in enumerate(clicks)
    ]
    apply(room, events, config)
    open_products = room.open[0].products
    assert open_products is not None and len(open_products) == 4 * 5 + 1  # 20 named + other
    assert sum(c[0] for c in open_products.values()) == sum(range(100))
    room.close_until(60_000, config)
    closed = room.closed[-1].products
    assert closed is not None and len(closed) == 5 + 1
    assert sum(c[0] for c in closed.values()) == sum(range(100))
    # the first 20 products seen have names (p001..p020; p000 has no click), the busiest 5 of
    # them are kept
    assert set(closed) == {"p016", "p017", "p018", "p019", "p020", OTHER}
    assert closed[OTHER][0] == sum(range(100)) - sum(range(16, 21))


def test_every_changelog_record_stays_bounded_under_hostile_traffic() -> None:
    """Long ids, many products and many users: each record stays far below Kafka's 1 MB."""
    room_id = "r" * ID_MAX_LENGTH
    room = RoomState(room_id, 0)
    long = "\U0001f600" * ID_MAX_LENGTH  # 4 bytes each in UTF-8
    events = []
    for n in range(30_000):
        src, kind = [(0, Kind.ENTER), (1, Kind.PRODUCT_CLICK), (2, Kind.ORDER_CREATED)][n % 3]
        product = f"{n}{long}"[:ID_MAX_LENGTH]
        events.append(
            (Ev(src, n, 1000, room_id, int(kind), f"{n}{long}", 1, product, n + 1, 0, 156), False)
        )
    apply(room, events)
    before, head, _ = room.changes()
    room.close_until(60_000, CONFIG)
    after, head2, _ = room.changes()
    sizes = [len(value) for _, value in [*before, *after]] + [len(head[1]), len(head2[1])]
    assert max(sizes) < 400_000, max(sizes)


def test_dedup_memory_is_bounded_per_window() -> None:
    config = RoomConfig(size_ms=60_000, max_ids_per_window=100)
    room = RoomState("r", 0)
    events = [(Ev(0, n, 1000, "r", int(Kind.IMPRESSION), eid=n + 1), False) for n in range(300)]
    tally = apply(room, events, config)
    assert tally.untracked_ids == 200 and room.open[0].counts.impressions == 300
    assert len(room.open[0].ids) == 100  # type: ignore[arg-type]


# -- issue 15: people, online, products, rolling and session -------------------------------

_SRC = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 2}


def _ev(offset: int, second: float, kind: Kind, user: str = "u", **extra: object) -> Ev:
    """An event of room "r" at ``second`` s (orders in CNY)."""
    currency = 156 if kind >= Kind.ORDER_CREATED else 0
    fields: dict = {"value": 0, "product": "", "eid": 0, "oid": 0, "currency": currency, **extra}
    return Ev(_SRC[int(kind)], offset, int(second * 1000), "r", int(kind), user, **fields)


def _feed(room: RoomState, events: list[Ev], config: RoomConfig = CONFIG) -> None:
    room.apply(events, config, None, Tally(), [])


def test_online_follows_event_time_across_two_open_windows_in_any_arrival_order() -> None:
    room = RoomState("r", 0)
    # window 1 [60 s, 120 s) hears first: two enters at 61 s, a leave at 62 s
    _feed(room, [_ev(0, 61, Kind.ENTER, "a"), _ev(1, 61.5, Kind.ENTER, "b")])
    _feed(room, [_ev(2, 62, Kind.LEAVE, "a")])
    # then window 0 [0, 60 s), out of order: an enter at 50 s, one at 10 s, a leave at 30 s
    _feed(room, [_ev(3, 50, Kind.ENTER, "c"), _ev(4, 10, Kind.ENTER, "d")])
    _feed(room, [_ev(5, 30, Kind.LEAVE, "d"), _ev(6, 20, Kind.IMPRESSION, "e")])
    w0, w1 = (room.open[s] for s in (0, 60_000))
    # window 0 alone: 10 s -> 1, 20 s -> 1, 30 s -> 0, 50 s -> 1
    assert room.online_values(w0) == (1, 1, 10_000)
    # window 1 starts where window 0 ends (1): 61 s -> 3, 62 s -> 2
    assert room.online_values(w1) == (2, 3, 61_000)
    assert room.online_now() == 2
    room.close_until(60_000, CONFIG)
    assert room.online_values(w0) == (1, 1, 10_000) and room.online_base == 1
    assert room.online_values(w1) == (2, 3, 61_000)
    room.close_until(120_000, CONFIG)
    assert room.describe(w1, 60_000)["online_peak"] == 3 and room.online_base == 2
    assert room.session()["online_peak"] == 3 and room.session()["online_peak_at"] == 61_000


def test_a_viewer_without_a_leave_stays_online_and_negative_counts_show_as_zero() -> None:
    room = RoomState("r", 0)
    _feed(room, [_ev(0, 1, Kind.LEAVE, "x"), _ev(1, 2, Kind.LEAVE, "y"), _ev(2, 3, Kind.ENTER)])
    room.close_until(60_000, CONFIG)
    _feed(room, [_ev(3, 61, Kind.ENTER, "z"), _ev(4, 62, Kind.ENTER, "w")])
    room.close_until(180_000, CONFIG)
    # -1, -2, -1 in window 0: shown as 0, its peak 0 at its first second; then 0, 1
    assert [room.online_values(w) for w in room.closed] == [(0, 0, 1_000), (1, 1, 62_000)]
    _feed(room, [_ev(5, 200, Kind.IMPRESSION)])  # no leave ever came: still online
    assert room.session()["online_now"] == 1


def test_peak_gmv_window_is_the_first_of_the_highest() -> None:
    room = RoomState("r", 0)
    assert room.session()["peak_gmv_window_start"] is None
    paid = Kind.ORDER_PAID
    _feed(room, [_ev(0, 1, paid, oid=1, value=500), _ev(1, 61, paid, oid=2, value=900)])
    _feed(room, [_ev(2, 121, paid, oid=3, value=900), _ev(3, 181, paid, oid=4, value=900)])
    room.close_until(180_000, CONFIG)  # 0..2 closed, the open one ties
    s = room.session()
    assert (s["peak_gmv_window_start"], s["peak_gmv_cents"]) == (60_000, 900)
    _feed(room, [_ev(4, 182, paid, oid=5, value=1)])  # the open window goes ahead
    s = room.session()
    assert (s["peak_gmv_window_start"], s["peak_gmv_cents"]) == (180_000, 901)


def test_people_per_stage_count_each_user_once() -> None:
    room = RoomState("r", 0)
    product = {"product": "p"}
    events = [
        _ev(0, 1, Kind.IMPRESSION, "a"),
        _ev(1, 1, Kind.IMPRESSION, "b"),
        _ev(2, 2, Kind.IMPRESSION, "a"),
        _ev(3, 3, Kind.ENTER, "a"),
        _ev(4, 4, Kind.ENTER, "a"),
        _ev(5, 5, Kind.PRODUCT_IMPRESSION, "a", **product),
        _ev(6, 6, Kind.PRODUCT_CLICK, "a", **product),
        _ev(7, 7, Kind.PRODUCT_CLICK, "a", **product),
        _ev(8, 8, Kind.ORDER_CREATED, "a", value=100, **product),
        _ev(9, 9, Kind.ORDER_PAID, "a", value=100, oid=1, **product),
        _ev(10, 9, Kind.ORDER_PAID, "c", value=100, oid=2, **product),  # paid, never entered
    ]
    _feed(room, events)
    view = room.describe(room.open[0], 60_000)
    people = [view[k] for k in PEOPLE_FIELDS]
    assert people == [2, 1, 1, 1, 2] and view["unique_viewers"] == 1
    assert (view["conversion_rate_users"], view["click_to_buy_users"]) == (2.0, 2.0)
    room.close_until(60_000, CONFIG)
    assert [room.describe(room.closed[0], 60_000)[k] for k in PEOPLE_FIELDS] == people


def test_closed_windows_keep_the_top_products_by_gmv_and_sum_the_rest() -> None:
    config = RoomConfig(size_ms=60_000, products_per_window=2)
    room = RoomState("r", 0)
    events, n = [], 0
    for product, clicks, paid in [("a", 3, 0), ("b", 1, 2), ("c", 5, 1), ("d", 9, 0)]:
        for _ in range(clicks):
            events.append(_ev(n, 1, Kind.PRODUCT_CLICK, product=product))
            n += 1
        for _ in range(paid):
            events.append(_ev(n, 2, Kind.ORDER_PAID, product=product, value=300, oid=n))
            n += 1
    events.append(_ev(n, 3, Kind.ORDER_REFUNDED, product="d", value=10, oid=n))
    _feed(room, events, config)
    shown = [p["product_id"] for p in room.describe(room.open[0], 60_000)["products"]]
    assert shown == ["b", "c", "d", "a"]  # open: all of them (below 4 x 2)
    room.close_until(60_000, config)
    products = room.describe(room.closed[0], 60_000)["products"]
    assert [p["product_id"] for p in products] == ["b", "c", OTHER]
    other = products[-1]
    assert (other["product_clicks"], other["orders_paid"], other["refunds"]) == (12, 0, 1)
    assert (other["ctr"], other["click_to_order_rate"]) == (None, 0.0)


def test_rolling_spans_merge_the_windows_they_hold_and_skip_gaps() -> None:
    config = RoomConfig(size_ms=60_000, retention=4, rolling=(2,))
    room = RoomState("r", 0)
    assert room.rolling(config) == {"2": None}
    # windows 0, 1 and 3 (window 2 had no event); users overlap across windows
    _feed(room, [_ev(0, 1, Kind.ENTER, "a"), _ev(1, 2, Kind.ENTER, "b")], config)
    _feed(room, [_ev(2, 61, Kind.ENTER, "a"), _ev(3, 62, Kind.LEAVE, "b", value=4000)], config)
    _feed(room, [_ev(4, 181, Kind.ENTER, "c"), _ev(5, 182, Kind.ENTER, "a")], config)
    room.close_until(240_000, config)
    block = room.rolling(config)["2"]
    current, previous, change = block["current"], block["previous"], block["change"]
    assert (current["span_start"], current["span_end"], current["windows"]) == (
        120_000,
        240_000,
        1,
    )
    assert (previous["span_start"], previous["span_end"], previous["windows"]) == (0, 120_000, 2)
    assert (previous["enters"], previous["viewers"], previous["unique_viewers"]) == (3, 2, 2)
    assert (current["enters"], current["viewers"]) == (2, 2)
    # online: 1, 2 in window 0; 3, 2 in window 1; 3, 4 in window 3
    assert (previous["online_end"], previous["online_peak"], previous["online_peak_at"]) == (
        2,
        3,
        61_000,
    )
    assert (current["online_end"], current["online_peak"], current["online_peak_at"]) == (
        4,
        4,
        182_000,
    )
    assert previous["avg_watch_seconds"] == 4.0 and current["avg_watch_seconds"] is None
    assert change["enters"] == 2 / 3 - 1 and change["viewers"] == 0.0
    assert change["online_peak"] == 4 / 3 - 1 and "online_peak_at" not in change
    assert change["leaves"] == -1.0
    assert change["impressions"] is None  # 0 before: no change to speak of
    assert "order_growth" not in current and "windows" not in change


def test_the_session_outlives_retention_and_old_windows_drop_their_sketches() -> None:
    config = RoomConfig(size_ms=60_000, retention=3, rolling=(1,))
    room = RoomState("r", 0)
    for n in range(5):  # window n: user n enters, user "x" enters every time and pays once
        _feed(room, [_ev(2 * n, 60 * n + 1, Kind.ENTER, f"u{n}")], config)
        _feed(room, [_ev(2 * n + 1, 60 * n + 2, Kind.ENTER, "x")], config)
    _feed(room, [_ev(10, 3, Kind.ORDER_PAID, "x", oid=1, value=5)], config)
    room.close_until(300_000, config)
    assert [w.start for w in room.closed] == [120_000, 180_000, 240_000]
    assert [w.packed is not None for w in room.closed] == [False, True, True]
    copy = round_trip(room, config)
    for state in (room, copy):
        session = state.session()
        assert (session["viewers"], session["buyers"], session["enters"]) == (6, 1, 10)
        assert session["online_now"] == 10 and session["online_peak_at"] == 242_000
    assert [w.packed is not None for w in copy.closed] == [False, True, True]
    assert copy.rolling(config) == room.rolling(config)


def test_rooms_written_by_the_previous_version_still_restore() -> None:
    """A room record and window records as the version before issue 15 wrote them."""

    class OldWindow(msgspec.Struct, array_like=True):
        start: int
        closed: bool
        counts: Counts
        unique_viewers: int
        sketch: bytes | None
        prev_orders_paid: int | None
        prev_gmv_cents: int | None
        products: dict[str, list[int]] | None
        id_chunks: int = 0
        order_chunks: int = 0

    class OldRoom(msgspec.Struct, array_like=True):
        partition: int
        applied: list[int]
        late_events: int
        last_ts: int
        windows: list[list[int]]
        closed_totals: Counts | None = None
        detector: None = None
        currency: int = 0

    sketch = hll_sketch(14)
    sketch.update("a")
    sketch.update("b")
    encode = msgspec.msgpack.encode
    closed = OldWindow(0, True, Counts(enters=3), 2, None, 0, 0, {"p": [4, 1]})
    open_ = OldWindow(
        60_000, False, Counts(enters=2), 0, sketch.serialize_compact(), None, None, None
    )
    parts = {
        window_key("r", 0, 0): encode(closed),
        window_key("r", 60_000, 0): encode(open_),
    }
    room_record = OldRoom(0, [5, -1, -1], 0, 61_000, [[0, 0], [60_000, 0]], Counts(enters=3))
    room, unused = RoomState.restore("r", encode(room_record), parts, CONFIG)
    assert unused == []
    old, new = room.describe_all(60_000)
    assert (old["viewers"], old["unique_viewers"], old["online_end"]) == (2, 2, None)
    assert old["products"][0]["product_clicks"] == 4 and old["products"][0]["orders_paid"] == 0
    assert (new["viewers"], new["online_peak"]) == (2, None)
    _feed(room, [_ev(6, 61, Kind.ENTER, "c")])
    assert room.describe_all(60_000)[1]["viewers"] == 3
    assert room.session()["viewers"] == 3 and room.rolling(CONFIG)["5"]["current"]["windows"] == 1
    room.close_until(120_000, CONFIG)
    # the new version's records on top of the old ones restore the same room again
    before, head, graves = room.changes()
    table = {**parts, **dict(before)}
    for key in graves:
        table.pop(key, None)
    assert head is not None
    again, unused = RoomState.restore("r", head[1], table, CONFIG)
    assert unused == [] and again.describe_all(60_000) == room.describe_all(60_000)
    assert again.session() == room.session()


def test_open_windows_with_their_seconds_as_a_flat_list_still_restore() -> None:
    """An open window's seconds as records before the second -> net map held them."""
    room = RoomState("r", 0)
    _feed(room, [_ev(0, 3, Kind.ENTER, "a"), _ev(1, 1, Kind.ENTER, "b"), _ev(2, 3, Kind.LEAVE)])
    before, head, _ = room.changes()
    assert head is not None
    decode = msgspec.msgpack.Decoder(WindowRecord).decode
    table = {}
    for key, value in before:
        rec = decode(value)
        assert rec.net_map == {3: 0, 1: 1} and rec.nets is None
        flat = [x for second in sorted(rec.net_map) for x in (second, rec.net_map[second])]
        table[key] = msgspec.msgpack.encode(msgspec.structs.replace(rec, nets=flat, net_map=None))
    again, unused = RoomState.restore("r", head[1], table, CONFIG)
    assert unused == [] and again.describe_all(60_000) == room.describe_all(60_000)
    assert again.describe_all(60_000)[0]["online_peak"] == 1
    assert again.online_now() == room.online_now() == 1


def _window_records(room: RoomState) -> tuple[dict[str, WindowRecord], dict[str, bytes], bytes]:
    """The room's changelog records: its windows' (decoded), the others, the room record."""
    before, head, _ = room.changes()
    assert head is not None
    decode = msgspec.msgpack.Decoder(WindowRecord).decode
    windows = {key: decode(value) for key, value in before if f"{SEP}w{SEP}" in key}
    return windows, {key: v for key, v in before if key not in windows}, head[1]


def test_a_stage_of_one_person_is_written_as_its_user_id() -> None:
    """A stage with one person goes to the changelog as the user id, open or closed; records
    that packed it as a sketch of one (the previous version) restore the same room."""
    room = RoomState("r", 0)
    impressions = [_ev(i, 1, Kind.IMPRESSION, user) for i, user in enumerate(("a", "b"))]
    _feed(room, [*impressions, _ev(2, 2, Kind.ENTER, "a"), _ev(3, 61, Kind.ENTER, "c")])
    room.close_until(60_000, CONFIG)
    records, others, head = _window_records(room)
    stages = {rec.closed: rec.sketches for rec in records.values()}
    viewers = PEOPLE_FIELDS.index("viewers")
    impression_users = PEOPLE_FIELDS.index("impression_users")
    assert stages[True][viewers] == "a" and stages[False][viewers] == "c"
    assert isinstance(stages[True][impression_users], bytes)

    def as_sketch(user: object) -> object:
        if not isinstance(user, str):
            return user
        sketch = hll_sketch(14)
        sketch.update(user)
        return sketch.serialize_compact()

    table = {
        key: msgspec.msgpack.encode(
            msgspec.structs.replace(rec, sketches=[as_sketch(p) for p in rec.sketches or ()])
        )
        for key, rec in records.items()
    } | others
    again, unused = RoomState.restore("r", head, table, CONFIG)
    assert unused == [] and again.describe_all(60_000) == room.describe_all(60_000)
    assert again.rolling(CONFIG) == room.rolling(CONFIG) and again.session() == room.session()


def test_a_window_record_without_one_sketch_or_id_per_stage_does_not_restore() -> None:
    room = RoomState("r", 0)
    _feed(room, [_ev(0, 1, Kind.ENTER, "a")])
    records, others, head = _window_records(room)
    for people in ([7, None, None, None, None], [None, "a"]):
        table = others | {
            key: msgspec.msgpack.encode(msgspec.structs.replace(rec, sketches=people))
            for key, rec in records.items()
        }
        with pytest.raises(msgspec.ValidationError, match="one sketch, user id or nobody"):
            RoomState.restore("r", head, table, CONFIG)


_KINDS = [Kind.IMPRESSION, Kind.ENTER, Kind.LEAVE, Kind.PRODUCT_IMPRESSION, Kind.PRODUCT_CLICK]
_KINDS += [Kind.ORDER_CREATED, Kind.ORDER_PAID, Kind.ORDER_REFUNDED]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 299), st.integers(0, 5), st.integers(0, 3)),
        max_size=80,
    ),
    st.lists(st.integers(0, 300), max_size=4),
)
def test_restoring_a_snapshot_gives_the_live_state(
    events: list[tuple[int, int, int, int]], closes: list[int]
) -> None:
    """Whatever was applied and closed, the changelog's snapshot restores the same room."""
    config = RoomConfig(size_ms=60_000, retention=3, rolling=(1,), products_per_window=1)
    room = RoomState("r", 0)
    table: dict[str, bytes] = {}
    marks = sorted(closes)
    watermark: int | None = None
    for n, (kind, second, user, product) in enumerate(events):
        k = _KINDS[kind]
        ev = _ev(n, second, k, f"u{user}", product=f"p{product}" if k >= 3 else "", value=n)
        room.apply([ev], config, watermark, Tally(), [])  # late ones as the processor
        while marks and marks[0] <= second:
            watermark = marks.pop(0) * 1000
            room.close_until(watermark, config)
        if n % 7 == 0:
            assert _shown(_snapshot(room, table, config), config) == _shown(room, config)
    assert _shown(_snapshot(room, table, config), config) == _shown(room, config)
    room.close_until(10**6, config)
    assert _shown(_snapshot(room, table, config), config) == _shown(room, config)


def _snapshot(room: RoomState, table: dict[str, bytes], config: RoomConfig) -> RoomState:
    """The room as the changelog (``table``, kept up to date here) restores it."""
    before, head, graves = room.changes()
    table.update(before)
    if head is not None:
        table[head[0]] = head[1]
    for key in graves:
        table.pop(key, None)
    parts = {key: value for key, value in table.items() if key != room.room_id}
    copy, unused = RoomState.restore(room.room_id, table[room.room_id], parts, config)
    assert unused == []
    return copy


def _shown(room: RoomState, config: RoomConfig) -> tuple:
    return (room.describe_all(60_000), room.session(), room.rolling(config), room.online_now())


def test_the_changelog_keeps_sketches_only_for_the_windows_rolling_may_merge() -> None:
    config = RoomConfig(size_ms=60_000, retention=4, rolling=(1,))  # sketches: last 2 closed
    room = RoomState("r", 0)
    table: dict[str, bytes] = {}
    for n in range(4):
        _feed(room, [_ev(n, 60 * n + 1, Kind.ENTER, f"u{n}")], config)
        room.close_until(60_000 * (n + 1), config)
        _snapshot(room, table, config)
    decode = msgspec.msgpack.Decoder(WindowRecord).decode
    records = {decode(v).start: decode(v) for k, v in table.items() if "\x1fw\x1f" in k}
    assert sorted(records) == [0, 60_000, 120_000, 180_000]  # one version each
    assert [records[s].sketches is not None for s in sorted(records)] == [False, False, True, True]
    assert [records[s].people for s in sorted(records)] == [[0, 1, 0, 0, 0]] * 4

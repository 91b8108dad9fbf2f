"""One room's state: viewers, round trips through its changelog records, products, bounds."""

from __future__ import annotations

import random

from streams.core.contract import ID_MAX_LENGTH, OTHER, Ev, Kind
from streams.core.rooms import RoomConfig, RoomState, Tally

CONFIG = RoomConfig(size_ms=60_000, retention=60)


def _enter(offset: int, ts: int, user: str) -> tuple[Ev, bool]:
    return Ev(0, offset, ts, "r", int(Kind.ENTER), user), False


def apply(room: RoomState, events: list[tuple[Ev, bool]], config: RoomConfig = CONFIG) -> Tally:
    tally = Tally()
    room.apply(events, config, None, tally, [])
    return tally


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


def test_small_rooms_count_viewers_exactly() -> None:
    room = RoomState("r", 0)
    apply(room, [_enter(i, 5, u) for i, u in enumerate(["a", "b", "a", "c", "b", "d"])])
    assert room.open[0].viewers() == 4


def test_changelog_round_trip_keeps_everything_including_open_sketches() -> None:
    room = RoomState("room-ü", 3)
    tally = Tally()
    events = [_enter(i, 1000 + i, f"u{i % 7}") for i in range(30)]
    room.apply(events, CONFIG, None, tally, [])
    room.apply(
        [
            (Ev(2, 4, 61_000, "room-ü", int(Kind.ORDER_PAID), "", 1234, "", 5, 6, 392), False),
            (Ev(0, 99, 500, "room-ü", int(Kind.ENTER), "x"), True),
        ],
        CONFIG,
        None,
        tally,
        [],
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
    room.apply([_enter(0, 10, "a"), _enter(1, 11, "b")], CONFIG, None, tally, [])
    room.apply([_enter(1, 11, "b"), _enter(2, 12, "c")], CONFIG, None, tally, [])
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

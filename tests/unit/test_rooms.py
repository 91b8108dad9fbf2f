from __future__ import annotations

import random

from streams.contract import Ev, Kind
from streams.rooms import RoomState, Tally


def _enter(offset: int, ts: int, user: str) -> tuple[Ev, bool]:
    return Ev(0, offset, ts, "r", int(Kind.ENTER), user), False


def test_unique_viewers_within_two_percent_for_a_big_room() -> None:
    room = RoomState("r", 0)
    rng = random.Random(1)
    users = [f"user-{rng.getrandbits(64)}" for _ in range(50_000)]
    truth = len(set(users))
    room.apply([_enter(i, 1000, u) for i, u in enumerate(users)], 60_000, None, Tally())
    window = room.open[0]
    assert abs(window.viewers() - truth) / truth < 0.02
    room.close_until(60_000, 60_000, 60)
    assert abs(window.unique_viewers - truth) / truth < 0.02
    assert window.sketch is None


def test_small_rooms_count_viewers_exactly() -> None:
    room = RoomState("r", 0)
    users = ["a", "b", "a", "c", "b", "d"]
    room.apply([_enter(i, 5, u) for i, u in enumerate(users)], 60_000, None, Tally())
    assert room.open[0].viewers() == 4


def test_changelog_round_trip_keeps_everything_including_open_sketches() -> None:
    room = RoomState("room-ü", 3)
    tally = Tally()
    room.apply([_enter(i, 1000 + i, f"u{i % 7}") for i in range(30)], 60_000, None, tally)
    room.apply(
        [
            (Ev(2, 4, 61_000, "room-ü", int(Kind.ORDER_PAID), "", 1234), False),
            (Ev(0, 99, 500, "room-ü", int(Kind.ENTER), "x"), True),
        ],
        60_000,
        None,
        tally,
    )
    room.close_until(60_000, 60_000, 60)
    copy = RoomState.from_bytes(room.to_bytes())
    assert copy.describe_all(60_000) == room.describe_all(60_000)
    assert (copy.room_id, copy.partition, copy.applied, copy.late_events, copy.last_ts) == (
        "room-ü",
        3,
        [99, -1, 4],
        1,
        61_000,
    )
    # the open window's sketch survives: the same new user counts once more on both copies
    for state in (room, copy):
        state.apply(
            [(Ev(0, 100, 61_500, "room-ü", int(Kind.ENTER), "new"), False)], 60_000, None, Tally()
        )
    assert copy.describe_all(60_000) == room.describe_all(60_000)


def test_offsets_already_applied_are_skipped() -> None:
    room = RoomState("r", 0)
    tally = Tally()
    room.apply([_enter(0, 10, "a"), _enter(1, 11, "b")], 60_000, None, tally)
    room.apply([_enter(1, 11, "b"), _enter(2, 12, "c")], 60_000, None, tally)
    assert room.open[0].counts.enters == 3
    assert tally.duplicates == 1
    assert tally.applied == [3, 0, 0]


def test_product_counts_per_window_match_the_events_and_live_until_the_next_close() -> None:
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
            events.append(
                (Ev(2, offset, ts, "r", int(Kind.ORDER_CREATED), "", 990, product), False)
            )
            column = 1
        truth.setdefault(ts - ts % 60_000, {}).setdefault(product, [0, 0])[column] += 1
    # other kinds carry no product and are not counted per product
    events.append((Ev(0, 0, 10, "r", int(Kind.ENTER), "u"), False))
    room = RoomState("r", 0)
    room.apply(events, 60_000, None, Tally())
    assert {s: w.products for s, w in room.open.items()} == truth
    copy = RoomState.from_bytes(room.to_bytes())
    assert {s: w.products for s, w in copy.open.items()} == truth
    room.close_until(60_000, 60_000, 60)
    assert room.closed[-1].products == truth[0]  # the detector judges it after this close
    room.close_until(180_000, 60_000, 60)
    assert [w.products for w in room.closed] == [None, truth[60_000], truth[120_000]]
    copy = RoomState.from_bytes(room.to_bytes())
    assert [w.products for w in copy.closed] == [None, truth[60_000], truth[120_000]]

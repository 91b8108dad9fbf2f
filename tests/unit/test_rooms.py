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

"""The stateful step without a broker: hand-computed windows, interleavings, replays."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contract import Ev, Kind
from streams.processor import PartitionProcessor
from streams.rooms import RoomState
from streams.windows import ClockState
from tests import scenario
from tests.helpers import assert_windows_equal, number_by_topic

BASE = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
FLUSH_AT = BASE + 30 * 60_000


class Harness:
    """A processor plus the dict that stands in for the Faust table."""

    def __init__(self, retention: int = 60) -> None:
        self.table: dict[str, RoomState] = {}
        self.clock: ClockState | None = None
        self.retention = retention
        self.closed = 0
        self.proc = self._new()

    def _new(self) -> PartitionProcessor:
        return PartitionProcessor(
            0,
            size_ms=60_000,
            grace_ms=5_000,
            idle_timeout_s=1e9,
            retention=self.retention,
            clock_state=self.clock,
            rooms=self.table.values(),
            now_s=0.0,
        )

    def feed(self, events: list[Ev]) -> None:
        out = self.proc.process(events, 1.0, self.table.get)
        self.table.update(out.updated)
        for room in out.deleted:
            del self.table[room]
        self.clock = self.proc.clock.state()
        self.closed += out.tally.windows_closed

    def restart(self) -> None:
        """What a new worker sees: the table as its changelog would rebuild it, and the clock."""
        self.table = {k: RoomState.from_bytes(v.to_bytes()) for k, v in self.table.items()}
        self.proc = self._new()


def flush(offsets: list[int], at: int = FLUSH_AT) -> list[Ev]:
    return [
        Ev(src, offsets[src] + 1000, at, "flush", int(kind), "f")
        for src, kind in ((0, Kind.ENTER), (1, Kind.PRODUCT_CLICK), (2, Kind.ORDER_CREATED))
    ]


def test_hand_computed_scenario() -> None:
    bodies = [body for _, body in scenario.events("r1", BASE)]
    h = Harness()
    h.feed(number_by_topic(bodies))
    h.feed(flush([100, 100, 100]))
    room = h.table["r1"]
    assert_windows_equal(room.describe_all(60_000), scenario.expected_closed_windows(BASE))
    assert room.late_events == scenario.EXPECTED_LATE
    assert h.closed == 3


def test_same_input_in_single_event_batches_gives_the_same_windows() -> None:
    bodies = [body for _, body in scenario.events("r1", BASE)]
    h = Harness()
    for ev in number_by_topic(bodies):
        h.feed([ev])
    h.feed(flush([100, 100, 100]))
    assert_windows_equal(h.table["r1"].describe_all(60_000), scenario.expected_closed_windows(BASE))


def _logs(seed: int) -> list[list[Ev]]:
    """Three topic logs for a few rooms, with out-of-order and late events in them."""
    rng = random.Random(seed)
    kinds = {
        0: [Kind.IMPRESSION, Kind.ENTER, Kind.LEAVE],
        1: [Kind.PRODUCT_IMPRESSION, Kind.PRODUCT_CLICK],
        2: [Kind.ORDER_CREATED, Kind.ORDER_PAID, Kind.ORDER_REFUNDED],
    }
    logs = []
    for src in range(3):
        t, log = BASE, []
        for offset in range(rng.randrange(20, 80)):
            t += rng.randrange(0, 9000)
            ts = t - rng.choice([0, 0, 0, 3000, 5000, 12000])  # some on time, some late
            log.append(
                Ev(
                    src,
                    offset,
                    max(ts, BASE),
                    f"r{rng.randrange(3)}",
                    int(rng.choice(kinds[src])),
                    f"u{rng.randrange(20)}",
                    rng.randrange(0, 5000),
                )
            )
        logs.append(log)
    return logs


def _merge(logs: list[list[Ev]], rng: random.Random) -> list[Ev]:
    cursors, merged = [0, 0, 0], []
    while any(cursors[s] < len(logs[s]) for s in range(3)):
        src = rng.choice([s for s in range(3) if cursors[s] < len(logs[s])])
        merged.append(logs[src][cursors[src]])
        cursors[src] += 1
    return merged


def _run(logs: list[list[Ev]], rng: random.Random, restart_at: int | None = None) -> dict:
    merged = _merge(logs, rng)
    h = Harness(retention=1000)
    i = 0
    while i < len(merged):
        size = rng.randrange(1, 12)
        h.feed(merged[i : i + size])
        if restart_at is not None and i <= restart_at < i + size:
            h.restart()
            # the source offsets were not committed: some records come again
            back = rng.randrange(0, i + size)
            h.feed(merged[back : i + size])
        i += size
    h.feed(flush([len(log) for log in logs]))
    return {
        room: (state.late_events, [w for w in state.describe_all(60_000) if w["closed"]])
        for room, state in sorted(h.table.items())
        if room != "flush"
    }


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_topic_interleaving_does_not_change_closed_windows(seed: int, a: int, b: int) -> None:
    logs = _logs(seed)
    first = _run(logs, random.Random(a))
    second = _run(logs, random.Random(b))
    assert first == second
    assert sum(len(windows) for _, windows in first.values()) > 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 400))
def test_restart_with_replayed_records_counts_nothing_twice(
    seed: int, order: int, cut: int
) -> None:
    logs = _logs(seed)
    once = _run(logs, random.Random(order))
    restarted = _run(logs, random.Random(order), restart_at=cut)
    assert once == restarted


def test_rooms_expire_after_retention_and_closed_windows_are_capped() -> None:
    h = Harness(retention=3)
    offsets = [0, 0, 0]

    def at(ts: int, room: str) -> list[Ev]:
        evs = [
            Ev(src, offsets[src], ts, room, int(kind), "u")
            for src, kind in ((0, Kind.ENTER), (1, Kind.PRODUCT_CLICK), (2, Kind.ORDER_CREATED))
        ]
        for src in range(3):
            offsets[src] += 1
        return evs

    for minute in range(6):
        h.feed(at(BASE + minute * 60_000, "busy"))
    busy = h.table["busy"]
    closed = [w for w in busy.describe_all(60_000) if w["closed"]]
    # watermark = BASE + 5 min - 5 s: windows 0..3 closed, only the newest 3 kept
    assert [w["window_start"] for w in closed] == [BASE + m * 60_000 for m in (1, 2, 3)]
    # "busy" goes quiet; another room moves the watermark past busy's newest window + 3 windows
    # busy's newest window ends at BASE+6m; it expires when the watermark reaches 6m + 3 windows
    h.feed(at(BASE + 9 * 60_000, "other"))  # watermark 9m - 5 s
    assert "busy" in h.table
    h.feed(at(BASE + 9 * 60_000 + 5_000, "other"))  # watermark 9m
    assert "busy" not in h.table
    assert "other" in h.table


def test_event_for_a_window_closed_by_the_idle_rule_is_late_not_applied() -> None:
    proc = PartitionProcessor(
        0,
        size_ms=60_000,
        grace_ms=5_000,
        idle_timeout_s=30,
        retention=60,
        clock_state=None,
        rooms=[],
        now_s=0.0,
    )
    table: dict[str, RoomState] = {}

    def feed(events: list[Ev], now: float):
        out = proc.process(events, now, table.get)
        table.update(out.updated)
        return out

    feed([Ev(0, 0, BASE + 1000, "r", int(Kind.ENTER), "u1")], now=1)
    feed([Ev(1, 0, BASE + 1000, "r", int(Kind.PRODUCT_CLICK))], now=1)
    # orders never speak; after 30 s they stop holding the watermark
    out = feed(
        [
            Ev(0, 1, BASE + 70_000, "r", int(Kind.ENTER), "u2"),
            Ev(1, 1, BASE + 70_000, "r", int(Kind.PRODUCT_CLICK)),
        ],
        now=40,
    )
    assert out.tally.windows_closed == 1
    # an order within grace of its own topic, but for the window the idle rule closed
    out = feed([Ev(2, 0, BASE + 2000, "r", int(Kind.ORDER_PAID), "", 100)], now=41)
    assert out.tally.late_closed == [0, 0, 1]
    first = table["r"].describe_all(60_000)[0]
    assert (first["closed"], first["orders_paid"], first["enters"]) == (True, 0, 1)
    assert table["r"].late_events == 1

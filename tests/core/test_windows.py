"""Event-time rules: lateness against the wall-clock-capped frontier, the watermark with the
ingest stage's idle verdict, and that verdict itself."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.windows import ClockState, IdleTracker, PartitionClock

GRACE = 5_000
NONE_IDLE = 0
ALL_IDLE = 0b111


def clock() -> PartitionClock:
    return PartitionClock.restore(None, GRACE)


def test_lateness_is_judged_per_topic_partition_against_its_own_max() -> None:
    c = clock()
    assert c.observe(0, 100_000, None) is False
    assert c.observe(0, 95_000, None) is False  # exactly grace behind: on time
    assert c.observe(0, 94_999, None) is True  # more than grace behind: late
    # another topic has its own maximum: far behind topic 0 but first on topic 1
    assert c.observe(1, 10_000, None) is False
    assert c.max_ts == [100_000, 10_000, None]


def test_an_event_ahead_of_the_wall_clock_moves_the_frontier_only_to_the_wall_clock() -> None:
    c = clock()
    now = 1_000_000
    # a producer 59 s fast: applied, but the frontier stops at the time it was read
    assert c.observe(0, now + 59_000, now) is False
    assert c.max_ts[0] == now
    # on-time events of other producers (within grace of the wall clock) stay on time
    assert c.observe(0, now - 4_000, now + 100) is False
    assert c.observe(0, now - GRACE, now + 100) is False
    # a producer 10 s fast all the time does not push anyone late either
    for second in range(1, 30):
        wall = now + second * 1_000
        assert c.observe(0, wall + 10_000, wall) is False
        assert c.observe(0, wall - 3_000, wall) is False
    # what is late by the wall clock is still late
    assert c.observe(0, now + 29_000 - GRACE - 1, now + 29_000) is True


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(-20_000, 20_000), st.integers(0, 2_000)),
        max_size=60,
    )
)
def test_no_event_within_grace_of_the_wall_clock_is_late(
    steps: list[tuple[int, int, int]],
) -> None:
    """Whatever early events came before (each up to 20 s ahead), an event no more than grace
    behind the wall clock is never late: the frontier never passes the wall clock."""
    c = clock()
    wall = 1_000_000
    for src, offset, advance in steps:
        wall += advance
        late = c.observe(src, wall + offset, wall)
        if offset >= -GRACE:
            assert late is False, (src, offset)
        assert all(m is None or m <= wall for m in c.max_ts)


def test_watermark_waits_for_every_topic_then_takes_the_minimum() -> None:
    c = clock()
    c.observe(0, 100_000, None)
    c.observe(1, 80_000, None)
    assert c.advance(NONE_IDLE) is None
    c.observe(2, 90_000, None)
    assert c.advance(NONE_IDLE) == 80_000 - GRACE
    c.observe(1, 200_000, None)
    assert c.advance(NONE_IDLE) == 90_000 - GRACE


def test_watermark_never_goes_back() -> None:
    c = clock()
    for src in range(3):
        c.observe(src, 100_000, None)
    c.observe(0, 300_000, None)
    # topics 1 and 2 idle: topic 0 alone moves the watermark
    assert c.advance(0b110) == 300_000 - GRACE
    # topic 1 wakes up far behind: it holds back again, but cannot pull the watermark down
    c.observe(1, 150_000, None)
    assert c.advance(0b100) == 300_000 - GRACE


def test_an_idle_topic_stops_holding_the_watermark() -> None:
    c = clock()
    c.observe(0, 100_000, None)
    c.observe(1, 100_000, None)
    # topic 2 never spoke: it holds the watermark until the ingest stage calls it idle
    assert c.advance(NONE_IDLE) is None
    assert c.advance(0b100) == 100_000 - GRACE


def test_all_idle_uses_the_most_advanced_topic() -> None:
    c = clock()
    c.observe(0, 100_000, None)
    c.observe(1, 120_000, None)
    assert c.advance(ALL_IDLE) == 120_000 - GRACE


def test_restore_keeps_maxima_and_watermark() -> None:
    c = clock()
    for src in range(3):
        c.observe(src, 50_000 + src, None)
    c.advance(NONE_IDLE)
    state = c.snapshot()
    again = PartitionClock.restore(ClockState(state.max_ts, state.watermark), GRACE)
    assert again.max_ts == [50_000, 50_001, 50_002]
    assert again.watermark == 50_000 - GRACE
    assert again.observe(0, 44_000, None) is True


# -- the ingest stage's idle verdict --------------------------------------------------------
TP = ("live.orders", 0)


def tracker() -> IdleTracker:
    idle = IdleTracker(idle_timeout_ms=30_000, fresh_ms=2_000)
    idle.assigned({TP}, now_ms=0)
    return idle


def test_idle_after_being_read_to_the_end_and_quiet_for_the_timeout() -> None:
    idle = tracker()
    idle.read(TP, 1_000)
    for t in range(2_000, 40_001, 1_000):
        idle.answered(TP, True, t)  # each fetch answer: nothing new, at the end
        assert idle.idle(TP, t) == (t - 1_000 >= 30_000), t


def test_never_idle_while_behind_its_end() -> None:
    idle = tracker()
    for t in range(1_000, 100_001, 1_000):
        idle.answered(TP, False, t)  # a backlog, read slower than it grows
        assert not idle.idle(TP, t)


def test_a_stalled_fetch_or_a_lost_broker_is_not_silence() -> None:
    idle = tracker()
    idle.answered(TP, True, 1_000)
    # no fetch has been answered since 1 s: whatever the partition holds is unknown
    assert not idle.idle(TP, 60_000)
    # answers come again: quiet still counts from the last record (here: the assignment)
    idle.answered(TP, True, 60_000)
    assert idle.idle(TP, 60_000)


def test_a_rebalance_starts_the_quiet_time_again() -> None:
    idle = tracker()
    idle.answered(TP, True, 40_000)
    assert idle.idle(TP, 40_000)
    idle.assigned({TP}, now_ms=40_000)
    idle.answered(TP, True, 41_000)
    assert not idle.idle(TP, 41_000)
    idle.answered(TP, True, 70_000)
    assert idle.idle(TP, 70_000)


def test_an_unassigned_partition_is_never_idle() -> None:
    idle = tracker()
    other = ("live.orders", 1)
    idle.answered(other, True, 50_000)
    assert not idle.idle(other, 50_000)

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.windows import ClockState, PartitionClock, window_start

GRACE = 5_000


def test_window_start_is_epoch_aligned() -> None:
    assert window_start(0, 60_000) == 0
    assert window_start(59_999, 60_000) == 0
    assert window_start(60_000, 60_000) == 60_000
    assert window_start(1_700_000_012_345, 60_000) == 1_699_999_980_000


@given(st.integers(0, 2**45), st.integers(1, 10**7))
def test_window_contains_its_event(ts: int, size: int) -> None:
    start = window_start(ts, size)
    assert start % size == 0
    assert start <= ts < start + size


def clock(idle: float = 1e9) -> PartitionClock:
    return PartitionClock.restore(None, GRACE, idle, now_s=0.0)


def test_lateness_is_judged_per_topic_partition_against_its_own_max() -> None:
    c = clock()
    assert c.observe(0, 100_000) is False
    assert c.observe(0, 95_000) is False  # exactly grace behind: on time
    assert c.observe(0, 94_999) is True  # more than grace behind: late
    # another topic has its own maximum: far behind topic 0 but first on topic 1
    assert c.observe(1, 10_000) is False
    assert c.max_ts == [100_000, 10_000, None]


def test_watermark_waits_for_every_topic_then_takes_the_minimum() -> None:
    c = clock()
    c.observe(0, 100_000)
    c.observe(1, 80_000)
    assert c.advance(now_s=1) is None
    c.observe(2, 90_000)
    assert c.advance(now_s=1) == 80_000 - GRACE
    c.observe(1, 200_000)
    assert c.advance(now_s=1) == 90_000 - GRACE


def test_watermark_never_goes_back() -> None:
    c = clock(idle=10)
    for src, ts in ((0, 100_000), (1, 100_000), (2, 100_000)):
        c.observe(src, ts)
        c.touch(src, 0)
    c.observe(0, 300_000)
    c.touch(0, 20)
    # topics 1 and 2 idle at t=20: topic 0 alone moves the watermark
    assert c.advance(now_s=20) == 300_000 - GRACE
    # topic 1 wakes up far behind: it holds back again, but cannot pull the watermark down
    c.observe(1, 150_000)
    c.touch(1, 21)
    assert c.advance(now_s=21) == 300_000 - GRACE


def test_idle_topic_stops_holding_the_watermark() -> None:
    c = clock(idle=30)
    c.observe(0, 100_000)
    c.observe(1, 100_000)
    c.touch(0, 1)
    c.touch(1, 1)
    # topic 2 never spoke: it holds the watermark until it has been idle 30 s
    assert c.advance(now_s=29) is None
    assert c.advance(now_s=30.5) == 100_000 - GRACE


def test_all_idle_uses_the_most_advanced_topic() -> None:
    c = clock(idle=30)
    c.observe(0, 100_000)
    c.observe(1, 120_000)
    assert c.advance(now_s=31) == 120_000 - GRACE


def test_restore_keeps_maxima_and_watermark() -> None:
    c = clock()
    for src in range(3):
        c.observe(src, 50_000 + src)
    c.advance(now_s=1)
    again = PartitionClock.restore(
        ClockState(*[c.state().max_ts, c.state().watermark]), GRACE, 1e9, 5
    )
    assert again.max_ts == [50_000, 50_001, 50_002]
    assert again.watermark == 50_000 - GRACE
    assert again.observe(0, 44_000) is True

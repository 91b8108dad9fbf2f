"""gmv_sparkline: the GMV of the 30 windows up to a room's last closed one, gaps as 0."""

from __future__ import annotations

from streams.core.contract import Ev, Kind
from streams.core.rooms import RoomConfig, RoomState, Tally
from streams.core.sparkline import gmv_sparkline

CONFIG = RoomConfig(size_ms=60_000, retention=60)


def _paid(offset: int, ts: int, cents: int) -> Ev:
    return Ev(2, offset, ts, "r", int(Kind.ORDER_PAID), "u", cents, "p", 0, offset + 1, 156)


def test_gmv_per_window_oldest_first_ending_at_the_last_closed_window() -> None:
    room = RoomState("r", 0)
    assert gmv_sparkline(room, 60_000) is None
    # paid orders in windows 0, 2 and 40 (minutes); window 41 stays open
    events = [_paid(0, 1_000, 500), _paid(1, 2_000, 250), _paid(2, 120_500, 990)]
    events += [_paid(3, 40 * 60_000 + 5, 7), _paid(4, 41 * 60_000 + 5, 1_000_000)]
    room.apply(events, CONFIG, None, Tally(), [])
    room.close_until(41 * 60_000, CONFIG)
    spark = gmv_sparkline(room, 60_000)
    assert spark is not None and spark["end"] == 41 * 60_000
    values = spark["gmv_cents"]
    # 30 windows: minutes 11..40; the orders of minutes 0 and 2 are older than that
    assert len(values) == 30 and values[-1] == 7 and sum(values) == 7
    short = gmv_sparkline(room, 60_000, n=41)
    assert short is not None and short["gmv_cents"][0] == 750 and short["gmv_cents"][2] == 990

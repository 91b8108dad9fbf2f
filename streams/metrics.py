"""Prometheus exposition: process counters, and per-room samples computed at scrape time.

Per-room values are read from the rooms table when Prometheus scrapes (a custom collector),
never pushed into thousands of gauges per event. A scrape shows, for instance::

    livepulse_room_window_conversion_ratio{room_id="r1",window="closed"} 0.1
    livepulse_room_window_enters{room_id="r1",window="open"} 42.0
    livepulse_events_late_total{reason="grace",topic="live.orders"} 1.0
    livepulse_partition_watermark_lag_seconds{partition="0"} 2.5

``window="closed"`` is the room's last closed window, ``window="open"`` its newest open one.
A ratio with a zero denominator has no sample at all (absent, not 0 or NaN).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.rooms import RoomState

# (key in RoomState.describe, metric suffix, scale, help)
WINDOW_SERIES: tuple[tuple[str, str, float, str], ...] = (
    ("impressions", "impressions", 1, "Room impressions in feeds."),
    ("enters", "enters", 1, "Room entries (views)."),
    ("unique_viewers", "unique_viewers", 1, "Distinct users among entries (HLL estimate)."),
    ("leaves", "leaves", 1, "Room exits."),
    ("watch_ms_total", "watch_seconds", 0.001, "Watch time reported by exits, seconds."),
    ("product_impressions", "product_impressions", 1, "Product cards shown."),
    ("product_clicks", "product_clicks", 1, "Product cards clicked."),
    ("orders_created", "orders_created", 1, "Orders created."),
    ("orders_paid", "orders_paid", 1, "Orders paid."),
    ("gmv_cents", "gmv", 0.01, "GMV of paid orders, currency units."),
    ("refunds", "refunds", 1, "Refunds."),
    ("refund_cents", "refund_amount", 0.01, "Refunded amount, currency units."),
    ("enter_rate", "enter_ratio", 1, "Enters / impressions."),
    ("ctr", "click_through_ratio", 1, "Product clicks / product impressions."),
    ("conversion_rate", "conversion_ratio", 1, "Paid orders / enters: the headline conversion."),
    ("click_to_order_rate", "click_to_order_ratio", 1, "Paid orders / product clicks."),
    ("gpm", "gmv_per_thousand_enters", 1, "GMV per thousand enters (GPM), currency units."),
    ("aov", "average_order_value", 1, "GMV / paid orders, currency units."),
    ("order_growth", "order_growth_ratio", 1, "Paid orders / previous window's - 1."),
    ("gmv_growth", "gmv_growth_ratio", 1, "GMV / previous window's GMV - 1."),
)


class PipelineMetrics:
    """Process-level counters, registered on the app's own registry (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "livepulse_events_consumed",
            "Records read from the source topics.",
            ["topic"],
            registry=registry,
        )
        self.invalid = Counter(
            "livepulse_events_invalid",
            "Records that broke the contract and went to the dead-letter topic.",
            ["topic", "reason"],
            registry=registry,
        )
        self.late = Counter(
            "livepulse_events_late",
            "Events not applied: beyond grace (reason=grace) or for a closed window (closed).",
            ["topic", "reason"],
            registry=registry,
        )
        self.applied = Counter(
            "livepulse_events_applied",
            "Events applied to a room window.",
            ["topic"],
            registry=registry,
        )
        self.duplicates = Counter(
            "livepulse_events_duplicate",
            "Records skipped because their room had already applied their offset (replays).",
            registry=registry,
        )
        self.windows_closed = Counter(
            "livepulse_windows_closed", "Room windows closed by the watermark.", registry=registry
        )


class RoomCollector(Collector):
    """Builds the per-room and per-partition families from live state at scrape time."""

    def __init__(
        self,
        rooms: Callable[[], Iterable[RoomState]],
        watermarks: Callable[[], Mapping[int, int | None]],
        standby_rooms: Callable[[], int],
        size_ms: int,
    ) -> None:
        self._rooms = rooms
        self._standby_rooms = standby_rooms
        self._watermarks = watermarks
        self._size_ms = size_ms

    def collect(self) -> Iterator:
        labels = ["room_id", "window"]
        families = {
            key: (GaugeMetricFamily(f"livepulse_room_window_{suffix}", doc, labels=labels), scale)
            for key, suffix, scale, doc in WINDOW_SERIES
        }
        start = GaugeMetricFamily(
            "livepulse_room_window_start_timestamp_seconds", "Start of the window.", labels=labels
        )
        late = CounterMetricFamily(
            "livepulse_room_late_events",
            "Late events of the room, not applied.",
            labels=["room_id"],
        )
        rooms = 0
        for state in self._rooms():
            rooms += 1
            late.add_metric([state.room_id], state.late_events)
            for label, window in (("closed", state.last_closed()), ("open", state.current_open())):
                if window is None:
                    continue
                values = state.describe(window, self._size_ms)
                lv = [state.room_id, label]
                start.add_metric(lv, window.start / 1000)
                for key, (family, scale) in families.items():
                    value = values[key]
                    if value is not None:
                        family.add_metric(lv, value * scale)
        yield from (family for family, _ in families.values())
        yield start
        yield late
        held = GaugeMetricFamily(
            "livepulse_rooms",
            "Rooms on this worker: served (active) or kept as a standby copy.",
            labels=["role"],
        )
        held.add_metric(["active"], rooms)
        held.add_metric(["standby"], self._standby_rooms())
        yield held

        now = time.time()
        lag = GaugeMetricFamily(
            "livepulse_partition_watermark_lag_seconds",
            "Wall clock minus the partition's watermark.",
            labels=["partition"],
        )
        mark = GaugeMetricFamily(
            "livepulse_partition_watermark_timestamp_seconds",
            "The partition's event-time watermark.",
            labels=["partition"],
        )
        for partition, watermark in sorted(self._watermarks().items()):
            if watermark is not None:
                lag.add_metric([str(partition)], now - watermark / 1000)
                mark.add_metric([str(partition)], watermark / 1000)
        yield lag
        yield mark

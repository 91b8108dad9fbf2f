"""Prometheus exposition: process counters, and per-room samples computed at scrape time.

Per-room values are read from the rooms table when Prometheus scrapes, never pushed into
thousands of gauges per event. A scrape shows, for instance::

    livepulse_room_enters_total{room_id="r1"} 1234
    livepulse_room_window_conversion_ratio{room_id="r1",window="closed"} 0.1
    livepulse_room_window_enters{room_id="r1",window="open"} 42
    livepulse_events_late_total{reason="grace",topic="live.orders"} 1.0
    livepulse_partition_watermark_lag_seconds{partition="0"} 2.5

``livepulse_room_*_total`` are running totals (counters) for PromQL rates and ratios of rates.
``window="closed"`` is the room's last closed window, ``window="open"`` its newest open one.
A ratio with a zero denominator has no sample at all (absent, not 0 or NaN).

The per-room families are written straight to text (:class:`RoomExposition`):
prometheus_client's generic path costs ~2.5 µs per sample, too slow at 50 samples a room for
10 000 rooms. Rooms beyond ``metrics_max_rooms`` (the top rooms by GMV are kept) are summed
into ``room_id="__other__"`` so a scrape stays bounded however many rooms are live.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.core.contract import OTHER
from streams.core.currencies import CODE_OF_NUMBER, EXPONENT_OF_NUMBER
from streams.core.funnel import (
    DERIVED_FIELDS,
    P_CLICKS,
    P_GMV,
    P_IMPRESSIONS,
    P_PAID,
    PEOPLE_DERIVED_FIELDS,
    PEOPLE_FIELDS,
    Counts,
    derive,
    derive_people,
)
from streams.core.processor import Outcome
from streams.core.rooms import DUPLICATE_REASONS, RoomState, Tally, Window

#: The label value of the aggregate of rooms beyond the export cap.
OTHER_ROOMS = OTHER
#: Series in money carry the room's currency as a label (``currency="CNY"``): a sum of GMV
#: across rooms is a sum per currency.
MONEY = frozenset({"gmv_cents", "refund_cents", "gpm", "aov", "uv_value", "aov_per_buyer"})
#: ... of which these are counted in minor units (the rest are derived, in major units).
MINOR_UNITS = frozenset({"gmv_cents", "refund_cents"})

# (field of Counts, metric suffix, scale, help): running totals, one counter per room.
TOTAL_SERIES: tuple[tuple[str, str, float, str], ...] = (
    ("impressions", "impressions", 1, "Room impressions in feeds."),
    ("enters", "enters", 1, "Room entries (views)."),
    ("leaves", "leaves", 1, "Room exits."),
    ("watch_ms_total", "watch_seconds", 0.001, "Watch time reported by exits, seconds."),
    ("product_impressions", "product_impressions", 1, "Product cards shown."),
    ("product_clicks", "product_clicks", 1, "Product cards clicked."),
    ("orders_created", "orders_created", 1, "Orders created."),
    ("orders_paid", "orders_paid", 1, "Orders paid."),
    ("gmv_cents", "gmv", 0.01, "GMV of paid orders, currency units."),
    ("refunds", "refunds", 1, "Refunds."),
    ("refund_cents", "refund_amount", 0.01, "Refunded amount, currency units."),
)

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
    ("impression_users", "impression_users", 1, "Distinct users shown the room (HLL)."),
    ("viewers", "viewers", 1, "Distinct users who entered (HLL; unique_viewers' new name)."),
    (
        "product_impression_users",
        "product_impression_users",
        1,
        "Distinct users shown a product card (HLL).",
    ),
    ("clicker_users", "clickers", 1, "Distinct users who clicked a product card (HLL)."),
    ("buyers", "buyers", 1, "Distinct users who paid an order (HLL)."),
    ("enter_rate_users", "enter_users_ratio", 1, "Viewers / impression users."),
    (
        "ctr_users",
        "click_through_users_ratio",
        1,
        "Clickers / product impression users.",
    ),
    ("click_to_buy_users", "click_to_buy_users_ratio", 1, "Buyers / clickers."),
    ("conversion_rate_users", "conversion_users_ratio", 1, "Buyers / viewers."),
    ("payment_success_rate", "payment_success_ratio", 1, "Paid orders / orders created."),
    ("refund_rate", "refund_ratio", 1, "Refunds / paid orders."),
    ("unpaid_orders", "unpaid_orders", 1, "Orders created - orders paid."),
    ("uv_value", "uv_value", 1, "GMV / viewers (UV value), currency units."),
    (
        "aov_per_buyer",
        "average_order_value_per_buyer",
        1,
        "GMV / buyers, currency units.",
    ),
    (
        "watch_seconds_per_viewer",
        "watch_seconds_per_viewer",
        1,
        "Watch time / viewers, seconds.",
    ),
    ("avg_watch_seconds", "average_watch_seconds", 1, "Watch time / exits, seconds."),
    (
        "online_viewers",
        "online_viewers",
        1,
        "Enters - leaves so far (closed: at the window's end; open: now); a viewer without "
        "a leave stays counted.",
    ),
    (
        "online_viewers_peak",
        "online_viewers_peak",
        1,
        "Highest online viewers at the end of a second with events in the window.",
    ),
)

# (value of RoomState.session_extremes, metric suffix, help): per room, label room_id.
SESSION_SERIES: tuple[tuple[int, str, str], ...] = (
    (0, "viewers", "Distinct users who entered since the room's state began (HLL)."),
    (1, "buyers", "Distinct users who paid since the room's state began (HLL)."),
    (3, "online_viewers_peak", "Highest online viewers since the room's state began."),
)

# (column of a window's product row, metric suffix, money, help): the top products of each
# exported room's last closed window, labels room_id and product_id.
PRODUCT_SERIES: tuple[tuple[int, str, bool, str], ...] = (
    (P_IMPRESSIONS, "impressions", False, "Product card impressions of the product."),
    (P_CLICKS, "clicks", False, "Product card clicks of the product."),
    (P_PAID, "orders_paid", False, "Paid orders of the product."),
    (P_GMV, "gmv", True, "GMV of the product's paid orders, currency units."),
)


class PipelineMetrics:
    """Process-level counters, registered on the app's own registry (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # ``*_created`` samples would double the series for a value nobody graphs.
        disable_created_metrics()
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
            "Events counted once, not again: reason=offset (a replayed record), event_id (an "
            "event id the room window already applied), order_id (a repeated payment or refund).",
            ["topic", "reason"],
            registry=registry,
        )
        self.untracked_ids = Counter(
            "livepulse_dedup_untracked",
            "Events applied without remembering their id (the per-window dedup cap was full).",
            registry=registry,
        )
        self.envelopes_skipped = Counter(
            "livepulse_envelopes_skipped",
            "Records of the internal topic not applied here: malformed (not an envelope), "
            "failed (a LivePulse bug; logged), revoked (handed over after a rebalance took "
            "the partition away; its new owner applies it), gone (missing before a later one "
            "and no longer in the topic), unfenced (its partition's changelog could not be "
            "fenced: not served until the next rebalance).",
            ["reason"],
            registry=registry,
        )
        for reason in ("malformed", "failed", "revoked", "gone", "unfenced"):
            self.envelopes_skipped.labels(reason)
        self.envelopes_read_back = Counter(
            "livepulse_envelopes_read_back",
            "Envelopes the agent's consumer skipped, read straight from the topic and applied "
            "before the later one that revealed the gap.",
            registry=registry,
        )
        self.flush_failures = Counter(
            "livepulse_changelog_flush_failures",
            "Group commits that the broker did not acknowledge; retried, nothing acked.",
            registry=registry,
        )
        self.flush_seconds = Histogram(
            "livepulse_changelog_flush_seconds",
            "Group commits the broker acknowledged: from taking the records to the last ack.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.changelog_written = Counter(
            "livepulse_changelog_records_written",
            "Room records of the changelog the broker acknowledged (markers not counted).",
            registry=registry,
        )
        self.flushing = Gauge(
            "livepulse_changelog_flush_in_progress",
            "1 while a group commit waits for the broker's acknowledgements.",
            registry=registry,
        )
        # what every room of the worker applied, by funnel step: exact sums over all rooms
        # however the exported set changes (the job: recording rules use these)
        self.funnel = [
            (
                field,
                scale,
                Counter(
                    f"livepulse_funnel_{suffix}",
                    f"All rooms of the worker: {doc[0].lower()}{doc[1:]}",
                    ["currency"] if field in MONEY else [],
                    registry=registry,
                ),
            )
            for field, suffix, scale, doc in TOTAL_SERIES
        ]
        self.ingest_retries = Counter(
            "livepulse_ingest_retries",
            "Ingest steps that failed (broker unreachable) and were read again.",
            registry=registry,
        )
        self.windows_closed = Counter(
            "livepulse_windows_closed", "Room windows closed by the watermark.", registry=registry
        )
        self.alerts = Counter(
            "livepulse_alerts",
            "Alert events the in-stream detector wrote to the alerts topic.",
            ["kind", "state"],
            registry=registry,
        )

    def start(self, topics: Sequence[str]) -> None:
        """Give every (topic, reason) its 0 sample: a series that exists before it moves."""
        for topic in topics:
            for reason in DUPLICATE_REASONS:
                self.duplicates.labels(topic, reason)

    def read(self, topic: str, records: int, invalid: Mapping[str, int]) -> None:
        """Count what the ingest stage read of ``topic`` in one step, and dead-lettered by
        reason."""
        self.consumed.labels(topic).inc(records)
        for reason, n in invalid.items():
            self.invalid.labels(topic, reason).inc(n)

    def retried(self, steps: int = 1) -> None:
        """Ingest steps that failed and are read again."""
        self.ingest_retries.inc(steps)

    def record(self, out: Outcome, topics: Sequence[str]) -> None:
        """Count what one batch did (``topics`` in the order of the source indexes): the one
        place the stateful stage's outcome becomes counters."""
        for alert in out.alerts:
            self.alerts.labels(alert.kind, alert.state).inc()
        for ev, _ in out.rejected:
            self.invalid.labels(topics[ev.src], "currency").inc()
        tally = out.tally
        for src, topic in enumerate(topics):
            if tally.applied[src]:
                self.applied.labels(topic).inc(tally.applied[src])
            if tally.late_grace[src]:
                self.late.labels(topic, "grace").inc(tally.late_grace[src])
            if tally.late_closed[src]:
                self.late.labels(topic, "closed").inc(tally.late_closed[src])
        for reason, counts in tally.duplicates.items():
            for src, topic in enumerate(topics):
                if counts[src]:
                    self.duplicates.labels(topic, reason).inc(counts[src])
        if tally.untracked_ids:
            self.untracked_ids.inc(tally.untracked_ids)
        counts = tally.counts
        for field, scale, counter in self.funnel:
            if field in MONEY:
                for number, money in tally.money.items():
                    value = getattr(money, field)
                    code = CODE_OF_NUMBER.get(number)
                    if value and code is not None:
                        counter.labels(code).inc(value / 10 ** EXPONENT_OF_NUMBER[number])
            else:
                value = getattr(counts, field)
                if value:
                    counter.inc(value * scale if scale != 1 else value)
        if tally.windows_closed:
            self.windows_closed.inc(tally.windows_closed)


class PipelineCollector(Collector):
    """Room counts, partition watermarks and consumer lag, read at scrape time."""

    def __init__(
        self,
        active_rooms: Callable[[], int],
        standby_rooms: Callable[[], int],
        watermarks: Callable[[], Mapping[int, int | None]],
        consumer_lag: Callable[[], Mapping[tuple[str, int], int]],
        broker_up: Callable[[], bool] = lambda: True,
        restored: Callable[[], int] = lambda: 0,
        recovery: Callable[[], tuple[bool, int]] = lambda: (False, 0),
        unacked: Callable[[], int] = lambda: 0,
        unflushed: Callable[[], int] = lambda: 0,
        fenced: Callable[[], int] = lambda: 0,
    ) -> None:
        self._active_rooms = active_rooms
        self._standby_rooms = standby_rooms
        self._watermarks = watermarks
        self._consumer_lag = consumer_lag
        self._broker_up = broker_up
        self._restored = restored
        self._recovery = recovery
        self._unacked = unacked
        self._unflushed = unflushed
        self._fenced = fenced

    def collect(self) -> Iterator:
        up = GaugeMetricFamily(
            "livepulse_broker_up",
            "1 while the broker answers this worker's fetches, 0 while it has not for a while.",
        )
        up.add_metric([], 1 if self._broker_up() else 0)
        yield up

        restored = CounterMetricFamily(
            "livepulse_changelog_records_restored",
            "Changelog records this worker read back into its store: recovery and standby.",
        )
        restored.add_metric([], self._restored())
        yield restored
        fenced = CounterMetricFamily(
            "livepulse_changelog_records_fenced",
            "Of them, records ignored: written by a worker that had lost the partition, after "
            "its new owner's fence.",
        )
        fenced.add_metric([], self._fenced())
        yield fenced

        in_recovery, remaining = self._recovery()
        recovering = GaugeMetricFamily(
            "livepulse_recovery_in_progress",
            "1 while the worker reads its partitions' changelog back before serving them.",
        )
        recovering.add_metric([], 1 if in_recovery else 0)
        yield recovering
        left = GaugeMetricFamily(
            "livepulse_recovery_remaining_records",
            "Changelog records still to read before the owned partitions are recovered.",
        )
        left.add_metric([], remaining)
        yield left

        unacked = GaugeMetricFamily(
            "livepulse_envelopes_unacked",
            "Envelopes applied in memory and not yet acked: their changes are not yet durable.",
        )
        unacked.add_metric([], self._unacked())
        yield unacked
        unflushed = GaugeMetricFamily(
            "livepulse_rooms_unflushed",
            "Rooms changed in memory whose change the changelog does not yet hold.",
        )
        unflushed.add_metric([], self._unflushed())
        yield unflushed

        held = GaugeMetricFamily(
            "livepulse_rooms",
            "Rooms on this worker: served (active) or kept as a standby copy.",
            labels=["role"],
        )
        held.add_metric(["active"], self._active_rooms())
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

        behind = GaugeMetricFamily(
            "livepulse_consumer_lag_records",
            "Records of a source topic-partition not yet read by this worker's ingest stage.",
            labels=["topic", "partition"],
        )
        for (topic, partition), records in sorted(self._consumer_lag().items()):
            behind.add_metric([topic, str(partition)], records)
        yield behind


class RoomExposition:
    """The per-room families in the Prometheus text format, built from live room states.

    Rooms are added one at a time (so a scrape can yield to the event loop between chunks)
    and each family's samples stay grouped, as the format requires. Rows are sorted by room.

    Beyond ``max_rooms`` rooms, the top rooms by GMV keep their own series and the others are
    flagged ``in_others``: from then on their events count into the processors' ``others``
    tally, which ``room_id="__other__"`` shows. That is a sum of what the rooms applied while
    flagged, so it never decreases when rooms move in or out of the top set, leave the worker
    or expire (which Prometheus would read as a counter reset).
    """

    def __init__(self, size_ms: int, max_rooms: int, products: int = 5) -> None:
        self.size_ms = size_ms
        self.max_rooms = max_rooms
        #: products of each exported room with series of their own (LIVEPULSE_METRICS_PRODUCTS)
        self.products = products
        #: True when the last scrape exported fewer rooms than there were (new rooms then
        #: start in the others, see PartitionProcessor.over_cap)
        self.over_cap = False

    def select(self, states: list[RoomState]) -> list[RoomState]:
        """The rooms exported one by one (the top ``max_rooms`` by GMV), sorted; flags the
        rest ``in_others``."""
        self.over_cap = len(states) > self.max_rooms
        if not self.over_cap:
            for state in states:
                state.in_others = False
            return sorted(states, key=_room_id)
        gmv = {id(s): s.totals().gmv_cents for s in states}
        top = heapq.nlargest(self.max_rooms, states, key=lambda s: (gmv[id(s)], s.room_id))
        kept = {id(s) for s in top}
        for state in states:
            state.in_others = id(state) not in kept
        return sorted(top, key=_room_id)

    def render(self, states: Iterable[RoomState], others: Tally | None = None) -> str:
        """The whole exposition at once (tests, tools); the worker uses :meth:`render_async`.
        ``others``: what the rooms flagged ``in_others`` applied (the processors' sum)."""
        rooms = self.select(list(states))
        text = _Text(self.size_ms, self.products)
        for state in rooms:
            text.add(state)
        text.add_others(others)
        return text.finish(len(rooms))

    async def render_async(
        self, states: Iterable[RoomState], others: Tally | None = None, chunk: int = 500
    ) -> str:
        """Like :meth:`render`, yielding to the event loop every ``chunk`` rooms."""
        rooms = self.select(list(states))
        text = _Text(self.size_ms, self.products)
        for i, state in enumerate(rooms, 1):
            text.add(state)
            if i % chunk == 0:
                await asyncio.sleep(0)
        text.add_others(others)
        return text.finish(len(rooms))


def _room_id(state: RoomState) -> str:
    return state.room_id


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


_TOTAL_NAMES = [f"livepulse_room_{suffix}_total" for _, suffix, _, _ in TOTAL_SERIES]
_WINDOW_NAMES = [f"livepulse_room_window_{suffix}" for _, suffix, _, _ in WINDOW_SERIES]
_SESSION_NAMES = [f"livepulse_room_session_{suffix}" for _, suffix, _ in SESSION_SERIES]
_PRODUCT_NAMES = [f"livepulse_product_window_{suffix}" for _, suffix, _, _ in PRODUCT_SERIES]
# A window's values in one list: Counts' fields in order, unique viewers, derived ones, the
# people, what is derived from them, online viewers and their peak.
_WINDOW_VALUE_KEYS = [
    *Counts.__struct_fields__,
    "unique_viewers",
    *DERIVED_FIELDS,
    *PEOPLE_FIELDS,
    *PEOPLE_DERIVED_FIELDS,
    "online_viewers",
    "online_viewers_peak",
]


class _Text:
    """Per-family line buffers for one scrape.

    Values are formatted by f-strings (``repr`` for floats, as Prometheus parses them); money
    is divided, not multiplied, by 10^exponent of the room's currency (12345 CNY cents print
    as 123.45, 12345 JPY as 12345), and carries the currency as a label; a room without an
    order yet has no money samples.
    """

    def __init__(self, size_ms: int, products: int = 5) -> None:
        self.size_ms = size_ms
        self.products = products
        self.session: list[list[str]] = [[] for _ in SESSION_SERIES]
        self.product_lines: list[list[str]] = [[] for _ in PRODUCT_SERIES]
        self.totals: list[list[str]] = [[] for _ in TOTAL_SERIES]
        self.late: list[str] = []
        self.windows: list[list[str]] = [[] for _ in WINDOW_SERIES]
        self.starts: list[str] = []
        self.alerts: list[str] = []
        # (lines, name, index of the value, divisor (0: money), ...)
        self._total_plan = [
            (
                lines,
                name,
                Counts.__struct_fields__.index(key),
                0 if key in MONEY else round(1 / scale),
            )
            for lines, name, (key, _, scale, _) in zip(
                self.totals, _TOTAL_NAMES, TOTAL_SERIES, strict=True
            )
        ]
        self._window_plan = [
            (lines, name, _WINDOW_VALUE_KEYS.index(key), 0 if key in MONEY else round(1 / scale))
            for lines, name, (key, _, scale, _) in zip(
                self.windows, _WINDOW_NAMES, WINDOW_SERIES, strict=True
            )
        ]

    def add(self, state: RoomState) -> None:
        room = _escape(state.room_id)
        code = state.currency_code
        self._add_totals(room, code, state.exponent, state.totals(), state.late_events)
        if state.detector is not None:
            for kind in state.detector.firing():
                self.alerts.append(
                    f'livepulse_room_alert_active{{kind="{kind}",room_id="{room}"}} 1'
                )
        last = state.last_closed()
        for label, window in (("closed", last), ("open", state.current_open())):
            if window is not None:
                self._add_window(room, label, code, state, window)
        extremes = state.session_extremes()
        labels = f'{{room_id="{room}"}} '
        for lines, name, (index, _, _) in zip(
            self.session, _SESSION_NAMES, SESSION_SERIES, strict=True
        ):
            if extremes[index] is not None:
                lines.append(f"{name}{labels}{extremes[index]}")
        if last is not None and self.products:
            self._add_products(room, code, state.exponent, last)

    def _add_products(self, room: str, code: str | None, exponent: int, w: Window) -> None:
        """The window's top products by GMV, then clicks, then id (``__other__`` is none)."""
        rows = w.product_rows()
        if not rows:
            return
        top = heapq.nsmallest(
            self.products,
            ((p, r) for p, r in rows.items() if p != OTHER),
            key=lambda item: (-item[1][P_GMV], -item[1][P_CLICKS], item[0]),
        )
        for product, row in top:
            plain = f'{{product_id="{_escape(product)}",room_id="{room}"}} '
            money = f'{{currency="{code}",product_id="{_escape(product)}",room_id="{room}"}} '
            for lines, name, (column, _, is_money, _) in zip(
                self.product_lines, _PRODUCT_NAMES, PRODUCT_SERIES, strict=True
            ):
                if not is_money:
                    lines.append(f"{name}{plain}{row[column]}")
                elif code is not None:
                    lines.append(f"{name}{money}{row[column] / 10**exponent}")

    def add_others(self, others: Tally | None) -> None:
        """The ``__other__`` aggregate: counters only, the money ones per currency."""
        if others is None or (others.counts == Counts() and not others.money and not others.late):
            return
        self._add_totals(OTHER_ROOMS, None, 2, others.counts, others.late)
        for number, money in sorted(others.money.items()):
            code = CODE_OF_NUMBER.get(number)
            if code is not None:
                self._add_money(OTHER_ROOMS, code, EXPONENT_OF_NUMBER[number], money)

    def _add_totals(
        self, room: str, code: str | None, exponent: int, counts: Counts, late: int
    ) -> None:
        values = msgspec.structs.astuple(counts)
        labels = f'{{room_id="{room}"}} '
        for lines, name, index, divisor in self._total_plan:
            if divisor:
                value = values[index]
                lines.append(f"{name}{labels}{value if divisor == 1 else value / divisor}")
        if code is not None:
            self._add_money(room, code, exponent, counts)
        self.late.append(f"livepulse_room_late_events_total{labels}{late}")

    def _add_money(self, room: str, code: str, exponent: int, counts: Counts) -> None:
        values = msgspec.structs.astuple(counts)
        labels = f'{{currency="{code}",room_id="{room}"}} '
        for lines, name, index, divisor in self._total_plan:
            if not divisor:
                lines.append(f"{name}{labels}{values[index] / 10**exponent}")

    def _add_window(
        self, room: str, label: str, code: str | None, state: RoomState, w: Window
    ) -> None:
        prev_orders, prev_gmv = state.previous(w, self.size_ms)
        exponent = state.exponent
        derived = derive(w.counts, prev_orders, prev_gmv, exponent)
        people = w.people_now()
        named = dict(zip(PEOPLE_FIELDS, people, strict=True))
        per_person = derive_people(w.counts, named, exponent)
        online_end, online_peak, _ = state.online_values(w)
        values = [
            *msgspec.structs.astuple(w.counts),
            people[1],
            *(derived[key] for key in DERIVED_FIELDS),
            *people,
            *(per_person[key] for key in PEOPLE_DERIVED_FIELDS),
            online_end,
            online_peak,
        ]
        plain = f'{{room_id="{room}",window="{label}"}} '
        money = f'{{currency="{code}",room_id="{room}",window="{label}"}} '
        for lines, name, index, divisor in self._window_plan:
            value = values[index]
            if value is None:
                continue
            if divisor == 1:
                lines.append(f"{name}{plain}{value}")
            elif divisor:
                lines.append(f"{name}{plain}{value / divisor}")
            elif code is not None:
                minor = _WINDOW_VALUE_KEYS[index] in MINOR_UNITS
                lines.append(f"{name}{money}{value / 10**exponent if minor else value}")
        self.starts.append(f"livepulse_room_window_start_timestamp_seconds{plain}{w.start / 1000}")

    def finish(self, exported: int) -> str:
        out: list[str] = []
        for lines, name, (_, _, _, doc) in zip(
            self.totals, _TOTAL_NAMES, TOTAL_SERIES, strict=True
        ):
            _family(out, name, "counter", doc, lines)
        _family(
            out,
            "livepulse_room_late_events_total",
            "counter",
            "Late events of the room, not applied.",
            self.late,
        )
        for lines, name, (_, _, _, doc) in zip(
            self.windows, _WINDOW_NAMES, WINDOW_SERIES, strict=True
        ):
            _family(out, name, "gauge", doc, lines)
        _family(
            out,
            "livepulse_room_window_start_timestamp_seconds",
            "gauge",
            "Start of the window.",
            self.starts,
        )
        for lines, name, (_, _, doc) in zip(
            self.session, _SESSION_NAMES, SESSION_SERIES, strict=True
        ):
            _family(out, name, "gauge", doc, lines)
        for lines, name, (_, _, _, doc) in zip(
            self.product_lines, _PRODUCT_NAMES, PRODUCT_SERIES, strict=True
        ):
            _family(out, name, "gauge", doc, lines)
        _family(
            out,
            "livepulse_room_alert_active",
            "gauge",
            "1 while the in-stream detector's alert of this kind fires for the room.",
            self.alerts,
        )
        _family(
            out,
            "livepulse_rooms_exported",
            "gauge",
            f"Rooms with their own series; the rest are summed into room_id={OTHER_ROOMS!r}.",
            [f"livepulse_rooms_exported {exported}"],
        )
        return "\n".join(out) + "\n"


def _family(out: list[str], name: str, kind: str, doc: str, lines: list[str]) -> None:
    out.append(f"# HELP {name} {doc}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(lines)

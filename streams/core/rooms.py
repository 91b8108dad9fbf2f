"""One room's state: its open and recent closed windows, and what keeps its numbers exact.

Exact without transactions: a room remembers the last source offset it applied per topic
(``applied``), so records replayed after a crash are skipped, not counted twice. Exact under
hostile input: an event counts once per room window by its ``event_id``, a ``paid`` or
``refunded`` event once per ``order_id`` within the retained windows, and a room keeps the
currency of its first order (an order in another currency is handed back as a dead letter).

In the changelog a room is several records, each bounded whatever the traffic (see
:mod:`streams.core.changelog`):
the room record (offsets, totals, detector, which windows exist), one
record per window (written on change while open, once when closed), and the fingerprints of
applied events and orders in chunks of at most :data:`CHUNK_IDS`, each written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
from datasketches import hll_sketch, tgt_hll_type

from streams.core.changelog import chunk_key, window_key
from streams.core.contract import OTHER, Ev, Kind
from streams.core.currencies import CODE_OF_NUMBER, EXPONENT_OF_NUMBER
from streams.core.detector import DetectorState
from streams.core.funnel import COUNT_FIELDS, Counts, add_counts, derive
from streams.core.windows import SOURCES

#: HLL with 2^14 buckets: relative standard error 0.8 %, so "within 2 %" holds at 2.5 sigma.
#: Below a few thousand distinct viewers the sketch is in its exact list/set mode.
HLL_LG_K = 14
#: Fingerprints per chunk record (~74 KB of msgpack).
CHUNK_IDS = 8_192
#: Why an event counts once: its offset was applied (a replay), its event id was applied in
#: the window, its order was paid (or refunded) already.
DUPLICATE_REASONS = ("offset", "event_id", "order_id")
#: Salt that keeps a refund's order fingerprint apart from the payment's.
_REFUND_SALT = 0x9E37_79B9_7F4A_7C15
# product columns: clicks, orders created
_CLICKS, _CREATED = 0, 1
# kinds as plain ints (IntEnum comparisons cost more on the hot path)
_IMPRESSION_KIND, _ENTER_KIND, _LEAVE_KIND = int(Kind.IMPRESSION), int(Kind.ENTER), int(Kind.LEAVE)
_CARD_KIND, _CLICK_KIND = int(Kind.PRODUCT_IMPRESSION), int(Kind.PRODUCT_CLICK)
_CREATED_KIND, _PAID_KIND = int(Kind.ORDER_CREATED), int(Kind.ORDER_PAID)


@dataclass(frozen=True)
class RoomConfig:
    """The per-room rules that settings decide."""

    size_ms: int = 60_000
    retention: int = 60
    #: Products a closed window keeps by name (the rest are summed as ``__other__``); an
    #: open window names up to four times as many before it sums new ones as ``__other__``.
    products_per_window: int = 50
    #: Event ids remembered per open window (beyond, events still count but are not
    #: deduplicated by id), and order ids per window: what bounds the dedup memory.
    max_ids_per_window: int = 200_000

    @property
    def products_open_cap(self) -> int:
        return 4 * self.products_per_window


@dataclass
class Tally:
    """What one batch did, for the process metrics."""

    applied: list[int] = field(default_factory=lambda: [0] * SOURCES)
    late_grace: list[int] = field(default_factory=lambda: [0] * SOURCES)
    late_closed: list[int] = field(default_factory=lambda: [0] * SOURCES)
    #: skipped, per source: replayed offsets, repeated event ids, repeated payments or refunds
    duplicates: dict[str, list[int]] = field(
        default_factory=lambda: {reason: [0] * SOURCES for reason in DUPLICATE_REASONS}
    )
    #: applied events whose id could not be remembered (the per-window cap was reached)
    untracked_ids: int = 0
    windows_closed: int = 0
    #: the applied events' counts (money in ``money``, per ISO 4217 numeric code)
    counts: Counts = field(default_factory=Counts)
    money: dict[int, Counts] = field(default_factory=dict)
    late: int = 0

    def merge(self, other: Tally) -> None:
        """Add ``other`` (a tally of the same batch) to this one."""
        for mine, theirs in (
            (self.applied, other.applied),
            (self.late_grace, other.late_grace),
            (self.late_closed, other.late_closed),
            *((self.duplicates[r], other.duplicates[r]) for r in DUPLICATE_REASONS),
        ):
            for i, n in enumerate(theirs):
                mine[i] += n
        self.untracked_ids += other.untracked_ids
        self.windows_closed += other.windows_closed
        self.late += other.late
        add_counts(self.counts, other.counts)
        for code, money in other.money.items():
            add_counts(self.money.setdefault(code, Counts()), money)


class WindowRecord(msgspec.Struct, array_like=True):
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


class RoomRecord(msgspec.Struct, array_like=True):
    """The room's own record: everything but the windows' contents."""

    partition: int
    applied: list[int]
    late_events: int
    last_ts: int
    windows: list[list[int]]  # [start, version] of the room's windows, closed and open
    closed_totals: Counts | None = None
    detector: DetectorState | None = None
    currency: int = 0  # ISO 4217 numeric code of the room's first order; 0 before it


_encode = msgspec.msgpack.Encoder().encode
_decode_room = msgspec.msgpack.Decoder(RoomRecord).decode
_decode_window = msgspec.msgpack.Decoder(WindowRecord).decode
_decode_chunk = msgspec.msgpack.Decoder(list[int]).decode


def _new_sketch() -> hll_sketch:
    return hll_sketch(HLL_LG_K, tgt_hll_type.HLL_4)


class Window:
    __slots__ = (
        "closed",
        "counts",
        "id_chunks",
        "ids",
        "ids_new",
        "order_chunks",
        "orders",
        "orders_new",
        "prev_gmv_cents",
        "prev_orders_paid",
        "products",
        "sketch",
        "start",
        "unique_viewers",
        "version",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.version = -1  # of its last record written (-1: none yet)
        self.counts = Counts()
        self.closed = False
        self.sketch: hll_sketch | None = _new_sketch()
        self.unique_viewers = 0
        self.prev_orders_paid: int | None = None
        self.prev_gmv_cents: int | None = None
        # product id -> [clicks, orders created]; None until the window's first click or
        # order, and in memory only until a newer window has closed (the detector has judged
        # it by then; the window's record keeps them)
        self.products: dict[str, list[int]] | None = None
        # fingerprints of the events applied (while open), and those not yet in a chunk
        self.ids: set[int] | None = set()
        self.ids_new: list[int] | None = []
        self.id_chunks = 0
        # fingerprints of the payments and refunds applied, and those not yet in a chunk
        self.orders: list[int] = []
        self.orders_new: list[int] = []
        self.order_chunks = 0

    def viewers(self) -> int:
        if self.sketch is None:
            return self.unique_viewers
        return round(self.sketch.get_estimate())

    def record(self) -> WindowRecord:
        sketch = None if self.sketch is None else self.sketch.serialize_compact()
        return WindowRecord(
            self.start,
            self.closed,
            self.counts,
            self.unique_viewers,
            sketch,
            self.prev_orders_paid,
            self.prev_gmv_cents,
            self.products,
            self.id_chunks,
            self.order_chunks,
        )

    @classmethod
    def from_record(cls, rec: WindowRecord) -> Window:
        w = cls.__new__(cls)
        w.start, w.closed, w.counts, w.unique_viewers = (
            rec.start,
            rec.closed,
            rec.counts,
            rec.unique_viewers,
        )
        w.sketch = None if rec.sketch is None else hll_sketch.deserialize(rec.sketch)
        w.prev_orders_paid, w.prev_gmv_cents = rec.prev_orders_paid, rec.prev_gmv_cents
        w.products = rec.products
        w.ids = None if rec.closed else set()
        w.ids_new = None if rec.closed else []
        w.id_chunks, w.order_chunks = rec.id_chunks, rec.order_chunks
        w.orders, w.orders_new = [], []
        w.version = -1
        return w


class RoomState:
    __slots__ = (
        "_dirty_meta",
        "_dirty_windows",
        "_graves",
        "applied",
        "closed",
        "closed_totals",
        "currency",
        "detector",
        "in_others",
        "last_ts",
        "late_events",
        "open",
        "orders",
        "partition",
        "room_id",
    )

    def __init__(self, room_id: str, partition: int) -> None:
        self.room_id = room_id
        self.partition = partition
        self.applied = [-1] * SOURCES  # last source offset applied, per source topic
        self.late_events = 0
        self.last_ts = -1  # newest event time of the room, late events included
        self.currency = 0  # ISO 4217 numeric code, set by the first order
        self.open: dict[int, Window] = {}  # by start; usually one or two
        self.closed: list[Window] = []  # oldest first, at most ``retention``
        # Every window ever closed, summed: with the open windows, the room's running totals
        # (Prometheus counters), which outlive the ``retention`` closed windows kept above.
        # None until the first close: at 100 000 young rooms that is 12 MB.
        self.closed_totals: Counts | None = None
        # The in-stream detector's state (CUSUMs, firing alerts); None until the first close.
        self.detector: DetectorState | None = None
        # order fingerprint (payment or refund) -> start of the window it was last applied in
        self.orders: dict[int, int] = {}
        # counted into the worker's room_id="__other__" series, not its own (streams.worker.metrics)
        self.in_others = False
        # what the next changelog write must carry (see changes())
        self._dirty_meta = True
        self._dirty_windows: set[int] = set()
        self._graves: list[str] = []

    # -- updates -------------------------------------------------------------------------
    def apply(
        self,
        events: list[tuple[Ev, bool]],
        config: RoomConfig,
        watermark: int | None,
        tally: Tally,
        rejected: list[tuple[Ev, str]],
    ) -> list[int]:
        """Apply one batch of this room's events (log order, with their lateness flags).

        Returns the ends of windows this batch opened, so the caller can schedule closing.
        Orders in another currency than the room's go to ``rejected`` (dead letters).
        """
        size_ms = config.size_ms
        horizon = config.retention * size_ms
        max_ids = config.max_ids_per_window
        cap = config.products_open_cap
        opened: list[int] = []
        windows = self.open
        applied = self.applied
        touched = self._dirty_windows
        duplicates = tally.duplicates
        counted = tally.applied
        t = tally.counts
        w: Window | None = None
        for ev, late in events:
            src = ev.src
            if ev.offset <= applied[src]:
                duplicates["offset"][src] += 1
                continue
            applied[src] = ev.offset
            ts = ev.ts
            if ts > self.last_ts:
                self.last_ts = ts
            if late:
                self.late_events += 1
                tally.late_grace[src] += 1
                tally.late += 1
                continue
            start = ts - ts % size_ms
            if w is None or w.start != start:
                w = windows.get(start)
                if w is None and watermark is not None and start + size_ms <= watermark:
                    self.late_events += 1
                    tally.late_closed[src] += 1
                    tally.late += 1
                    continue
                touched.add(start)
            kind = ev.kind
            fp = 0
            if kind >= _CREATED_KIND:
                if not self.currency:
                    self.currency = ev.currency
                elif ev.currency != self.currency:
                    rejected.append((ev, self._currency_reason(ev)))
                    continue
                if kind >= _PAID_KIND and ev.oid:
                    fp = ev.oid if kind == _PAID_KIND else ev.oid ^ _REFUND_SALT
            eid = ev.eid
            if eid and w is not None and eid in w.ids:  # type: ignore[operator]
                duplicates["event_id"][src] += 1
                continue
            if fp:
                before = self.orders.get(fp)
                if before is not None and before >= start - horizon:
                    duplicates["order_id"][src] += 1
                    continue
            if w is None:
                w = windows[start] = Window(start)
                opened.append(start + size_ms)
            if eid:
                ids = w.ids
                if len(ids) < max_ids:  # type: ignore[arg-type]
                    ids.add(eid)  # type: ignore[union-attr]
                    w.ids_new.append(eid)  # type: ignore[union-attr]
                else:
                    tally.untracked_ids += 1
            if fp and len(w.orders) < max_ids:
                self.orders[fp] = start if before is None else max(before, start)
                w.orders.append(fp)
                w.orders_new.append(fp)
            counted[src] += 1
            c = w.counts
            if kind == _ENTER_KIND:
                c.enters += 1
                t.enters += 1
                w.sketch.update(ev.user)  # type: ignore[union-attr]
            elif kind == _IMPRESSION_KIND:
                c.impressions += 1
                t.impressions += 1
            elif kind == _CARD_KIND:
                c.product_impressions += 1
                t.product_impressions += 1
            elif kind == _CLICK_KIND:
                c.product_clicks += 1
                t.product_clicks += 1
                _count_product(w, ev.product, _CLICKS, cap)
            elif kind == _LEAVE_KIND:
                c.leaves += 1
                c.watch_ms_total += ev.value
                t.leaves += 1
                t.watch_ms_total += ev.value
            elif kind == _CREATED_KIND:
                c.orders_created += 1
                t.orders_created += 1
                _count_product(w, ev.product, _CREATED, cap)
            elif kind == _PAID_KIND:
                c.orders_paid += 1
                c.gmv_cents += ev.value
                t.orders_paid += 1
                money = tally.money.get(self.currency)
                if money is None:
                    money = tally.money[self.currency] = Counts()
                money.gmv_cents += ev.value
            else:  # Kind.ORDER_REFUNDED
                c.refunds += 1
                c.refund_cents += ev.value
                t.refunds += 1
                money = tally.money.get(self.currency)
                if money is None:
                    money = tally.money[self.currency] = Counts()
                money.refund_cents += ev.value
        self._dirty_meta = True
        return opened

    def _currency_reason(self, ev: Ev) -> str:
        theirs = CODE_OF_NUMBER.get(ev.currency, str(ev.currency))
        ours = CODE_OF_NUMBER.get(self.currency, str(self.currency))
        return f"currency: order in {theirs}, room {self.room_id!r} sells in {ours}"

    def close_until(self, watermark: int, config: RoomConfig) -> int:
        """Close every window whose end the watermark has reached; keep ``retention`` closed."""
        size_ms = config.size_ms
        due = sorted(start for start in self.open if start + size_ms <= watermark)
        if not due:
            return 0
        for start in due:
            w = self.open.pop(start)
            prev = self._window(start - size_ms)
            w.prev_orders_paid = prev.counts.orders_paid if prev else 0
            w.prev_gmv_cents = prev.counts.gmv_cents if prev else 0
            w.unique_viewers = w.viewers()
            w.sketch = None
            w.closed = True
            # a repeated event can now only be late: its window's ids are no longer needed
            self._graves += [chunk_key(self.room_id, "e", start, n) for n in range(w.id_chunks)]
            w.ids = w.ids_new = None
            w.id_chunks = 0
            w.products = _keep_top(w.products, config.products_per_window)
            self.closed.append(w)
            self._dirty_windows.add(start)
            if self.closed_totals is None:
                self.closed_totals = Counts()
            add_counts(self.closed_totals, w.counts)
        for old in self.closed[: max(0, len(self.closed) - config.retention)]:
            self._forget(old)
        del self.closed[: max(0, len(self.closed) - config.retention)]
        self._dirty_meta = True
        return len(due)

    def _forget(self, w: Window) -> None:
        """A window leaves the room: its record and chunks are deleted, its orders forgotten."""
        for fp in w.orders:
            if self.orders.get(fp) == w.start:
                del self.orders[fp]
        self._dirty_windows.discard(w.start)
        if w.version >= 0:
            self._graves.append(window_key(self.room_id, w.start, w.version))
        self._graves += [
            chunk_key(self.room_id, kind, w.start, n)
            for kind, count in (("e", w.id_chunks), ("o", w.order_chunks))
            for n in range(count)
        ]

    # -- reads ---------------------------------------------------------------------------
    def _window(self, start: int) -> Window | None:
        w = self.open.get(start)
        if w is None and self.closed and self.closed[-1].start == start:
            w = self.closed[-1]
        return w

    def has_open(self) -> bool:
        return bool(self.open)

    def open_ends(self, size_ms: int) -> list[int]:
        return [start + size_ms for start in self.open]

    def newest_end(self, size_ms: int) -> int:
        """End of the room's newest window, or of the window its newest (late) event fell in."""
        newest = max(self.open, default=self.closed[-1].start if self.closed else -size_ms)
        return max(newest, self.last_ts - self.last_ts % size_ms) + size_ms

    def last_closed(self) -> Window | None:
        return self.closed[-1] if self.closed else None

    def current_open(self) -> Window | None:
        return self.open[max(self.open)] if self.open else None

    @property
    def currency_code(self) -> str | None:
        """The room's ISO 4217 code, or None before its first order."""
        return CODE_OF_NUMBER.get(self.currency)

    @property
    def exponent(self) -> int:
        """Minor-unit exponent of the room's currency (2 before the first order: no money)."""
        return EXPONENT_OF_NUMBER.get(self.currency, 2)

    def totals(self) -> Counts:
        """Counts of every event ever applied to the room (closed and open windows)."""
        if not self.open and self.closed_totals is not None:
            return self.closed_totals
        total = (
            Counts() if self.closed_totals is None else msgspec.structs.replace(self.closed_totals)
        )
        for w in self.open.values():
            add_counts(total, w.counts)
        return total

    def windows(self) -> list[Window]:
        """Closed then open, oldest first."""
        return [*self.closed, *(self.open[s] for s in sorted(self.open))]

    def previous(self, w: Window, size_ms: int) -> tuple[int, int]:
        """(paid orders, GMV) of the window before ``w`` (0 when the room had none then)."""
        if w.closed:
            return w.prev_orders_paid or 0, w.prev_gmv_cents or 0
        prev = self._window(w.start - size_ms)
        return (prev.counts.orders_paid, prev.counts.gmv_cents) if prev else (0, 0)

    def describe(self, w: Window, size_ms: int) -> dict:
        """A window as the JSON API and the metrics show it: counts, derived values, bounds."""
        prev_orders, prev_gmv = self.previous(w, size_ms)
        out: dict = {"window_start": w.start, "window_end": w.start + size_ms, "closed": w.closed}
        counts = msgspec.structs.asdict(w.counts)
        counts["unique_viewers"] = w.viewers()
        out.update((name, counts[name]) for name in COUNT_FIELDS)
        out.update(derive(w.counts, prev_orders, prev_gmv, self.exponent))
        return out

    def describe_all(self, size_ms: int) -> list[dict]:
        return [self.describe(w, size_ms) for w in self.windows()]

    # -- changelog form ------------------------------------------------------------------
    def changes(self) -> tuple[list[tuple[str, bytes]], tuple[str, bytes] | None, list[str]]:
        """What the changelog lacks: (chunk and window records, the room record, deletions).

        The caller writes them in that order, so that any prefix of the log is a consistent
        room: a room record only names windows and chunks that precede it.
        """
        room = self.room_id
        before: list[tuple[str, bytes]] = []
        if self._dirty_windows:
            dirty = [
                w
                for w in self.closed[-len(self._dirty_windows) :]
                if w.start in self._dirty_windows
            ]
            dirty += [w for start, w in self.open.items() if start in self._dirty_windows]
            for w in sorted(dirty, key=_start):
                for kind, new in (("e", w.ids_new), ("o", w.orders_new)):
                    if not new:
                        continue
                    for i in range(0, len(new), CHUNK_IDS):
                        seq = w.id_chunks if kind == "e" else w.order_chunks
                        chunk = _encode(new[i : i + CHUNK_IDS])
                        before.append((chunk_key(room, kind, w.start, seq), chunk))
                        if kind == "e":
                            w.id_chunks += 1
                        else:
                            w.order_chunks += 1
                    new.clear()
                if w.version >= 0:  # the version the last room record names goes after it
                    self._graves.append(window_key(room, w.start, w.version))
                w.version += 1
                before.append((window_key(room, w.start, w.version), _encode(w.record())))
                if w.closed:  # the detector has judged it; the record keeps its products
                    w.products = None
            self._dirty_windows.clear()
        graves, self._graves = self._graves, []
        record = None
        if self._dirty_meta or before or graves:
            record = (room, _encode(self.record()))
            self._dirty_meta = False
        return before, record, graves

    def record(self) -> RoomRecord:
        return RoomRecord(
            self.partition,
            self.applied,
            self.late_events,
            self.last_ts,
            [[w.start, w.version] for w in self.windows() if w.version >= 0],
            self.closed_totals,
            self.detector,
            self.currency,
        )

    def keys(self) -> Iterator[str]:
        """Every changelog key the room may have written (its deletion deletes them all)."""
        room = self.room_id
        yield room
        for w in self.windows():
            if w.version >= 0:
                yield window_key(room, w.start, w.version)
            for n in range(w.id_chunks):
                yield chunk_key(room, "e", w.start, n)
            for n in range(w.order_chunks):
                yield chunk_key(room, "o", w.start, n)
        yield from self._graves

    @classmethod
    def restore(
        cls, room_id: str, data: bytes, parts: dict[str, bytes], config: RoomConfig
    ) -> tuple[RoomState, list[str]]:
        """A room from its records (``parts``: its other keys), and the keys it no longer
        names (left by a write that crashed before its room record): to be deleted."""
        rec = _decode_room(data)
        state = cls(room_id, rec.partition)
        state.applied = list(rec.applied)
        state.late_events = rec.late_events
        state.last_ts = rec.last_ts
        state.closed_totals = rec.closed_totals
        state.detector = rec.detector
        state.currency = rec.currency
        used = {room_id}
        for start, version in rec.windows:
            key = window_key(room_id, start, version)
            raw = parts.get(key)
            if raw is None:  # cannot happen with the write order of changes(); be total
                continue
            used.add(key)
            w = Window.from_record(_decode_window(raw))
            w.version = version
            for kind, count in (("e", w.id_chunks), ("o", w.order_chunks)):
                for n in range(count):
                    chunk = chunk_key(room_id, kind, start, n)
                    used.add(chunk)
                    fps = _decode_chunk(parts[chunk]) if chunk in parts else []
                    if kind == "e" and w.ids is not None:
                        w.ids.update(fps)
                    elif kind == "o":
                        w.orders += fps
            if w.closed:
                state.closed.append(w)
            else:
                state.open[start] = w
        state.closed.sort(key=lambda w: w.start)
        for w in state.closed:  # judged before the crash; their records keep the products
            w.products = None
        for w in state.closed + list(state.open.values()):
            for fp in w.orders:
                state.orders[fp] = max(state.orders.get(fp, w.start), w.start)
        state._dirty_meta = False
        return state, [key for key in parts if key not in used]


def _start(w: Window) -> int:
    return w.start


def _count_product(w: Window, product: str, column: int, cap: int) -> None:
    """Count a click (column 0) or an order created (1) of ``product`` in window ``w``."""
    if not product:  # an event without a product (hand-made in tests)
        return
    products = w.products
    if products is None:
        products = w.products = {}
    counts = products.get(product)
    if counts is None:
        if len(products) >= cap:
            product = OTHER
            counts = products.get(OTHER)
        if counts is None:
            counts = products[product] = [0, 0]
    counts[column] += 1


def _keep_top(products: dict[str, list[int]] | None, keep: int) -> dict[str, list[int]] | None:
    """The ``keep`` busiest products by orders then clicks; the rest summed as ``__other__``."""
    if products is None or len(products) <= keep:
        return products
    named = sorted(
        (p for p in products if p != OTHER),
        key=lambda p: (-products[p][_CREATED], -products[p][_CLICKS], p),
    )
    other = list(products.get(OTHER, [0, 0]))
    top = {p: products[p] for p in named[:keep]}
    for p in named[keep:]:
        other = [a + b for a, b in zip(other, products[p], strict=True)]
    top[OTHER] = other
    return top

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

from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import msgspec

from streams.core import people
from streams.core.changelog import chunk_key, session_key, window_key
from streams.core.contract import OTHER, Ev, Kind
from streams.core.currencies import CODE_OF_NUMBER, EXPONENT_OF_NUMBER
from streams.core.detector import DetectorState
from streams.core.funnel import (
    BUYERS,
    CLICKER_USERS,
    IMPRESSION_USERS,
    P_CLICKS,
    P_CREATED,
    P_GMV,
    P_IMPRESSIONS,
    P_PAID,
    P_REFUNDS,
    PEOPLE_FIELDS,
    PRODUCT_COLUMNS,
    PRODUCT_IMPRESSION_USERS,
    VIEWERS,
    Counts,
    SpanWindow,
    add_counts,
    keep_top,
    online,
    products_view,
    rolling_view,
    session_view,
    window_view,
)
from streams.core.windows import SOURCES

#: Fingerprints per chunk record (~74 KB of msgpack).
CHUNK_IDS = 8_192
#: Why an event counts once: its offset was applied (a replay), its event id was applied in
#: the window, its order was paid (or refunded) already.
DUPLICATE_REASONS = ("offset", "event_id", "order_id")
#: Salt that keeps a refund's order fingerprint apart from the payment's.
_REFUND_SALT = 0x9E37_79B9_7F4A_7C15
_STAGES = len(PEOPLE_FIELDS)
_COLUMNS = len(PRODUCT_COLUMNS)
#: Per kind (Kind's order): the people stage it counts (-1: none) and its online net.
_STAGE_OF_KIND = (
    IMPRESSION_USERS,
    VIEWERS,
    -1,
    PRODUCT_IMPRESSION_USERS,
    CLICKER_USERS,
    -1,
    BUYERS,
    -1,
)
_NET_OF_KIND = (0, 1, -1, 0, 0, 0, 0, 0)
#: Where the columns of an event without a product go (nowhere: it is never read).
_NO_PRODUCT = [0] * len(PRODUCT_COLUMNS)
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
    #: The N of the rooms' rolling blocks (the last N closed windows against the N before).
    rolling: tuple[int, ...] = (5, 10)

    @cached_property
    def products_open_cap(self) -> int:
        return 4 * self.products_per_window

    @cached_property
    def sketch_windows(self) -> int:
        """Closed windows that keep their people sketches: what the rolling blocks merge."""
        return 2 * max(self.rolling, default=0)


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
    """A window in the changelog. Records of the previous version end at ``order_chunks``,
    carry the viewers' sketch in ``sketch`` and products as [clicks, orders created]."""

    start: int
    closed: bool
    counts: Counts
    unique_viewers: int
    sketch: bytes | None
    prev_orders_paid: int | None
    prev_gmv_cents: int | None
    products: dict[str, list[int]] | None  # product -> PRODUCT_COLUMNS (a prefix in old ones)
    id_chunks: int = 0
    order_chunks: int = 0
    #: closed: the people of PEOPLE_FIELDS (estimates)
    people: list[int] | None = None
    #: per stage, its people packed (:func:`streams.core.people.pack`: a compact sketch, or
    #: the one person's user id; msgspec types no union of bytes and str, so
    #: :meth:`Window.from_record` checks them), open, and closed while the rolling blocks may
    #: merge them
    sketches: list[Any] | None = None
    #: open, as the previous version wrote it: [second, net, second, net, ...]
    nets: list[int] | None = None
    #: closed: [online_end, online_peak, online_peak_at]
    online: list[int | None] | None = None
    #: open: second -> net of the seconds with events (at most the window's seconds)
    net_map: dict[int, int] | None = None


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
    # (fields below are absent from records of the previous version: their defaults apply)
    online_base: int = 0  # running count (enters - leaves) at the last closed window's end
    online_peak: int | None = None  # over the closed windows
    online_peak_at: int | None = None
    peak_gmv: list[int] | None = None  # [window start, gmv_cents] over the closed windows
    session: int = -1  # version of the session record (-1: none)


class SessionRecord(msgspec.Struct, array_like=True):
    """The session's people (closed windows merged), compact sketches: written at a close."""

    viewers: bytes | None
    buyers: bytes | None


_encode = msgspec.msgpack.Encoder().encode
_decode_room = msgspec.msgpack.Decoder(RoomRecord).decode
_decode_window = msgspec.msgpack.Decoder(WindowRecord).decode
_decode_chunk = msgspec.msgpack.Decoder(list[int]).decode
_decode_session = msgspec.msgpack.Decoder(SessionRecord).decode
_decode_products = msgspec.msgpack.Decoder(dict[str, list[int]]).decode
_decode_sketches = msgspec.msgpack.Decoder(list[Any]).decode


class Window:
    __slots__ = (
        "closed",
        "columns",
        "counts",
        "id_chunks",
        "ids",
        "ids_new",
        "nets",
        "online",
        "order_chunks",
        "orders",
        "orders_new",
        "packed",
        "people",
        "prev_gmv_cents",
        "prev_orders_paid",
        "products_packed",
        "sketches",
        "start",
        "version",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.version = -1  # of its last record written (-1: none yet)
        self.counts = Counts()
        self.closed = False
        # open: per people stage, its first person's user id, then a live sketch from the
        # second person on (a sketch costs more memory than one id)
        self.sketches: list[people.Live] | None = [None] * _STAGES
        # closed: the people per stage, and their compact sketches while the rolling blocks
        # may merge them (the last RoomConfig.sketch_windows closed windows)
        # (one msgpack list of the five: one object, not six)
        self.people: tuple[int, ...] | None = None
        self.packed: bytes | None = None
        # open: second -> enters - leaves of its events, for every second with an event (a
        # dict: events arrive up to the grace out of order); closed: (online_end,
        # online_peak, online_peak_at)
        self.nets: dict[int, int] | None = {}
        self.online: tuple[int | None, int | None, int | None] | None = None
        self.prev_orders_paid: int | None = None
        self.prev_gmv_cents: int | None = None
        # open: product id -> PRODUCT_COLUMNS (None until the window's first product event);
        # closed: the kept products, msgpack-encoded (a closed window never changes)
        self.columns: dict[str, list[int]] | None = None
        self.products_packed: bytes | None = None
        # fingerprints of the events applied (while open), and those not yet in a chunk
        self.ids: set[int] | None = set()
        self.ids_new: list[int] | None = []
        self.id_chunks = 0
        # fingerprints of the payments and refunds applied, and those not yet in a chunk
        self.orders: list[int] = []
        self.orders_new: list[int] = []
        self.order_chunks = 0

    def people_now(self) -> list[int]:
        """The window's people per stage (so far, while open)."""
        if self.people is not None:
            return list(self.people)
        return [people.estimate(s) for s in self.sketches or [None] * _STAGES]

    def viewers(self) -> int:
        return self.people_now()[VIEWERS]

    def product_rows(self) -> dict[str, list[int]] | None:
        """Product id -> PRODUCT_COLUMNS (a closed window's top products and ``__other__``)."""
        if self.products_packed is not None:
            return _decode_products(self.products_packed)
        return self.columns

    @property
    def products(self) -> dict[str, list[int]] | None:
        """Product id -> [clicks, orders created]: what the detector's stock-out test reads."""
        rows = self.product_rows()
        return None if rows is None else {p: r[:2] for p, r in rows.items()}

    def record(self) -> WindowRecord:
        if self.closed:
            products: object = (
                None if self.products_packed is None else msgspec.Raw(self.products_packed)
            )
            sketches = None if self.packed is None else msgspec.Raw(self.packed)
            net_map = None
            online_values: list[int | None] | None = (
                None if self.online is None else list(self.online)
            )
        else:
            products = self.columns
            sketches = [people.pack(s) for s in self.sketches or ()]
            net_map = self.nets
            online_values = None
        return WindowRecord(
            self.start,
            self.closed,
            self.counts,
            self.people[VIEWERS]  # type: ignore[index]
            if self.people is not None
            else people.estimate((self.sketches or [None] * _STAGES)[VIEWERS]),
            None,
            self.prev_orders_paid,
            self.prev_gmv_cents,
            products,  # type: ignore[arg-type]
            self.id_chunks,
            self.order_chunks,
            None if self.people is None else list(self.people),
            sketches,
            None,
            online_values,
            net_map,
        )

    @classmethod
    def from_record(cls, rec: WindowRecord) -> Window:
        w = cls.__new__(cls)
        w.start, w.closed, w.counts = rec.start, rec.closed, rec.counts
        w.prev_orders_paid, w.prev_gmv_cents = rec.prev_orders_paid, rec.prev_gmv_cents
        rows = None
        if rec.products is not None:  # a previous version's rows are a prefix of the columns
            rows = {p: [*r[:_COLUMNS], *[0] * (_COLUMNS - len(r))] for p, r in rec.products.items()}
        if rec.sketches is not None:
            _check_packed(rec.sketches)
        if rec.closed:
            # a previous version's closed window knew its viewers only
            w.people = tuple(rec.people or (0, rec.unique_viewers, 0, 0, 0))
            w.packed = None if rec.sketches is None else _encode(rec.sketches)
            w.sketches = w.nets = None
            w.online = None if rec.online is None else tuple(rec.online)  # type: ignore[assignment]
            w.columns = None
            w.products_packed = None if rows is None else _encode(rows)
        else:
            if rec.sketches is not None:
                w.sketches = [people.unpack(b) for b in rec.sketches]
            else:
                w.sketches = [None] * _STAGES
                w.sketches[VIEWERS] = people.unpack(rec.sketch)
            w.people = w.packed = None
            if rec.net_map is not None:
                w.nets = rec.net_map
            else:
                flat = rec.nets or []
                w.nets = {}
                for i in range(0, len(flat) - 1, 2):
                    w.nets[flat[i]] = w.nets.get(flat[i], 0) + flat[i + 1]
            w.online = None
            w.columns, w.products_packed = rows, None
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
        "_named",
        "_session_new",
        "applied",
        "closed",
        "closed_totals",
        "currency",
        "detector",
        "in_others",
        "last_ts",
        "late_events",
        "online_base",
        "online_peak",
        "online_peak_at",
        "open",
        "orders",
        "partition",
        "peak_gmv",
        "room_id",
        "session_buyers",
        "session_version",
        "session_viewers",
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
        # Online viewers: the running count (enters - leaves) at the last closed window's end,
        # and the closed windows' peak (the first second reaching it, ms).
        self.online_base = 0
        self.online_peak: int | None = None
        self.online_peak_at: int | None = None
        # (start, gmv_cents) of the closed window with the highest GMV (earliest on ties)
        self.peak_gmv: tuple[int, int] | None = None
        # the closed windows' viewers and buyers, merged (compact sketches): the session's
        # people outlive the retained windows. The windows closed since the last changelog
        # write wait in _session_new (their viewers and buyers), merged at the next one.
        self.session_viewers: bytes | None = None
        self.session_buyers: bytes | None = None
        self._session_new: list[tuple[people.Live, people.Live]] = []
        self.session_version = -1
        # what the next changelog write must carry (see changes())
        self._dirty_meta = True
        self._dirty_windows: set[int] = set()
        self._graves: list[str] = []
        self._named: list[list[int]] | None = None  # see _names()

    # -- updates -------------------------------------------------------------------------
    def apply(
        self,
        events: list[Ev],
        config: RoomConfig,
        watermark: int | None,
        tally: Tally,
        rejected: list[tuple[Ev, str]],
        late: Container[tuple[int, int]] = (),
    ) -> list[int]:
        """Apply one batch of this room's events (log order); ``late`` holds the (source,
        offset) of those the partition clock found late (usually none).

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
        for ev in events:
            src = ev.src
            offset = ev.offset
            if offset <= applied[src]:
                duplicates["offset"][src] += 1
                continue
            applied[src] = offset
            ts = ev.ts
            if ts > self.last_ts:
                self.last_ts = ts
            if late and (src, offset) in late:
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
            # online: every second with an event has a net; people: one sketch per stage
            second = ts // 1000
            nets = w.nets
            net = _NET_OF_KIND[kind]
            if net:
                nets[second] = nets.get(second, 0) + net  # type: ignore[index,union-attr]
            elif second not in nets:  # type: ignore[operator]
                nets[second] = 0  # type: ignore[index]
            stage = _STAGE_OF_KIND[kind]
            user = ev.user
            if stage >= 0 and user:
                sketches = w.sketches
                person = sketches[stage]  # type: ignore[index]
                if person is None:  # the stage's first person, kept as is
                    sketches[stage] = user  # type: ignore[index]
                elif person.__class__ is str:
                    if person != user:  # a second one: a sketch from now on
                        sketches[stage] = people.grown(person, user)  # type: ignore[index]
                else:
                    person.update(user)
            if kind == _ENTER_KIND:
                c.enters += 1
                t.enters += 1
            elif kind == _IMPRESSION_KIND:
                c.impressions += 1
                t.impressions += 1
            elif kind == _LEAVE_KIND:
                c.leaves += 1
                c.watch_ms_total += ev.value
                t.leaves += 1
                t.watch_ms_total += ev.value
            else:
                columns = w.columns
                row = columns.get(ev.product) if columns is not None else None
                if row is None:
                    row = _product_row(w, ev.product, cap)
                if row is None:  # an event without a product (hand-made in tests)
                    row = _NO_PRODUCT
                if kind == _CARD_KIND:
                    c.product_impressions += 1
                    t.product_impressions += 1
                    row[P_IMPRESSIONS] += 1
                elif kind == _CLICK_KIND:
                    c.product_clicks += 1
                    t.product_clicks += 1
                    row[P_CLICKS] += 1
                elif kind == _CREATED_KIND:
                    c.orders_created += 1
                    t.orders_created += 1
                    row[P_CREATED] += 1
                elif kind == _PAID_KIND:
                    c.orders_paid += 1
                    c.gmv_cents += ev.value
                    t.orders_paid += 1
                    row[P_PAID] += 1
                    row[P_GMV] += ev.value
                    money = tally.money.get(self.currency)
                    if money is None:
                        money = tally.money[self.currency] = Counts()
                    money.gmv_cents += ev.value
                else:  # Kind.ORDER_REFUNDED
                    c.refunds += 1
                    c.refund_cents += ev.value
                    t.refunds += 1
                    row[P_REFUNDS] += 1
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
        """Close every window whose end the watermark has reached; keep ``retention`` closed.

        Windows close in start order, so each one's online values follow from the running
        count the previous closes left (``online_base``).
        """
        size_ms = config.size_ms
        due = [start for start in self.open if start + size_ms <= watermark]
        if not due:
            return 0
        due.sort()
        for start in due:
            w = self.open.pop(start)
            prev = self._window(start - size_ms)
            w.prev_orders_paid = prev.counts.orders_paid if prev else 0
            w.prev_gmv_cents = prev.counts.gmv_cents if prev else 0
            end, peak, peak_at, self.online_base = online(w.nets or {}, self.online_base)
            w.online, w.nets = (end, peak, peak_at), None
            if peak is not None and (self.online_peak is None or peak > self.online_peak):
                self.online_peak, self.online_peak_at = peak, peak_at
            sketches = w.sketches or [None] * _STAGES
            w.people = tuple([people.estimate(x) for x in sketches])
            w.packed = _encode([people.pack(x) for x in sketches])
            w.sketches = None
            if sketches[VIEWERS] is not None or sketches[BUYERS] is not None:
                self._session_new.append((sketches[VIEWERS], sketches[BUYERS]))
            gmv = w.counts.gmv_cents
            if w.counts.orders_paid and (self.peak_gmv is None or gmv > self.peak_gmv[1]):
                self.peak_gmv = (start, gmv)
            w.closed = True
            # a repeated event can now only be late: its window's ids are no longer needed
            self._graves += [chunk_key(self.room_id, "e", start, n) for n in range(w.id_chunks)]
            w.ids = w.ids_new = None
            w.id_chunks = 0
            if w.columns is not None:
                w.products_packed = _encode(keep_top(w.columns, config.products_per_window))
            w.columns = None
            self.closed.append(w)
            self._dirty_windows.add(start)
            if self.closed_totals is None:
                self.closed_totals = Counts()
            add_counts(self.closed_totals, w.counts)
        # a window past the rolling blocks' reach is written again without its sketches, so
        # the changelog holds sketches for those windows only
        self._named = None
        self._dirty_windows.update(_drop_sketches(self.closed, config.sketch_windows, len(due)))
        excess = len(self.closed) - config.retention
        if excess > 0:
            for old in self.closed[:excess]:
                self._forget(old)
            del self.closed[:excess]
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

    def first_open(self) -> int | None:
        """Start of the room's oldest open window (None: none is open)."""
        return min(self.open) if self.open else None

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

    def online_values(self, w: Window) -> tuple[int | None, int | None, int | None]:
        """``(online_end, online_peak, online_peak_at)`` of a window (so far, while open)."""
        if w.closed:
            return w.online or (None, None, None)
        base = self.online_base
        for start in sorted(self.open):
            if start >= w.start:
                break
            base += sum((self.open[start].nets or {}).values())
        end, peak, peak_at, _ = online(w.nets or {}, base)
        return end, peak, peak_at

    def online_now(self) -> int:
        """max(0, the running count at the room's newest applied second)."""
        running = self.online_base
        for w in self.open.values():
            running += sum((w.nets or {}).values())
        return max(0, running)

    def describe(self, w: Window, size_ms: int) -> dict:
        """A window as the JSON API shows it: counts, people, derived values, online, products."""
        return window_view(
            w.start,
            size_ms,
            w.closed,
            w.counts,
            w.people_now(),
            self.online_values(w),
            self.previous(w, size_ms),
            self.exponent,
            products_view(w.product_rows()),
        )

    def describe_all(self, size_ms: int) -> list[dict]:
        return [self.describe(w, size_ms) for w in self.windows()]

    def _span(self, low: int, high: int) -> tuple[list[SpanWindow], list[int]]:
        """The closed windows starting in ``[low, high)`` and their merged people."""
        spans = [w for w in self.closed if low <= w.start < high]
        sketches = [_decode_sketches(w.packed) for w in spans if w.packed is not None]
        merged = []
        for stage in range(_STAGES):
            # a window restored from a previous version's record has no sketches: its
            # estimate is added (an upper bound of its share of the union)
            alone = sum((w.people or (0,) * _STAGES)[stage] for w in spans if w.packed is None)
            merged.append(people.union_estimate(parts[stage] for parts in sketches) + alone)
        return [
            SpanWindow(w.start, w.counts, *(w.online or (None, None, None))) for w in spans
        ], merged

    def rolling(self, config: RoomConfig) -> dict:
        """The ``rolling`` block (:func:`streams.core.funnel.rolling_view`)."""
        last = self.last_closed()
        size = config.size_ms
        end = None if last is None else last.start + size
        return rolling_view(end, size, config.rolling, self._span, self.exponent)

    def session_extremes(
        self,
    ) -> tuple[int, int, int, int | None, int | None, tuple[int, int] | None]:
        """(viewers, buyers, online_now, online_peak, online_peak_at, peak GMV window) of
        everything applied since the room's state began, open windows included."""
        ordered = [self.open[start] for start in sorted(self.open)]
        viewers = people.union_estimate(
            [
                self.session_viewers,
                *(v for v, _ in self._session_new),
                *((w.sketches or [None] * _STAGES)[VIEWERS] for w in ordered),
            ]
        )
        buyers = people.union_estimate(
            [
                self.session_buyers,
                *(b for _, b in self._session_new),
                *((w.sketches or [None] * _STAGES)[BUYERS] for w in ordered),
            ]
        )
        peak, peak_at, running = self.online_peak, self.online_peak_at, self.online_base
        peak_gmv = self.peak_gmv
        for w in ordered:
            _, top, top_at, running = online(w.nets or {}, running)
            if top is not None and (peak is None or top > peak):
                peak, peak_at = top, top_at
            gmv = w.counts.gmv_cents
            if w.counts.orders_paid and (peak_gmv is None or gmv > peak_gmv[1]):
                peak_gmv = (w.start, gmv)
        return viewers, buyers, max(0, running), peak, peak_at, peak_gmv

    def session(self) -> dict:
        """The ``session`` block (:func:`streams.core.funnel.session_view`)."""
        viewers, buyers, online_now, peak, peak_at, peak_gmv = self.session_extremes()
        return session_view(
            self.totals(), viewers, buyers, self.exponent, online_now, peak, peak_at, peak_gmv
        )

    # -- changelog form ------------------------------------------------------------------
    def changes(self) -> tuple[list[tuple[str, bytes]], tuple[str, bytes] | None, list[str]]:
        """What the changelog lacks: (chunk and window records, the room record, deletions).

        The caller writes them in that order, so that any prefix of the log is a consistent
        room: a room record only names windows and chunks that precede it.
        """
        room = self.room_id
        before: list[tuple[str, bytes]] = []
        if self._dirty_windows:
            dirty = [w for start, w in self.open.items() if start in self._dirty_windows]
            closed = self._dirty_windows - self.open.keys()
            if closed:
                self._named = None  # their versions change
            for w in reversed(self.closed):  # the dirty ones are among the newest
                if not closed:
                    break
                if w.start in closed:
                    dirty.append(w)
                    closed.discard(w.start)
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
            self._dirty_windows.clear()
        if self._session_new:
            new, self._session_new = self._session_new, []
            self.session_viewers = people.pack(
                people.union([self.session_viewers, *(v for v, _ in new)])
            )
            self.session_buyers = people.pack(
                people.union([self.session_buyers, *(b for _, b in new)])
            )
            if self.session_version >= 0:
                self._graves.append(session_key(room, self.session_version))
            self.session_version += 1
            session = SessionRecord(self.session_viewers, self.session_buyers)
            before.append((session_key(room, self.session_version), _encode(session)))
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
            self._names(),
            self.closed_totals,
            self.detector,
            self.currency,
            self.online_base,
            self.online_peak,
            self.online_peak_at,
            None if self.peak_gmv is None else list(self.peak_gmv),
            self.session_version,
        )

    def _names(self) -> list[list[int]]:
        """[start, version] of the windows written, closed then open (the closed ones' kept
        from one room record to the next until one of them changes)."""
        named = self._named
        if named is None:
            named = self._named = [[w.start, w.version] for w in self.closed if w.version >= 0]
        opened = self.open
        return named + [[s, opened[s].version] for s in sorted(opened) if opened[s].version >= 0]

    def keys(self) -> Iterator[str]:
        """Every changelog key the room may have written (its deletion deletes them all)."""
        room = self.room_id
        yield room
        if self.session_version >= 0:
            yield session_key(room, self.session_version)
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
        state.online_base = rec.online_base
        state.online_peak, state.online_peak_at = rec.online_peak, rec.online_peak_at
        state.peak_gmv = None if rec.peak_gmv is None else (rec.peak_gmv[0], rec.peak_gmv[1])
        used = {room_id}
        if rec.session >= 0:
            key = session_key(room_id, rec.session)
            raw = parts.get(key)
            if raw is not None:
                used.add(key)
                session = _decode_session(raw)
                state.session_viewers, state.session_buyers = session.viewers, session.buyers
                state.session_version = rec.session
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
        _drop_sketches(state.closed, config.sketch_windows, len(state.closed))
        for w in state.closed + list(state.open.values()):
            for fp in w.orders:
                state.orders[fp] = max(state.orders.get(fp, w.start), w.start)
        state._dirty_meta = False
        return state, [key for key in parts if key not in used]


def _start(w: Window) -> int:
    return w.start


def _product_row(w: Window, product: str, cap: int) -> list[int] | None:
    """The row of ``product`` in open window ``w`` (``__other__``'s once ``cap`` products
    have rows); None for an event without a product (hand-made in tests)."""
    if not product:
        return None
    products = w.columns
    if products is None:
        products = w.columns = {}
    row = products.get(product)
    if row is None:
        if len(products) >= cap:
            product = OTHER
            row = products.get(OTHER)
        if row is None:
            row = products[product] = [0] * _COLUMNS
    return row


def _check_packed(parts: list[Any]) -> None:
    """A window record's stages are what :func:`streams.core.people.pack` writes, one per
    stage (the window's code indexes them by stage)."""
    if len(parts) != _STAGES or any(
        p is not None and p.__class__ is not bytes and p.__class__ is not str for p in parts
    ):
        raise msgspec.ValidationError(
            "a window record's people are not one sketch, user id or nobody per stage"
        )


def _drop_sketches(closed: list[Window], keep: int, recent: int) -> list[int]:
    """Closed windows older than the last ``keep`` no longer need their sketches (only the
    ``recent`` windows closed last can have moved out of that range); returns their starts."""
    end = len(closed) - keep
    dropped = []
    for w in closed[max(0, end - recent) : max(0, end)]:
        if w.packed is not None:
            w.packed = None
            dropped.append(w.start)
    return dropped

"""Ground truth: the windows contract v1 says a stream of records must produce.

Written from docs/contract.md, docs/time.md and the JSON Schemas, deliberately without
importing the stream code (``streams.core.contract``, ``windows``, ``funnel``, ``rooms``,
``processor``): if both agree, it is not because they share a bug. It is computed from the
records alone; the generator's labels are only counted (``totals``), never trusted.

The rules, restated simply:

* A record is **malformed** (not applied) when its value is not a JSON object (``json``), when
  the object breaks the schema of its topic (``schema``: required fields, types, the bounds
  of docs/contract.md's table: ``ts`` in 0..9999-12-31, ``quantity`` 1..10^6,
  ``amount_cents`` 0..10^12, ``watch_ms`` 0..7 days, ids of 1..128 characters without control
  characters, no ``room_id`` or ``product_id`` starting with ``__``, an ISO 4217
  ``currency`` with a minor unit, a ``type`` of that topic, at most 16 containers deep), or
  when the key is missing or is not the ``room_id`` in UTF-8 (``key``). Integral numbers
  (``1.0``) are integers, as in JSON Schema.
  Malformed records do not move any clock. (The wall-clock skew rule is not modelled: give the
  session an ``end_ms`` that is not in the future of the consumer.)
* Topics are co-partitioned; a key's partition is Kafka's default (murmur2) partitioner.
  Records of one (topic, partition) are in the order they are given.
* A valid event is **late** (not applied) when its ``ts`` is more than ``grace_ms`` behind the
  largest ``ts`` already seen on its own (topic, partition); otherwise it raises that maximum
  when it is larger, and is applied to the tumbling window ``[ts - ts % window_ms, + window_ms)``
  of its room. (With no idle timeout a non-late event never meets a closed window.)
* A room sells in the currency of its first applied order (created, paid or refunded); an
  order in another one is **dead-lettered** (reason ``currency``, not applied; it still moved
  its topic-partition's clock, as every valid record does).
* **Duplicates** count once: an event whose ``event_id`` the room already applied in the same
  window; a ``paid`` (``refunded``) event whose ``order_id`` the room already applied as paid
  (refunded) in a window at most ``retention`` windows before its own (or later).
* Derived values as contract v1 defines them, ``None`` when the denominator is 0; growth is
  against the room's window immediately before, ``None`` when that window has no applied
  events or 0 paid orders (0 GMV for ``gmv_growth``). The floating-point operations are done
  in the same order as the contract's reference arithmetic (GMV in major units = minor units
  / 10^exponent of the room's currency; ``gpm`` = GMV * 1000 / enters).
* **People** (issue 15) are exact distinct ``user_id`` counts per window and stage:
  ``impression_users``, ``viewers`` (enter; ``unique_viewers`` is the same),
  ``product_impression_users``, ``clicker_users`` (product_click), ``buyers`` (paid). Their
  rates and the other issue-15 values follow docs/cli.md ("The truth's definitions").
* **Online**: a room's running count R(s) = enters - leaves of all its applied events with
  ``ts // 1000 <= s``; ``online_end`` = max(0, R(last second before window_end)),
  ``online_peak`` = the largest max(0, R(s)) over the seconds of the window with an applied
  event of the room, ``online_peak_at`` = the first such second, in ms.
* **Products** per window: applied product_impression, product_click, created, paid (and its
  amount), refunded per ``product_id``, by GMV then clicks (descending) then id; beyond
  ``products_per_window`` summed as ``__other__``.
* Per room, ``rolling`` (the last N windows before the end E of the room's last window against
  the N before them, merged) and ``session`` (everything applied): see ``_rolling`` and
  ``_session``. Every room's state begins with its first record given here.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from itertools import accumulate

import orjson

from streams.core.currencies import CURRENCIES
from streams.core.partitioner import partition_of
from streams.sim.generate import Emitted, Fields
from streams.sim.sessions import SimConfig, incidents

TYPES = {
    "views": ("impression", "enter", "leave"),
    "clicks": ("product_impression", "product_click"),
    "orders": ("created", "paid", "refunded"),
}

# indices into a window's count list
(
    IMPRESSIONS,
    ENTERS,
    LEAVES,
    WATCH_MS,
    PRODUCT_IMPRESSIONS,
    PRODUCT_CLICKS,
    CREATED,
    PAID,
    GMV,
    REFUNDS,
    REFUND_CENTS,
) = range(11)
_SLOTS = 11


# contract v1's bounds, restated from docs/contract.md
TS_MAX = 253_402_300_799_999
WATCH_MAX = 604_800_000
QUANTITY_MAX = 1_000_000
AMOUNT_MAX = 10**12
ID_MAX = 128
DEPTH_MAX = 16


# bytes of the raw text, looked up as ints (several times faster than as one-byte bytes)
_LIST, _OBJECT, _ESCAPE, _DEL = b"[{\\\x7f"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]").search
_IDS = (("event_id", False), ("room_id", True), ("user_id", False))  # (name, reserved)
_PRODUCT = (("product_id", True),)
_ORDER = (("order_id", False), ("product_id", True))
_TS = (("ts", 0, TS_MAX),)  # (name, minimum, maximum)
_ORDER_NUMBERS = (*_TS, ("quantity", 1, QUANTITY_MAX), ("amount_cents", 0, AMOUNT_MAX))
#: Per type: the text fields and the integer fields it must have.
_FIELDS = {
    "impression": (_IDS, _TS),
    "enter": (_IDS, _TS),
    "leave": (_IDS, (*_TS, ("watch_ms", 0, WATCH_MAX))),
    "product_impression": ((*_IDS, *_PRODUCT), _TS),
    "product_click": ((*_IDS, *_PRODUCT), _TS),
    "created": ((*_IDS, *_ORDER), _ORDER_NUMBERS),
    "paid": ((*_IDS, *_ORDER), _ORDER_NUMBERS),
    "refunded": ((*_IDS, *_ORDER), _ORDER_NUMBERS),
}


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def check(topic: str, key: bytes | None, value: bytes) -> tuple[dict | None, str | None]:
    """``(event, None)`` for a valid record, ``(None, reason)`` with reason json/schema/key.

    Integral numbers (``1.0``) count as integers, as in JSON Schema; the event returned has
    them as ints.
    """
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, "json"
    # a nested container needs a "[" or a second "{" in the text: only then measure the depth
    if not isinstance(body, dict) or (
        (_LIST in value or value.find(_OBJECT, 1) >= 0) and _depth(body) > DEPTH_MAX
    ):
        return None, "schema"
    type_ = body.get("type")
    if type_ not in TYPES[topic]:
        return None, "schema"
    texts, integers = _FIELDS[type_]
    # JSON strings hold no raw U+0000-U+001F: with no escape, no U+007F and nothing beyond
    # ASCII in the text, no string of it has a control character
    plain = value.isascii() and _ESCAPE not in value and _DEL not in value
    for name, reserved in texts:
        v = body.get(name)
        if not (
            isinstance(v, str)
            and 1 <= len(v) <= ID_MAX
            and (plain or _CONTROL(v) is None)
            and not (reserved and v.startswith("__"))
        ):
            return None, "schema"
    for name, minimum, maximum in integers:
        v = body.get(name)
        if type(v) is float and v.is_integer():
            v = body[name] = int(v)
        if not (type(v) is int and minimum <= v <= maximum):
            return None, "schema"
    if topic == "orders" and not (
        isinstance(body.get("currency"), str) and body["currency"] in CURRENCIES
    ):
        return None, "schema"
    if key is None or key != body["room_id"].encode():
        return None, "key"
    return body, None


#: Distinct people (``user_id``) per window: the event type each stage counts, and its key.
PEOPLE = {
    "impression": "impression_users",
    "enter": "viewers",
    "product_impression": "product_impression_users",
    "product_click": "clicker_users",
    "paid": "buyers",
}
#: The count keys, in the order of the count slots above.
COUNT_KEYS = (
    "impressions",
    "enters",
    "leaves",
    "watch_ms_total",
    "product_impressions",
    "product_clicks",
    "orders_created",
    "orders_paid",
    "gmv_cents",
    "refunds",
    "refund_cents",
)
#: People-based rates: (key, numerator, denominator), all people keys.
PEOPLE_RATES = (
    ("enter_rate_users", "viewers", "impression_users"),
    ("ctr_users", "clicker_users", "product_impression_users"),
    ("click_to_buy_users", "buyers", "clicker_users"),
    ("conversion_rate_users", "buyers", "viewers"),
)
# indices into a product's count list, and the keys they are served under
P_IMPRESSIONS, P_CLICKS, P_CREATED, P_PAID, P_GMV, P_REFUNDS = range(6)
PRODUCT_KEYS = (
    "product_impressions",
    "product_clicks",
    "orders_created",
    "orders_paid",
    "gmv_cents",
    "refunds",
)
OTHER_PRODUCT = "__other__"
#: Per type: its count slot, its change of the online count, the field it adds (and to which
#: slot), its product slot.
_APPLY: dict[str, tuple[int, int, tuple[str, int] | None, int | None]] = {
    "impression": (IMPRESSIONS, 0, None, None),
    "enter": (ENTERS, 1, None, None),
    "leave": (LEAVES, -1, ("watch_ms", WATCH_MS), None),
    "product_impression": (PRODUCT_IMPRESSIONS, 0, None, P_IMPRESSIONS),
    "product_click": (PRODUCT_CLICKS, 0, None, P_CLICKS),
    "created": (CREATED, 0, None, P_CREATED),
    "paid": (PAID, 0, ("amount_cents", GMV), P_PAID),
    "refunded": (REFUNDS, 0, ("amount_cents", REFUND_CENTS), P_REFUNDS),
}


class _Window:
    """What the truth keeps of one room window while it reads the records."""

    __slots__ = ("counts", "ids", "people", "products", "seconds")

    def __init__(self, seconds: dict[int, int]) -> None:
        self.seconds = seconds  # the room's enters - leaves per second
        self.counts = [0] * _SLOTS
        self.people: dict[str, set[str]] = {type_: set() for type_ in PEOPLE}
        self.products: dict[str, list[int]] = {}
        self.ids: set[str] = set()


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _growth(current: int, previous: int | None) -> float | None:
    return None if not previous else current / previous - 1


def _derived(c: list[int], gmv: float, people: dict[str, int]) -> dict:
    """The derived values of counts ``c`` (GMV in major units) and the people counts given;
    the people-based ones only where their people are given."""
    out = {
        "enter_rate": _ratio(c[ENTERS], c[IMPRESSIONS]),
        "ctr": _ratio(c[PRODUCT_CLICKS], c[PRODUCT_IMPRESSIONS]),
        "conversion_rate": _ratio(c[PAID], c[ENTERS]),
        "click_to_order_rate": _ratio(c[PAID], c[PRODUCT_CLICKS]),
        "gpm": _ratio(gmv * 1000, c[ENTERS]),
        "aov": _ratio(gmv, c[PAID]),
    }
    for key, numerator, denominator in PEOPLE_RATES:
        if numerator in people and denominator in people:
            out[key] = _ratio(people[numerator], people[denominator])
    out["payment_success_rate"] = _ratio(c[PAID], c[CREATED])
    out["refund_rate"] = _ratio(c[REFUNDS], c[PAID])
    out["unpaid_orders"] = c[CREATED] - c[PAID]
    if "viewers" in people:
        out["uv_value"] = _ratio(gmv, people["viewers"])
        out["watch_seconds_per_viewer"] = _ratio(c[WATCH_MS] / 1000, people["viewers"])
    if "buyers" in people:
        out["aov_per_buyer"] = _ratio(gmv, people["buyers"])
    out["avg_watch_seconds"] = _ratio(c[WATCH_MS] / 1000, c[LEAVES])
    return out


def _product_row(product_id: str, v: list[int]) -> dict:
    return {
        "product_id": product_id,
        **dict(zip(PRODUCT_KEYS, v, strict=True)),
        "ctr": _ratio(v[P_CLICKS], v[P_IMPRESSIONS]),
        "click_to_order_rate": _ratio(v[P_PAID], v[P_CLICKS]),
    }


def _products(products: dict[str, list[int]], keep: int) -> list[dict]:
    """By GMV, then clicks (descending), then id; beyond ``keep`` summed as ``__other__``."""
    ranked = sorted(products.items(), key=lambda kv: (-kv[1][P_GMV], -kv[1][P_CLICKS], kv[0]))
    rows = [_product_row(pid, v) for pid, v in ranked[:keep]]
    rest = [v for _, v in ranked[keep:]]
    if rest:
        rows.append(_product_row(OTHER_PRODUCT, [sum(col) for col in zip(*rest, strict=True)]))
    return rows


class _Online:
    """A room's running count R(s) = enters - leaves of every applied event with
    ``ts // 1000 <= s``, at the seconds that had an applied event of the room."""

    def __init__(self, net_by_second: dict[int, int]) -> None:
        self.seconds = sorted(net_by_second)
        self.running = list(accumulate(net_by_second[s] for s in self.seconds))

    def at(self, second: int) -> int:
        """R(second): the count after the last second with an event at or before it."""
        i = bisect_right(self.seconds, second)
        return self.running[i - 1] if i else 0

    def peak(self, start_ms: int, end_ms: int) -> tuple[int, int] | None:
        """``(peak, at_ms)`` over the event seconds s with start <= s * 1000 < end."""
        lo = bisect_left(self.seconds, -(-start_ms // 1000))
        hi = bisect_left(self.seconds, -(-end_ms // 1000))
        best: tuple[int, int] | None = None
        for i in range(lo, hi):
            value = max(0, self.running[i])
            if best is None or value > best[0]:
                best = (value, self.seconds[i] * 1000)
        return best

    def window(self, start_ms: int, end_ms: int) -> dict:
        peak = self.peak(start_ms, end_ms)
        return {
            "online_end": max(0, self.at((end_ms - 1) // 1000)),
            "online_peak": peak[0] if peak else None,
            "online_peak_at": peak[1] if peak else None,
        }


def _merge(kept: list[_Window], gmv_scale: int, people: dict[str, str]) -> dict:
    """Counts summed, the ``people`` (event type -> key) sets merged, derived values recomputed
    from the merged ones."""
    c = [sum(w.counts[i] for w in kept) for i in range(_SLOTS)]
    counted = {
        key: len(set().union(*(w.people[type_] for w in kept))) for type_, key in people.items()
    }
    return {
        **dict(zip(COUNT_KEYS, c, strict=True)),
        **counted,
        **_derived(c, c[GMV] / gmv_scale, counted),
    }


def _span(rows: list[dict], kept: list[_Window], lo: int, hi: int, gmv_scale: int) -> dict:
    """The merged windows of a room with ``lo <= window_start < hi``."""
    inside = [i for i, r in enumerate(rows) if lo <= r["window_start"] < hi]
    span = {
        "span_start": lo,
        "span_end": hi,
        "windows": len(inside),
        **_merge([kept[i] for i in inside], gmv_scale, PEOPLE),
        "online_end": rows[inside[-1]]["online_end"] if inside else None,
        "online_peak": None,
        "online_peak_at": None,
    }
    for i in inside:  # oldest first: the first window reaching the peak keeps it
        if span["online_peak"] is None or rows[i]["online_peak"] > span["online_peak"]:
            span["online_peak"] = rows[i]["online_peak"]
            span["online_peak_at"] = rows[i]["online_peak_at"]
    return span


#: Keys of a rolling span that are not compared as a change.
_NOT_CHANGED = ("span_start", "span_end", "windows", "online_peak_at")


def _rolling(
    rows: list[dict], kept: list[_Window], size: int, spans: tuple[int, ...], gmv_scale: int
) -> dict:
    """For each N: the last N closed windows against the N before them, and the change."""
    if not rows:
        return {str(n): None for n in spans}
    end = rows[-1]["window_end"]
    out = {}
    for n in spans:
        current = _span(rows, kept, end - n * size, end, gmv_scale)
        previous = _span(rows, kept, end - 2 * n * size, end - n * size, gmv_scale)
        change = {
            k: None if v is None or previous[k] is None or previous[k] == 0 else v / previous[k] - 1
            for k, v in current.items()
            if k not in _NOT_CHANGED
        }
        out[str(n)] = {"current": current, "previous": previous, "change": change}
    return out


def _session(rows: list[dict], kept: list[_Window], online: _Online, gmv_scale: int) -> dict:
    """Everything applied to the room: counts, viewers and buyers, the online peak, the window
    with the highest GMV."""
    people = {"enter": "viewers", "paid": "buyers"}
    out = _merge(kept, gmv_scale, people)
    peak = online.peak(online.seconds[0] * 1000, online.seconds[-1] * 1000 + 1000)
    assert peak is not None  # a room has at least one applied event
    top = None
    if out["orders_paid"]:
        top = min(rows, key=lambda r: (-r["gmv_cents"], r["window_start"]))
    return {
        **out,
        "online_now": max(0, online.running[-1]),
        "online_peak": peak[0],
        "online_peak_at": peak[1],
        "peak_gmv_window_start": top["window_start"] if top else None,
        "peak_gmv_cents": top["gmv_cents"] if top else None,
    }


class Truth:
    """The truth of records taken in batches (``add``), so that it can be computed while the
    records are written; ``result()`` once they have all been taken."""

    def __init__(
        self,
        config: SimConfig,
        retention: int = 60,
        products_per_window: int = 50,
        rolling: tuple[int, ...] = (5, 10),
    ) -> None:
        self.config = config
        self.retention = retention
        self.products_per_window = products_per_window
        self.rolling = rolling
        self.max_ts: dict[tuple[str, int], int] = {}
        self.windows: dict[tuple[str, int], _Window] = {}
        # room -> second -> enters - leaves (each window of the room holds its room's)
        self.net_by_second: dict[str, dict[int, int]] = {}
        self.currency_of: dict[str, str] = {}
        # (room, type, order id) -> latest window
        self.paid_in: dict[tuple[str, str, str], int] = {}
        self.late: list[dict] = []
        self.late_by_room: Counter[str] = Counter()
        self.malformed: list[dict] = []
        self.foreign: list[dict] = []
        self.duplicates: Counter[str] = Counter()
        self.labels: dict[str, int] = {}  # not a Counter: a plain dict is faster to update
        self.applied = 0
        # (topic, key) -> (topic, partition): the clock a record moves
        self.where_of: dict[tuple[str, bytes], tuple[str, int]] = {}

    def add(self, records: Iterable[Fields]) -> None:
        """Take ``records`` (``Emitted``'s fields as tuples, as ``generate_slices`` gives
        them) into account, in their order; call it as often as needed, then ``result()``."""
        size = self.config.window_ms
        grace = self.config.grace_ms
        partitions = self.config.partitions
        horizon = self.retention * size
        max_ts = self.max_ts
        windows = self.windows
        net_by_second = self.net_by_second
        currency_of = self.currency_of
        paid_in = self.paid_in
        late = self.late
        late_by_room = self.late_by_room
        malformed = self.malformed
        foreign = self.foreign
        duplicates = self.duplicates
        labels = self.labels
        where_of = self.where_of
        applied = 0
        for topic, key, value, arrival_ms, label, event_id in records:
            labels[label] = labels.get(label, 0) + 1
            body, reason = check(topic, key, value)
            if body is None:
                malformed.append({"event_id": event_id, "topic": topic, "reason": reason})
                continue
            ts = body["ts"]
            room = body["room_id"]
            where = where_of.get((topic, key))
            if where is None:
                where = where_of[(topic, key)] = (topic, partition_of(key, partitions))
            top = max_ts.get(where)
            if top is None or ts > top:
                max_ts[where] = ts
            elif top - ts > grace:
                late.append(
                    {
                        "event_id": event_id,
                        "topic": topic,
                        "room_id": room,
                        "ts": ts,
                        "arrival_ms": arrival_ms,
                    }
                )
                late_by_room[room] += 1
                continue
            type_ = body["type"]
            start = ts - ts % size
            if topic == "orders":
                first = currency_of.setdefault(room, body["currency"])
                if body["currency"] != first:
                    foreign.append(
                        {"event_id": body["event_id"], "room_id": room, "reason": "currency"}
                    )
                    continue
            w = windows.get((room, start))
            if w is not None and body["event_id"] in w.ids:
                duplicates["event_id"] += 1
                continue
            if type_ == "paid" or type_ == "refunded":
                order_key = (room, type_, body["order_id"])
                before = paid_in.get(order_key)
                if before is not None and before >= start - horizon:
                    duplicates["order_id"] += 1
                    continue
                paid_in[order_key] = start if before is None else max(before, start)
            applied += 1
            if w is None:
                w = windows[(room, start)] = _Window(net_by_second.setdefault(room, {}))
            w.ids.add(body["event_id"])
            slot, net, amount, product_slot = _APPLY[type_]
            c = w.counts
            c[slot] += 1
            if amount is not None:
                c[amount[1]] += body[amount[0]]
            people = w.people.get(type_)
            if people is not None:
                people.add(body["user_id"])
            if product_slot is not None:
                product = w.products.get(body["product_id"])
                if product is None:
                    product = w.products[body["product_id"]] = [0] * len(PRODUCT_KEYS)
                product[product_slot] += 1
                if product_slot == P_PAID:
                    product[P_GMV] += body["amount_cents"]
            seconds = w.seconds
            second = ts // 1000
            seconds[second] = seconds.get(second, 0) + net
        self.applied += applied

    def result(self) -> dict:
        """The expected windows, rooms (rolling and session blocks), late, malformed and
        dead-lettered records of what was observed, every room's state beginning with its
        first record observed."""
        size = self.config.window_ms
        windows = self.windows
        currency_of = self.currency_of
        rolling = self.rolling
        products_per_window = self.products_per_window
        rows: list[dict] = []
        rooms: dict[str, dict] = {}
        by_room: dict[str, list[tuple[int, _Window]]] = {}
        for room, start in sorted(windows):
            by_room.setdefault(room, []).append((start, windows[(room, start)]))
        for room, kept_windows in by_room.items():
            code = currency_of.get(room)
            gmv_scale = 10 ** (CURRENCIES[code][1] if code else 2)
            online = _Online(self.net_by_second[room])
            room_rows = []
            for start, w in kept_windows:
                c = w.counts
                prev = windows.get((room, start - size))
                prev_paid = prev.counts[PAID] if prev else None
                prev_gmv = prev.counts[GMV] if prev else None
                people = {key: len(w.people[type_]) for type_, key in PEOPLE.items()}
                room_rows.append(
                    {
                        "room_id": room,
                        "window_start": start,
                        "window_end": start + size,
                        **dict(zip(COUNT_KEYS, c, strict=True)),
                        "unique_viewers": people["viewers"],
                        **people,
                        **_derived(c, c[GMV] / gmv_scale, people),
                        "order_growth": _growth(c[PAID], prev_paid),
                        "gmv_growth": _growth(c[GMV], prev_gmv),
                        **online.window(start, start + size),
                        "products": _products(w.products, products_per_window),
                    }
                )
            kept = [w for _, w in kept_windows]
            rooms[room] = {
                "rolling": _rolling(room_rows, kept, size, rolling, gmv_scale),
                "session": _session(room_rows, kept, online, gmv_scale),
            }
            rows += room_rows

        config = self.config
        settings = asdict(config)
        settings["incidents"] = list(config.incidents)
        settings["currencies"] = list(config.currencies)
        return {
            "config": settings,
            "windows": rows,
            "rooms": rooms,
            "currencies": dict(sorted(currency_of.items())),
            "late": self.late,
            "late_by_room": dict(sorted(self.late_by_room.items())),
            "malformed": self.malformed,
            "dead_letters": self.foreign,
            "duplicates": dict(sorted(self.duplicates.items())),
            "incidents": incidents(config) if config.end_ms is not None else [],
            "totals": {
                "emitted": sum(self.labels.values()),
                "ok": self.labels.get("ok", 0),
                "out_of_order": self.labels.get("out_of_order", 0),
                "late": self.labels.get("late", 0),
                "malformed": self.labels.get("malformed", 0),
                "duplicate": self.labels.get("duplicate", 0),
                "repeated_payment": self.labels.get("repeated_payment", 0),
                "foreign_currency": self.labels.get("foreign_currency", 0),
                "applied": self.applied,
                "late_by_contract": len(self.late),
                "malformed_by_contract": len(self.malformed),
            },
        }


def compute_truth(
    config: SimConfig,
    emitted: Iterable[Emitted],
    retention: int = 60,
    products_per_window: int = 50,
    rolling: tuple[int, ...] = (5, 10),
) -> dict:
    """The truth (``Truth.result``) of ``emitted``."""
    truth = Truth(config, retention, products_per_window, rolling)
    truth.add((e.topic, e.key, e.value, e.arrival_ms, e.label, e.event_id) for e in emitted)
    return truth.result()

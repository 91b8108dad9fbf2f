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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict

import orjson

from streams.core.currencies import CURRENCIES
from streams.core.partitioner import partition_of
from streams.sim.generate import Emitted
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


def _text(body: dict, name: str, reserved: bool = False) -> bool:
    v = body.get(name)
    return (
        isinstance(v, str)
        and 1 <= len(v) <= ID_MAX
        and not any(ord(ch) < 32 or 127 <= ord(ch) <= 159 for ch in v)
        and not (reserved and v.startswith("__"))
    )


def _integer(body: dict, name: str, minimum: int, maximum: int) -> bool:
    v = body.get(name)
    if type(v) is float and v.is_integer():
        v = int(v)
    return type(v) is int and minimum <= v <= maximum


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
    if not isinstance(body, dict) or _depth(body) > DEPTH_MAX:
        return None, "schema"
    type_ = body.get("type")
    if type_ not in TYPES[topic]:
        return None, "schema"
    if not (
        _text(body, "event_id")
        and _text(body, "room_id", reserved=True)
        and _text(body, "user_id")
        and _integer(body, "ts", 0, TS_MAX)
    ):
        return None, "schema"
    if type_ == "leave":
        if not _integer(body, "watch_ms", 0, WATCH_MAX):
            return None, "schema"
    elif topic == "clicks":
        if not _text(body, "product_id", reserved=True):
            return None, "schema"
    elif topic == "orders":
        currency = body.get("currency")
        if not (
            _text(body, "order_id")
            and _text(body, "product_id", reserved=True)
            and _integer(body, "quantity", 1, QUANTITY_MAX)
            and _integer(body, "amount_cents", 0, AMOUNT_MAX)
            and isinstance(currency, str)
            and currency in CURRENCIES
        ):
            return None, "schema"
    if key is None or key != body["room_id"].encode():
        return None, "key"
    for name in ("ts", "watch_ms", "amount_cents", "quantity"):
        if type(body.get(name)) is float:
            body[name] = int(body[name])
    return body, None


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _growth(current: int, previous: int | None) -> float | None:
    return None if not previous else current / previous - 1


def compute_truth(config: SimConfig, emitted: Iterable[Emitted], retention: int = 60) -> dict:
    """The expected windows, late, malformed and dead-lettered records of ``emitted``."""
    size = config.window_ms
    grace = config.grace_ms
    partitions = config.partitions
    horizon = retention * size
    max_ts: dict[tuple[str, int], int] = {}
    windows: dict[tuple[str, int], list] = {}
    currency_of: dict[str, str] = {}
    paid_in: dict[tuple[str, str, str], int] = {}  # (room, type, order id) -> latest window
    late: list[dict] = []
    late_by_room: Counter[str] = Counter()
    malformed: list[dict] = []
    foreign: list[dict] = []
    duplicates: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    applied = 0

    for e in emitted:
        labels[e.label] += 1
        body, reason = check(e.topic, e.key, e.value)
        if body is None:
            malformed.append({"event_id": e.event_id, "topic": e.topic, "reason": reason})
            continue
        ts = body["ts"]
        room = body["room_id"]
        where = (e.topic, partition_of(e.key, partitions))
        top = max_ts.get(where)
        if top is None or ts > top:
            max_ts[where] = ts
        elif top - ts > grace:
            late.append(
                {
                    "event_id": e.event_id,
                    "topic": e.topic,
                    "room_id": room,
                    "ts": ts,
                    "arrival_ms": e.arrival_ms,
                }
            )
            late_by_room[room] += 1
            continue
        type_ = body["type"]
        start = ts - ts % size
        if e.topic == "orders":
            first = currency_of.setdefault(room, body["currency"])
            if body["currency"] != first:
                foreign.append(
                    {"event_id": body["event_id"], "room_id": room, "reason": "currency"}
                )
                continue
        w = windows.get((room, start))
        if w is not None and body["event_id"] in w[3]:
            duplicates["event_id"] += 1
            continue
        order_key = (room, type_, body["order_id"]) if type_ in ("paid", "refunded") else None
        if order_key is not None:
            before = paid_in.get(order_key)
            if before is not None and before >= start - horizon:
                duplicates["order_id"] += 1
                continue
            paid_in[order_key] = start if before is None else max(before, start)
        applied += 1
        if w is None:
            w = windows[(room, start)] = [[0] * _SLOTS, set(), {}, set()]
        w[3].add(body["event_id"])
        c = w[0]
        if type_ == "impression":
            c[IMPRESSIONS] += 1
        elif type_ == "enter":
            c[ENTERS] += 1
            w[1].add(body["user_id"])
        elif type_ == "leave":
            c[LEAVES] += 1
            c[WATCH_MS] += body["watch_ms"]
        elif type_ == "product_impression":
            c[PRODUCT_IMPRESSIONS] += 1
        elif type_ == "product_click":
            c[PRODUCT_CLICKS] += 1
            w[2].setdefault(body["product_id"], [0, 0])[0] += 1
        elif type_ == "created":
            c[CREATED] += 1
            w[2].setdefault(body["product_id"], [0, 0])[1] += 1
        elif type_ == "paid":
            c[PAID] += 1
            c[GMV] += body["amount_cents"]
        else:  # refunded
            c[REFUNDS] += 1
            c[REFUND_CENTS] += body["amount_cents"]

    rows = []
    for room, start in sorted(windows):
        c, viewers, products, _ = windows[(room, start)]
        prev = windows.get((room, start - size))
        prev_paid = prev[0][PAID] if prev else None
        prev_gmv = prev[0][GMV] if prev else None
        code = currency_of.get(room)
        gmv = c[GMV] / 10 ** (CURRENCIES[code][1] if code else 2)
        rows.append(
            {
                "room_id": room,
                "window_start": start,
                "window_end": start + size,
                "impressions": c[IMPRESSIONS],
                "enters": c[ENTERS],
                "unique_viewers": len(viewers),
                "leaves": c[LEAVES],
                "watch_ms_total": c[WATCH_MS],
                "product_impressions": c[PRODUCT_IMPRESSIONS],
                "product_clicks": c[PRODUCT_CLICKS],
                "orders_created": c[CREATED],
                "orders_paid": c[PAID],
                "gmv_cents": c[GMV],
                "refunds": c[REFUNDS],
                "refund_cents": c[REFUND_CENTS],
                "enter_rate": _ratio(c[ENTERS], c[IMPRESSIONS]),
                "ctr": _ratio(c[PRODUCT_CLICKS], c[PRODUCT_IMPRESSIONS]),
                "conversion_rate": _ratio(c[PAID], c[ENTERS]),
                "click_to_order_rate": _ratio(c[PAID], c[PRODUCT_CLICKS]),
                "gpm": _ratio(gmv * 1000, c[ENTERS]),
                "aov": _ratio(gmv, c[PAID]),
                "order_growth": _growth(c[PAID], prev_paid),
                "gmv_growth": _growth(c[GMV], prev_gmv),
                # product id -> [clicks, orders created]: what the detector's stock-out test
                # reads (the worker does not serve it)
                "products": dict(sorted(products.items())),
            }
        )

    settings = asdict(config)
    settings["incidents"] = list(config.incidents)
    settings["currencies"] = list(config.currencies)
    return {
        "config": settings,
        "windows": rows,
        "currencies": dict(sorted(currency_of.items())),
        "late": late,
        "late_by_room": dict(sorted(late_by_room.items())),
        "malformed": malformed,
        "dead_letters": foreign,
        "duplicates": dict(sorted(duplicates.items())),
        "incidents": incidents(config) if config.end_ms is not None else [],
        "totals": {
            "emitted": sum(labels.values()),
            "ok": labels["ok"],
            "out_of_order": labels["out_of_order"],
            "late": labels["late"],
            "malformed": labels["malformed"],
            "duplicate": labels["duplicate"],
            "repeated_payment": labels["repeated_payment"],
            "foreign_currency": labels["foreign_currency"],
            "applied": applied,
            "late_by_contract": len(late),
            "malformed_by_contract": len(malformed),
        },
    }

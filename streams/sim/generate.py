"""Turn the planned room sessions into the records a producer would send, in arrival order.

How it works
------------
Event time is cut into slices of ``SLICE_MS`` (10 s). For every slice, each room draws its
viewers' arrivals (a Poisson process whose intensity is constant within each second and
follows the room's arc) and walks each viewer through the whole funnel at once: impression,
maybe enter, product cards while watching, clicks, orders, payment, refund, leave. Every
record goes into the bucket of the slice its *arrival* time falls in. A viewer who arrives in
slice j only produces records at or after that time, so once slice j has been walked by every
room, bucket j is complete: it is sorted by arrival (stable, so ties keep generation order)
and yielded. Memory therefore holds one slice plus the records scheduled for later (leaves of
long watchers, payments, refunds, delayed deliveries), not the session.

Delivery (``arrival_ms`` = event time + delay), one draw per record:

* ``malformed`` (``malformed_share``): the record is replaced by invalid JSON, JSON that breaks
  the schema, or a valid event without a key; delivered at the event time;
* ``late`` (``late_share``): delay uniform in grace + 1 s .. grace + 30 s;
* ``out_of_order`` (``out_of_order_share``): delay uniform in 1 .. grace ms;
* ``ok``: no delay.

Besides, from random streams of their own (so the records above do not change with them):

* ``duplicate`` (``duplicate_share``): a valid record sent once more, 0-2 s after the first
  (a producer retry), bytes unchanged;
* ``repeated_payment`` (``repeated_payment_share`` of the payments): a ``paid`` callback
  sent again 1-4 s later with a new ``event_id`` and the same ``order_id``;
* ``foreign_currency`` (``foreign_currency_share`` of the orders created): an extra order in
  another currency than the room's, which the contract of one currency per room rejects.

No arrival is later than ``end_ms + 30 s`` (a late delay that cannot fit becomes an
out-of-order one, an out-of-order one that cannot fit becomes ``ok``); events with a time at
or after ``end_ms`` are not generated.

Throughput: ``python -m streams.sim.generate [rooms minutes rate]`` writes the values to
a temporary file and prints events/s (runpy warns that the package imported the module first;
harmless); ``python -m bench.simulate`` stores the generator's CPU time per record beside that
of ``livepulse simulate``'s other parts in ``bench/results/``.
"""

from __future__ import annotations

import math
import sys
import time
from bisect import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate, count
from operator import itemgetter
from random import Random

import msgspec

from streams.sim.sessions import (
    CONVERSION_DECAY_FLOOR,
    DUPLICATE_DELAY_MS,
    FIRST_CARD_MEAN_S,
    FLASH_SALE_ORDER_BOOST,
    MINOR_PER_FEN,
    PAYMENT_OUTAGE_SUCCESS,
    QUANTITY_WEIGHTS,
    REFUND_MEAN_MS,
    REPEATED_PAYMENT_DELAY_MS,
    RETURNING_ENTER_RATE,
    RETURNING_SHARE,
    WATCH_CAP_MS,
    RoomPlan,
    SimConfig,
    plan_session,
)

SLICE_MS = 10_000
MAX_DELIVERY_DELAY_MS = 30_000  # no arrival after end_ms + this
LATE_MIN_EXTRA_MS = 1_000
LATE_MAX_EXTRA_MS = 30_000
RETURNING_RING = 1_000  # recent entering viewers per room who may come back

# funnel step delays (ms)
ENTER_AFTER_IMPRESSION = (300, 1_500.0)  # fixed + Exp(mean)
CLICK_AFTER_CARD = (500, 3_000.0)
CHECKOUT_MEDIAN_MS, CHECKOUT_SIGMA = 10_000.0, 0.8  # click -> created: 2 s + log-normal
PAY_MEDIAN_MS, PAY_SIGMA = 15_000.0, 0.9  # created -> paid: 1 s + log-normal


@dataclass(frozen=True, slots=True)
class Emitted:
    """One record as sent: logical topic, key, value bytes, when it arrives, and why."""

    topic: str  # "views" | "clicks" | "orders"
    key: bytes | None  # room_id UTF-8; None for the "missing key" malformed kind
    value: bytes  # exactly as sent
    arrival_ms: int  # records are yielded in non-decreasing arrival_ms
    label: str  # "ok" | "out_of_order" | "late" | "malformed"
    event_id: str  # synthetic for malformed ones


#: ``Emitted``'s fields as a tuple, in its order.
Fields = tuple[str, bytes | None, bytes, int, str, str]


_new = object.__new__
_SET = tuple(
    getattr(Emitted, name).__set__
    for name in ("topic", "key", "value", "arrival_ms", "label", "event_id")
)


def _make(rec: Fields, _new=_new, _set=_SET) -> Emitted:
    """Build an Emitted from its field tuple without the frozen __init__ (about 3x faster)."""
    e = _new(Emitted)
    topic, key, value, arrival, label, event_id = rec
    s_topic, s_key, s_value, s_arrival, s_label, s_id = _set
    s_topic(e, topic)
    s_key(e, key)
    s_value(e, value)
    s_arrival(e, arrival)
    s_label(e, label)
    s_id(e, event_id)
    return e


_ARRIVAL = itemgetter(3)

# msgspec rather than orjson for the values: the same bytes at the same speed, but orjson 3.13's
# results keep their 2-4 KiB output buffer each, which multiplied memory by ten for callers
# (and buckets) that hold many records.
_encode = msgspec.json.Encoder().encode


def generate(config: SimConfig) -> Iterator[Emitted]:
    """Every record of the session, in non-decreasing ``arrival_ms``; deterministic."""
    for batch in generate_slices(config):
        yield from map(_make, batch)


def generate_slices(config: SimConfig) -> Iterator[list[Fields]]:
    """The records of ``generate``, in the same order, as lists of field tuples (one list per
    slice of arrival time): for consumers of millions of records, which need neither an object
    nor a step of this generator per record."""
    plans = plan_session(config)
    start, end = config.bounds()
    buckets: defaultdict[int, list[Fields]] = defaultdict(list)
    users = count(1)
    walkers = [_room_walker(plan, config, start, end, buckets, users) for plan in plans]
    slices = -(-(end - start) // SLICE_MS)
    for j in range(slices):
        t0 = start + j * SLICE_MS
        t1 = min(t0 + SLICE_MS, end)
        for walk in walkers:
            walk(t0, t1)
        batch = buckets.pop(j, None)
        if batch:
            batch.sort(key=_ARRIVAL)
            yield batch
    for j in sorted(buckets):
        batch = buckets.pop(j)
        batch.sort(key=_ARRIVAL)
        yield batch


def _room_walker(
    plan: RoomPlan,
    config: SimConfig,
    start: int,
    end: int,
    buckets: defaultdict[int, list[Fields]],
    users: Iterator[int],
) -> Callable[[int, int], None]:
    """A function that walks every viewer of ``plan`` arriving in ``[t0, t1)``."""
    rng = Random(f"livepulse-sim:{config.seed}:traffic:{plan.index}")
    random = rng.random
    expo = rng.expovariate
    lognorm = rng.lognormvariate
    randint = rng.randint
    dumps = _encode
    extra = Random(f"livepulse-sim:{config.seed}:extra:{plan.index}")
    duplicate_share = config.duplicate_share
    repeat_share = config.repeated_payment_share
    foreign_share = config.foreign_currency_share
    foreign = sorted(set(MINOR_PER_FEN) - {plan.currency}) or [plan.currency]
    currency = plan.currency

    room = plan.room_id
    key = room.encode()
    events = count(1)
    orders = count(1)
    bad = count(1)
    oddities = count(1)

    malformed_below = config.malformed_share
    late_below = malformed_below + config.late_share
    special_below = late_below + config.out_of_order_share
    grace = config.grace_ms
    last_arrival = end + MAX_DELIVERY_DELAY_MS

    def put(topic: str, value: bytes, arrival: int, label: str, event_id: str) -> None:
        buckets[(arrival - start) // SLICE_MS].append((topic, key, value, arrival, label, event_id))
        if duplicate_share and extra.random() < duplicate_share:
            again = min(arrival + extra.randint(*DUPLICATE_DELAY_MS), last_arrival)
            buckets[(again - start) // SLICE_MS].append(
                (topic, key, value, again, "duplicate", event_id)
            )

    def emit(topic: str, body: dict) -> None:
        ts = body["ts"]
        u = random()
        if u >= special_below:
            put(topic, dumps(body), ts, "ok", body["event_id"])
            return
        if u < malformed_below:
            rec_key, value, event_id = _malformed(rng, topic, body, key, f"{room}-m{next(bad)}")
            buckets[(ts - start) // SLICE_MS].append(
                (topic, rec_key, value, ts, "malformed", event_id)
            )
            return
        room_left = last_arrival - ts
        label, delay = "ok", 0
        if u < late_below:
            lo = grace + LATE_MIN_EXTRA_MS
            hi = min(grace + LATE_MAX_EXTRA_MS, room_left)
            if hi >= lo:
                label, delay = "late", randint(lo, hi)
        if not delay:
            hi = min(grace, room_left)
            if hi >= 1:
                label, delay = "out_of_order", randint(1, hi)
        put(topic, dumps(body), ts + delay, label, body["event_id"])

    # funnel parameters, bound to locals for the hot loop
    enter_rate = plan.enter_rate
    mu, sigma = plan.watch_mu, plan.watch_sigma
    card_rate = 1.0 / plan.card_interval_ms
    first_card_rate = 1.0 / (FIRST_CARD_MEAN_S * 1000)
    ctr = plan.ctr
    products = plan.product_ids
    prices = plan.prices_cents
    cum_popularity = list(accumulate(plan.popularity))
    popularity_total = cum_popularity[-1]
    cum_popularity[-1] = math.inf  # bisect never runs off the end
    n_products = len(products)
    quantities = [q for q, _ in QUANTITY_WEIGHTS]
    cum_quantity = list(accumulate(w for _, w in QUANTITY_WEIGHTS))
    cum_quantity[-1] = math.inf
    quantity_total = sum(w for _, w in QUANTITY_WEIGHTS)
    enter_fixed, enter_rate_exp = ENTER_AFTER_IMPRESSION[0], 1.0 / ENTER_AFTER_IMPRESSION[1]
    click_fixed, click_rate_exp = CLICK_AFTER_CARD[0], 1.0 / CLICK_AFTER_CARD[1]
    checkout_mu, pay_mu = math.log(CHECKOUT_MEDIAN_MS), math.log(PAY_MEDIAN_MS)
    refund_rate_exp = 1.0 / REFUND_MEAN_MS
    click_to_order = plan.click_to_order
    pay_success = plan.pay_success
    refund_rate = plan.refund_rate
    flash_sales = [(s0, s1) for s0, s1, _ in plan.flash_sales]
    best = products.index(plan.best_seller)

    def window(kind: str) -> tuple[int, int, float] | None:
        for i in plan.incidents:
            if i.kind == kind:
                return i.start_ms, i.end_ms, i.factor
        return None

    outage = window("payment_outage")
    stockout = window("stockout")
    cut = window("traffic_cut")
    decay = window("conversion_decay")

    ring: list[str] = []

    def order(user: str, k: int, tc: int) -> None:
        p = click_to_order
        for s0, s1 in flash_sales:
            if s0 <= tc < s1:
                p *= FLASH_SALE_ORDER_BOOST
                break
        if decay is not None and decay[0] <= tc < decay[1]:
            p *= 1.0 - (1.0 - CONVERSION_DECAY_FLOOR) * (tc - decay[0]) / (decay[1] - decay[0])
        if random() >= p:
            return
        to = tc + 2_000 + int(lognorm(checkout_mu, CHECKOUT_SIGMA))
        if to >= end:
            return
        if stockout is not None and k == best and stockout[0] <= to < stockout[1]:
            return  # sold out: the click leads nowhere
        q = quantities[bisect(cum_quantity, random() * quantity_total)]
        body = {
            "event_id": f"{room}-e{next(events)}",
            "room_id": room,
            "user_id": user,
            "ts": to,
            "type": "created",
            "order_id": f"{room}-o{next(orders)}",
            "product_id": products[k],
            "quantity": q,
            "amount_cents": prices[k] * q,
            "currency": currency,
        }
        emit("orders", body)
        if foreign_share and extra.random() < foreign_share:
            odd = {
                **body,
                "event_id": f"{room}-x{next(oddities)}",
                "order_id": f"{room}-xo{next(oddities)}",
                "currency": extra.choice(foreign),
            }
            buckets[(to - start) // SLICE_MS].append(
                ("orders", key, dumps(odd), to, "foreign_currency", odd["event_id"])
            )
        if random() >= pay_success:
            return
        tp = to + 1_000 + int(lognorm(pay_mu, PAY_SIGMA))
        if tp >= end:
            return
        if (
            outage is not None
            and outage[0] <= tp < outage[1]
            and random() >= PAYMENT_OUTAGE_SUCCESS
        ):
            return
        body = {**body, "event_id": f"{room}-e{next(events)}", "ts": tp, "type": "paid"}
        emit("orders", body)
        if repeat_share and extra.random() < repeat_share:
            tr = tp + extra.randint(*REPEATED_PAYMENT_DELAY_MS)
            if tr < end:
                again = {**body, "event_id": f"{room}-r{next(oddities)}", "ts": tr}
                buckets[(tr - start) // SLICE_MS].append(
                    ("orders", key, dumps(again), tr, "repeated_payment", again["event_id"])
                )
        if random() < refund_rate:
            tr = tp + int(expo(refund_rate_exp))
            if tr < end:
                emit(
                    "orders",
                    {**body, "event_id": f"{room}-e{next(events)}", "ts": tr, "type": "refunded"},
                )

    def viewer(t: int) -> None:
        if ring and random() < RETURNING_SHARE:
            user = ring[int(random() * len(ring))]
            p = RETURNING_ENTER_RATE
        else:
            user = f"u-{next(users)}"
            p = enter_rate
        emit(
            "views",
            {
                "event_id": f"{room}-e{next(events)}",
                "room_id": room,
                "user_id": user,
                "ts": t,
                "type": "impression",
            },
        )
        if cut is not None and cut[0] <= t < cut[1]:
            p *= cut[2]
        if random() >= p:
            return
        te = t + enter_fixed + int(expo(enter_rate_exp))
        if te >= end:
            return
        emit(
            "views",
            {
                "event_id": f"{room}-e{next(events)}",
                "room_id": room,
                "user_id": user,
                "ts": te,
                "type": "enter",
            },
        )
        if len(ring) < RETURNING_RING:
            ring.append(user)
        else:
            ring[int(random() * RETURNING_RING)] = user
        watch = min(int(lognorm(mu, sigma)), WATCH_CAP_MS)
        tl = te + watch
        if tl < end:
            emit(
                "views",
                {
                    "event_id": f"{room}-e{next(events)}",
                    "room_id": room,
                    "user_id": user,
                    "ts": tl,
                    "type": "leave",
                    "watch_ms": watch,
                },
            )
        stop = min(tl, end)
        x = te + expo(first_card_rate)
        while x < stop:
            tc = int(x)
            k = bisect(cum_popularity, random() * popularity_total)
            if k >= n_products:
                k = n_products - 1
            emit(
                "clicks",
                {
                    "event_id": f"{room}-e{next(events)}",
                    "room_id": room,
                    "user_id": user,
                    "ts": tc,
                    "type": "product_impression",
                    "product_id": products[k],
                },
            )
            if random() < ctr:
                tk = tc + click_fixed + int(expo(click_rate_exp))
                if tk < end:
                    emit(
                        "clicks",
                        {
                            "event_id": f"{room}-e{next(events)}",
                            "room_id": room,
                            "user_id": user,
                            "ts": tk,
                            "type": "product_click",
                            "product_id": products[k],
                        },
                    )
                    order(user, k, tk)
            x += expo(card_rate)

    base = plan.impressions_per_s
    arc = plan.arc

    def walk(t0: int, t1: int) -> None:
        s = t0
        while s < t1:
            s_end = min(s + 1000, t1)
            lam = base * arc(s + 500, start, end) / 1000.0  # arrivals per ms in this second
            if lam > 0:
                x = s + expo(lam)
                while x < s_end:
                    viewer(int(x))
                    x += expo(lam)
            s = s_end

    return walk


def _malformed(
    rng: Random, topic: str, body: dict, key: bytes, synthetic_id: str
) -> tuple[bytes | None, bytes, str]:
    """``(key, value, event_id)`` of a broken record standing in for ``body``."""
    body = {**body, "event_id": synthetic_id}
    kind = rng.randrange(3)
    if kind == 0:  # not JSON
        good = _encode(body)
        variant = rng.randrange(3)
        if variant == 0:
            return key, good[: rng.randint(1, len(good) - 2)], synthetic_id  # truncated
        if variant == 1:
            return key, b"\xff\xfe" + good, synthetic_id  # not UTF-8
        return key, b"event " + synthetic_id.encode(), synthetic_id  # plain text
    if kind == 1:  # JSON, but not contract v1
        options = ["no_ts", "ts_text", "empty_user", "bad_type"]
        if topic == "orders":
            options += ["quantity_0", "currency_lower", "negative_amount"]
        elif topic == "clicks":
            options += ["no_product"]
        elif body["type"] == "leave":
            options += ["negative_watch"]
        broken = rng.choice(options)
        if broken == "no_ts":
            del body["ts"]
        elif broken == "ts_text":
            body["ts"] = str(body["ts"])
        elif broken == "empty_user":
            body["user_id"] = ""
        elif broken == "bad_type":
            body["type"] = "bogus"
        elif broken == "quantity_0":
            body["quantity"] = 0
        elif broken == "currency_lower":
            body["currency"] = "cny"
        elif broken == "negative_amount":
            body["amount_cents"] = -body["amount_cents"] - 1
        elif broken == "no_product":
            del body["product_id"]
        else:  # negative_watch
            body["watch_ms"] = -1
        return key, _encode(body), synthetic_id
    return None, _encode(body), synthetic_id  # valid event, no key


def _bench(argv: list[str]) -> None:
    """``python -m streams.sim.generate [rooms minutes rate]``: events/s into a file."""
    import tempfile

    rooms, minutes, rate = (int(argv[0]), float(argv[1]), float(argv[2])) if argv else (50, 5, 2000)
    config = SimConfig(seed=1, rooms=rooms, minutes=minutes, rate=rate, end_ms=1_700_000_000_000)
    n = 0
    began = time.perf_counter()
    with tempfile.TemporaryFile() as f:
        write = f.write
        for e in generate(config):
            write(e.value)
            write(b"\n")
            n += 1
    took = time.perf_counter() - began
    print(
        f"rooms={rooms} minutes={minutes} rate={rate}: {n} events "
        f"({n / (minutes * 60):.0f}/s of event time) in {took:.2f} s = {n / took:,.0f} events/s"
    )


if __name__ == "__main__":
    _bench(sys.argv[1:])

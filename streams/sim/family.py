"""A second traffic and incident model, for detection curves (``evaluate-alerts --sweep``).

The detector's thresholds were set on the simulator of :mod:`streams.sim.sessions`; a
detector is judged by incidents whose shape it has not seen. This model shares no code or
shape with that one: its own funnel, its own noise (the level of a room drifts as a random
walk from minute to minute instead of a sine), its own flash sales and tails, and one
parametric family of incidents:

* **stage**: which step breaks: ``audience`` (fewer viewers arrive: impressions, and so
  everything after them), ``enter_rate`` (shown, but fewer get in), ``click_through``
  (product cards shown, fewer clicked), ``click_to_order`` (clicked, fewer ordered),
  ``payment`` (ordered, fewer paid);
* **drop**: the share of that step's rate that goes away (0.2 to 1.0);
* **duration**: whole windows at full depth (1 to 6);
* **onset**: ``0`` (a cliff) or a linear ramp over 1 to 3 windows before the full depth; the
  step comes back at once after it.

A room has a steady size in enters per minute (50, 200, 1 000) and draws its funnel rates
from ranges (below). Incident sessions have a ramp-up, the drift and flash sales placed away
from the incident; incident-free sessions are longer and have flash sales, a ramp-up and a
gradual tail (the audience decays by 8-18 % a minute over the last 8-15 minutes).

=========================  ==============================
enter rate                 U(30 %, 50 %) of impressions
product cards              1 per enter, after Exp(8 s)
card click-through         U(20 %, 40 %), after U(0.5, 4) s
click -> order created     U(5 %, 12 %), after 3 s + Gamma(2, 5 s)
created -> paid            U(70 %, 95 %), after 2 s + Gamma(2, 8 s)
flash sale                 1-5 min, 2-6x the audience, 1.3-1.8x click -> order
drift                      log level a random walk, 7 % a minute, pulled back to 0
delivery                   0-3 s after the event (within the grace period)
=========================  ==============================

Deterministic from the seed; records are yielded in arrival order, minute by minute, so a
session of many rooms needs no more memory than a minute of it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from random import Random

from streams.sim.generate import Emitted

STAGES = ("audience", "enter_rate", "click_through", "click_to_order", "payment")
SIZES = (50, 200, 1000)
DROPS = (0.2, 0.35, 0.5, 0.75, 1.0)
DURATIONS = (1, 2, 3, 6)
ONSETS = (0, 1, 2, 3)
WINDOW_MS = 60_000
PRODUCTS = 8


@dataclass(frozen=True)
class Incident:
    """One incident: ``start_ms`` the onset begins, full depth ``onset`` windows later for
    ``duration`` windows, ``end_ms`` when the step is back."""

    room_id: str
    stage: str
    drop: float
    duration: int
    onset: int
    size: int
    start_ms: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + (self.onset + self.duration) * WINDOW_MS

    def factor(self, t_ms: float) -> float:
        """The share of the stage's rate left at ``t_ms`` (1 outside the incident)."""
        x = t_ms - self.start_ms
        if x < 0 or t_ms >= self.end_ms:
            return 1.0
        ramp = self.onset * WINDOW_MS
        depth = min(1.0, (x + WINDOW_MS / 2) / (ramp + WINDOW_MS / 2)) if ramp else 1.0
        return 1.0 - self.drop * depth

    def as_dict(self) -> dict:
        return {
            "room_id": self.room_id,
            "stage": self.stage,
            "drop": self.drop,
            "duration": self.duration,
            "onset": self.onset,
            "size": self.size,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }


@dataclass
class Room:
    room_id: str
    size: int  # enters per minute at steady level
    enter_rate: float
    ctr: float
    order_rate: float
    pay_rate: float
    prices: list[int]
    popularity: list[float]
    ramp_ms: int
    tail: tuple[int, float] | None  # (start ms, decay per minute) or None
    flash_sales: list[tuple[int, int, float, float]]  # start, end, audience x, order x
    drift: list[float]  # log level per minute
    incident: Incident | None = None


@dataclass(frozen=True)
class SweepSession:
    """One session of the sweep: ``rooms`` rooms, each with its own incident (or none)."""

    seed: int
    minutes: int
    end_ms: int
    incidents: tuple[Incident, ...] = ()  # one per room, by room
    quiet_rooms: int = 0  # incident-free rooms (when ``incidents`` is empty)
    partitions: int = 4
    grace_ms: int = 5_000
    currency: str = "CNY"
    rooms_sizes: tuple[int, ...] = field(default=())  # sizes of the quiet rooms

    @property
    def start_ms(self) -> int:
        return self.end_ms - self.minutes * WINDOW_MS

    def bounds(self) -> tuple[int, int]:
        return self.start_ms, self.end_ms


def room_id(seed: int, index: int) -> str:
    return f"s{seed}-r{index:03d}"


def plan_incidents(
    seed: int,
    stage: str,
    end_ms: int,
    minutes: int = 30,
    sizes: tuple[int, ...] = SIZES,
    drops: tuple[float, ...] = DROPS,
    durations: tuple[int, ...] = DURATIONS,
) -> tuple[Incident, ...]:
    """One room per (drop, duration, size) of ``stage``; onset and start drawn per room.

    Incidents start between minute 12 and 16 (after the ramp-up and ten windows of history)
    at a random second; they end by minute 25 at the latest.
    """
    rng = Random(f"incidents-{seed}-{stage}")
    start = end_ms - minutes * WINDOW_MS
    out = []
    for i, (drop, duration, size) in enumerate(
        (d, k, s) for d in drops for k in durations for s in sizes
    ):
        onset = rng.choice(ONSETS)
        at = start + rng.randint(12 * 60, 16 * 60) * 1000 + rng.randint(0, 999)
        out.append(Incident(room_id(seed, i), stage, drop, duration, onset, size, at))
    return tuple(out)


def _plan_room(session: SweepSession, index: int, size: int, inc: Incident | None) -> Room:
    rng = Random(f"room-{session.seed}-{index}-{size}")
    start, end = session.bounds()
    minutes = session.minutes
    ramp_ms = rng.randint(2 * 60, 6 * 60) * 1000
    tail = None
    if inc is None:  # incident-free sessions wind down gradually
        tail_min = rng.randint(8, 15)
        tail = (end - tail_min * WINDOW_MS, rng.uniform(0.08, 0.18))
    # flash sales keep away from the incident and from the tail (a room winding down does
    # not start a sale)
    busy = [] if inc is None else [(inc.start_ms - 3 * WINDOW_MS, inc.end_ms + 3 * WINDOW_MS)]
    if tail is not None:
        busy.append((tail[0] - 2 * WINDOW_MS, end))
    sales: list[tuple[int, int, float, float]] = []
    for _ in range(rng.randint(1, 3) if inc is None else rng.randint(0, 1)):
        length = rng.randint(60, 300) * 1000
        at = start + rng.randint(ramp_ms // 1000, max(ramp_ms // 1000, minutes * 60 - 400)) * 1000
        span = (at - WINDOW_MS, at + length + WINDOW_MS)
        if any(a < span[1] and span[0] < b for a, b in busy):
            continue
        busy.append(span)
        sales.append((at, at + length, rng.uniform(2.0, 6.0), rng.uniform(1.3, 1.8)))
    drift, level = [], 0.0
    for _ in range(minutes + 1):
        level = 0.8 * level + rng.gauss(0.0, 0.07)
        drift.append(level)
    prices = [rng.randint(20, 300) * 100 for _ in range(PRODUCTS)]
    popularity = [1.0 / (k + 1) ** 1.2 for k in range(PRODUCTS)]
    return Room(
        room_id=inc.room_id if inc is not None else room_id(session.seed, index),
        size=size,
        enter_rate=rng.uniform(0.3, 0.5),
        ctr=rng.uniform(0.2, 0.4),
        order_rate=rng.uniform(0.05, 0.12),
        pay_rate=rng.uniform(0.7, 0.95),
        prices=prices,
        popularity=popularity,
        ramp_ms=ramp_ms,
        tail=tail,
        flash_sales=sales,
        drift=drift,
        incident=inc,
    )


def rooms_of(session: SweepSession) -> list[Room]:
    if session.incidents:
        return [_plan_room(session, i, inc.size, inc) for i, inc in enumerate(session.incidents)]
    sizes = session.rooms_sizes or SIZES
    return [_plan_room(session, i, sizes[i % len(sizes)], None) for i in range(session.quiet_rooms)]


def _audience(room: Room, t: float, start: int) -> tuple[float, float]:
    """(impressions per ms, click -> order boost) at ``t``."""
    x = t - start
    minute = min(int(x // WINDOW_MS), len(room.drift) - 1)
    level = math.exp(room.drift[minute])
    if x < room.ramp_ms:
        level *= 0.2 + 0.8 * x / room.ramp_ms
    if room.tail is not None and t >= room.tail[0]:
        level *= (1.0 - room.tail[1]) ** ((t - room.tail[0]) / WINDOW_MS)
    boost = 1.0
    for s0, s1, audience, order in room.flash_sales:
        if s0 <= t < s1:
            level *= audience
            boost = order
    per_ms = room.size / room.enter_rate / WINDOW_MS
    return level * per_ms, boost


def generate(session: SweepSession) -> Iterator[Emitted]:
    """Every record of the session in non-decreasing arrival time."""
    rooms = rooms_of(session)
    start, end = session.bounds()
    rng = Random(f"traffic-{session.seed}")
    random, expo, gamma = rng.random, rng.expovariate, rng.gammavariate
    buckets: dict[int, list[tuple]] = defaultdict(list)
    ids = count()
    step = 1000  # impressions are drawn per second of each room
    currency = session.currency

    def put(topic: str, key: bytes, t: int, value: str) -> None:
        arrival = t + int(random() * 3000)
        buckets[arrival // 1000].append((arrival, topic, key, value))

    for slice_start in range(start, end, WINDOW_MS):
        for room in rooms:
            rid = room.room_id
            key = rid.encode()
            inc = room.incident
            stage = inc.stage if inc is not None else ""
            cum = list(_cumulative(room.popularity))
            enter_rate, ctr0, order0, pay0 = (
                room.enter_rate,
                room.ctr,
                room.order_rate,
                room.pay_rate,
            )
            for sec in range(slice_start, min(slice_start + WINDOW_MS, end), step):
                rate, boost = _audience(room, sec + step / 2, start)
                f_aud = f_enter = 1.0
                if stage == "audience":
                    f_aud = inc.factor(sec + step / 2)
                elif stage == "enter_rate":
                    f_enter = inc.factor(sec + step / 2)
                for _ in range(poisson(rng, rate * step * f_aud)):
                    t = sec + int(random() * step)
                    n = next(ids)
                    head = f'{{"room_id":"{rid}","user_id":"u{n}"'
                    put("views", key, t, f'{head},"event_id":"i{n}","ts":{t},"type":"impression"}}')
                    if random() >= enter_rate * f_enter:
                        continue
                    t += 300 + int(random() * 1700)
                    if t >= end:
                        continue
                    put("views", key, t, f'{head},"event_id":"n{n}","ts":{t},"type":"enter"}}')
                    t += int(expo(1 / 8000))
                    if t >= end:
                        continue
                    k = _pick(random, cum)
                    product = f'"product_id":"p{k}"'
                    put(
                        "clicks",
                        key,
                        t,
                        f'{head},"event_id":"v{n}","ts":{t},"type":"product_impression",{product}}}',
                    )
                    p = ctr0 * inc.factor(t) if stage == "click_through" else ctr0
                    if random() >= p:
                        continue
                    t += 500 + int(random() * 3500)
                    if t >= end:
                        continue
                    put(
                        "clicks",
                        key,
                        t,
                        f'{head},"event_id":"c{n}","ts":{t},"type":"product_click",{product}}}',
                    )
                    p = order0 * boost
                    if stage == "click_to_order":
                        p *= inc.factor(t)
                    if random() >= p:
                        continue
                    t += 3000 + int(gamma(2, 5000))
                    if t >= end:
                        continue
                    order = (
                        f'{head},"order_id":"o{n}",{product},"quantity":1,'
                        f'"amount_cents":{room.prices[k]},"currency":"{currency}"'
                    )
                    put("orders", key, t, f'{order},"event_id":"o{n}","ts":{t},"type":"created"}}')
                    t += 2000 + int(gamma(2, 8000))
                    p = pay0 * inc.factor(t) if stage == "payment" else pay0
                    if t >= end or random() >= p:
                        continue
                    put("orders", key, t, f'{order},"event_id":"p{n}","ts":{t},"type":"paid"}}')
        yield from _flush(buckets, (slice_start + WINDOW_MS) // 1000)
    yield from _flush(buckets, None)


def _flush(buckets: dict[int, list[tuple]], before: int | None) -> Iterator[Emitted]:
    """The records of the seconds before ``before`` (all when None), in arrival order."""
    for second in sorted(s for s in buckets if before is None or s < before):
        for arrival, topic, key, value in sorted(buckets.pop(second)):
            yield Emitted(topic, key, value.encode(), arrival, "ok", "")


def _cumulative(weights: list[float]) -> Iterator[float]:
    total = 0.0
    for w in weights:
        total += w
        yield total


def _pick(random, cum: list[float]) -> int:
    u = random() * cum[-1]
    for i, c in enumerate(cum):
        if u < c:
            return i
    return len(cum) - 1


def poisson(rng: Random, lam: float, normal_above: float = 30.0) -> int:
    """A Poisson draw: Knuth's product of uniforms, or the normal approximation above
    ``normal_above`` (the detector's tests use 50)."""
    if lam <= 0:
        return 0
    if lam > normal_above:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1

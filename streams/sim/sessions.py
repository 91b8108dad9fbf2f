"""The room session model: who is live, how traffic moves over the session, what goes wrong.

Everything here is planned up front from ``SimConfig.seed`` with ``random.Random`` (string
seeds, so the plan does not depend on ``PYTHONHASHSEED`` or on the Python build). Planning
is cheap (a few hundred random draws per room); the per-event work is in ``generate.py``.

Where the numbers come from
---------------------------
The funnel rates below are *plausible ranges*, not measurements. They are of the kind quoted
in public industry write-ups on Douyin and Kuaishou live commerce (platform merchant-education
material such as Douyin e-commerce / Ocean Engine "live room data" benchmarks, and
third-party analytics vendors' monthly reports on live rooms): the room's feed
impression → enter rate ("曝光进入率") of a few per cent up to about 15 %, product-card
click-through ("商品点击率") of about 5–15 %, click → order ("点击成交转化率") of about 2–10 %,
payment success of created orders of 70–95 %, refunds of 1–5 % of paid orders (live commerce
refund rates are often much higher over weeks; within a session only a few come back), and an
average order value of tens to a few hundred CNY. No single report is reproduced here; each
room draws its own rates uniformly from these ranges, so the ranges are what matters.

Per room (drawn once, deterministic from the seed):

============================  =====================================================
size weight                   log-normal(0, 1.0), normalised over rooms (heavy tail)
enter rate                    U(3 %, 15 %) of impressions; returning viewers 50 %
watch time                    log-normal, median U(20 s, 60 s), sigma U(0.9, 1.3)
product impressions           a card every Exp(mean U(15 s, 40 s)) while watching
product-card CTR              U(5 %, 15 %)
click → order created         U(2 %, 10 %)   (x 1.5 during a flash sale)
created → paid                U(70 %, 95 %)
paid → refunded               U(1 %, 5 %), Exp(mean 6 min) after payment
products                      5–30, prices log-normal around a room level of 30–200 CNY,
                              popularity Zipf-like (exponent 1.1) over a shuffled list
quantity                      1 / 2 / 3 with probability 0.75 / 0.18 / 0.07
============================  =====================================================

The arc of a session of length T (per room, in event time):

* opening ramp over the first 7–12 % of T, from 15 % to full traffic;
* steady selling, with a slow +-10–20 % wobble (period 3–8 min);
* 1–3 flash sales ("秒杀"), 1–4 minutes each, 3–6 times the steady traffic (20 s edges) and
  1.5 times the click → order rate, never overlapping each other nor the room's incidents
  (a flash sale that finds no free place is dropped, except the room's first one, which then
  may meet an incident);
* a tail over the last 7–12 % of T, decaying exponentially to about 5 %.

Incidents (``SimConfig.incidents``), one per listed kind, in rooms from the larger half by
weight (distinct rooms, reaching down to smaller ones only when there are more incident kinds
than large rooms), starting after 12 % and ending before 88 % of the session, lasting U(3, 8)
minutes, in whole seconds (shorter only when the session is too short to hold them), not
overlapping each other in one room where there is space:

* ``payment_outage``: orders are still created, but a payment that would complete inside the
  incident succeeds with probability 3 % (the others fail for good);
* ``stockout``: the room's best-selling product (highest popularity, ``RoomPlan.best_seller``)
  gets no order created inside the incident; its cards are still shown and clicked;
* ``traffic_cut``: the enter rate drops to U(10 %, 20 %) of normal (impressions continue);
* ``conversion_decay``: the click → order probability falls linearly from normal at the start
  to 20 % of normal at the end of the incident.

What comes out
--------------
Each room's base impression rate is set from its share of ``rate`` and the expected number of
records one impression leads to (computed from its funnel rates, with watch times cut off by
the end of the session), so the total comes within a few per cent of ``rate``; incidents take
some records away (a ``traffic_cut`` room loses about a tenth of its records). About 80 % of the
records are on ``views`` (mostly impressions), 20 % on ``clicks``, and only about 0.1 % on
``orders``: with these rates paid orders / enters is about 1–3 %, so a room needs about 100
records/s to see a handful of orders a minute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from random import Random

INCIDENT_KINDS = ("payment_outage", "stockout", "traffic_cut", "conversion_decay")

# --- ranges (see the module docstring) -------------------------------------------------------
ENTER_RATE = (0.03, 0.15)
RETURNING_SHARE = 0.02  # share of impressions shown to a recent viewer of the room
RETURNING_ENTER_RATE = 0.5
WATCH_MEDIAN_S = (20.0, 60.0)
WATCH_SIGMA = (0.9, 1.3)
WATCH_CAP_MS = 3 * 3600 * 1000
CARD_INTERVAL_S = (15.0, 40.0)
FIRST_CARD_MEAN_S = 4.0
CTR = (0.05, 0.15)
CLICK_TO_ORDER = (0.02, 0.10)
FLASH_SALE_ORDER_BOOST = 1.5
PAY_SUCCESS = (0.70, 0.95)
REFUND_RATE = (0.01, 0.05)
REFUND_MEAN_MS = 6 * 60 * 1000
PRODUCTS = (5, 30)
ROOM_PRICE_CNY = (30.0, 200.0)
QUANTITY_WEIGHTS = ((1, 0.75), (2, 0.18), (3, 0.07))
RAMP_SHARE = (0.07, 0.12)
TAIL_SHARE = (0.07, 0.12)
FLASH_SALES = (1, 3)
FLASH_SALE_MINUTES = (1.0, 4.0)
FLASH_SALE_FACTOR = (3.0, 6.0)
FLASH_SALE_EDGE_MS = 20_000
INCIDENT_MINUTES = (3.0, 8.0)
INCIDENT_SPAN = (0.12, 0.88)  # incidents lie inside this share of the session
PAYMENT_OUTAGE_SUCCESS = 0.03
TRAFFIC_CUT_FACTOR = (0.10, 0.20)
CONVERSION_DECAY_FLOOR = 0.20
#: Minor units of each currency a room may sell in, per fen (1/100 CNY), roughly: prices are
#: planned in fen and scaled, so JPY rooms see amounts in yen (no minor unit) and KWD rooms in
#: fils (3 decimals).
MINOR_PER_FEN = {"CNY": 1.0, "USD": 0.14, "EUR": 0.13, "JPY": 0.21, "KRW": 1.9, "KWD": 0.43}
REPEATED_PAYMENT_DELAY_MS = (1_000, 4_000)  # after the first callback
DUPLICATE_DELAY_MS = (0, 2_000)  # after the first send


@dataclass(frozen=True)
class SimConfig:
    """One simulated session; ``end_ms`` must be set before ``generate``."""

    seed: int = 1
    rooms: int = 20
    minutes: float = 30.0
    rate: float = 2000.0  # target total events/s averaged over the session (all rooms, topics)
    end_ms: int | None = None  # event time at which the session ends
    out_of_order_share: float = 0.02  # delivered late but within grace (delay 1..grace ms)
    late_share: float = 0.002  # delivered beyond grace (delay grace+1 s .. grace+30 s)
    malformed_share: float = 0.001  # records replaced by malformed ones
    duplicate_share: float = 0.001  # records sent twice (a producer retry; counted once)
    repeated_payment_share: float = 0.01  # paid callbacks sent again (new event id, same order)
    foreign_currency_share: float = 0.0  # orders in another currency than the room's
    #: currencies rooms sell in, each room drawing one (prices scaled to its minor units)
    currencies: tuple[str, ...] = ("CNY",)
    incidents: tuple[str, ...] = INCIDENT_KINDS  # kinds to inject; () for none
    grace_ms: int = 5000
    window_ms: int = 60000
    partitions: int = 4

    def bounds(self) -> tuple[int, int]:
        """``(start_ms, end_ms)`` of the session; raises ValueError when end_ms is unset."""
        if self.end_ms is None:
            raise ValueError("SimConfig.end_ms must be set (event time at which the session ends)")
        return self.end_ms - self.duration_ms(), self.end_ms

    def duration_ms(self) -> int:
        return round(self.minutes * 60_000)

    def check(self) -> None:
        unknown = set(self.incidents) - set(INCIDENT_KINDS)
        if unknown:
            raise ValueError(f"unknown incident kinds: {sorted(unknown)}")
        if self.rooms < 1 or self.minutes <= 0 or self.rate <= 0:
            raise ValueError("rooms, minutes and rate must be positive")
        shares = (self.out_of_order_share, self.late_share, self.malformed_share)
        if min(shares) < 0 or sum(shares) > 1:
            raise ValueError("shares must be >= 0 and sum to at most 1")
        extra = (self.duplicate_share, self.repeated_payment_share, self.foreign_currency_share)
        if not all(0 <= share <= 1 for share in extra):
            raise ValueError("duplicate, repeated payment and foreign currency shares in [0, 1]")
        unknown_currencies = set(self.currencies) - set(MINOR_PER_FEN)
        if not self.currencies or unknown_currencies:
            raise ValueError(f"currencies must be some of {sorted(MINOR_PER_FEN)}")
        if self.grace_ms < 0 or self.window_ms < 1 or self.partitions < 1:
            raise ValueError("grace_ms >= 0, window_ms >= 1 and partitions >= 1 required")


@dataclass(frozen=True)
class Incident:
    room_id: str
    kind: str
    start_ms: int
    end_ms: int
    factor: float = 1.0  # traffic_cut: remaining share of the enter rate

    def as_dict(self) -> dict:
        return {
            "room_id": self.room_id,
            "kind": self.kind,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }

    def covers(self, ts: int) -> bool:
        return self.start_ms <= ts < self.end_ms


@dataclass
class RoomPlan:
    """One room's session: size, funnel rates, products, arc and incidents (absolute ms)."""

    index: int
    room_id: str
    weight: float
    enter_rate: float
    watch_mu: float  # log of the median watch time in ms
    watch_sigma: float
    card_interval_ms: float
    ctr: float
    click_to_order: float
    pay_success: float
    refund_rate: float
    product_ids: list[str]
    prices_cents: list[int]
    popularity: list[float]
    ramp_ms: int
    tail_ms: int
    wobble: tuple[float, float, float]  # amplitude, period ms, phase
    flash_sales: list[tuple[int, int, float]] = field(default_factory=list)  # start, end, factor
    incidents: list[Incident] = field(default_factory=list)
    impressions_per_s: float = 0.0  # base rate; times arc(t) gives the arrival intensity
    currency: str = "CNY"

    @property
    def best_seller(self) -> str:
        return self.product_ids[max(range(len(self.popularity)), key=self.popularity.__getitem__)]

    def arc(self, ts: float, start_ms: int, end_ms: int) -> float:
        """Traffic multiplier at event time ``ts`` (1.0 = steady selling)."""
        x = ts - start_ms
        if x < 0 or ts >= end_ms:
            return 0.0
        amp, period, phase = self.wobble
        level = 1.0 + amp * math.sin(2 * math.pi * x / period + phase)
        if x < self.ramp_ms:
            level *= 0.15 + 0.85 * x / self.ramp_ms
        tail_start = end_ms - start_ms - self.tail_ms
        if x >= tail_start:
            level *= math.exp(-3.0 * (x - tail_start) / self.tail_ms)
        for s0, s1, factor in self.flash_sales:
            if s0 <= ts < s1:
                edge = min(1.0, (ts - s0) / FLASH_SALE_EDGE_MS, (s1 - ts) / FLASH_SALE_EDGE_MS)
                level *= 1.0 + (factor - 1.0) * edge
        return level

    def in_flash_sale(self, ts: int) -> bool:
        return any(s0 <= ts < s1 for s0, s1, _ in self.flash_sales)

    def expected_events_per_impression(self, session_ms: int) -> float:
        """Mean records one impression leads to (before end-of-session truncation of orders)."""
        p_enter = (1 - RETURNING_SHARE) * self.enter_rate + RETURNING_SHARE * RETURNING_ENTER_RATE
        # viewers arrive throughout the session: average min(W, remaining) over the remaining time
        steps = 40
        watch = 0.0
        left = 0.0
        for i in range(steps):
            remaining = session_ms * (i + 0.5) / steps
            watch += _lognormal_truncated_mean(self.watch_mu, self.watch_sigma, remaining)
            left += _lognormal_cdf(self.watch_mu, self.watch_sigma, remaining)
        watch /= steps
        left /= steps
        cards = 1.0 + watch / self.card_interval_ms
        c2o = self.click_to_order * (1.1 if self.flash_sales else 1.0)
        per_card = 1 + self.ctr * (1 + c2o * (1 + self.pay_success * (1 + self.refund_rate)))
        return 1.0 + p_enter * (1.0 + left + cards * per_card)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _lognormal_cdf(mu: float, sigma: float, c: float) -> float:
    return _phi((math.log(c) - mu) / sigma) if c > 0 else 0.0


def _lognormal_truncated_mean(mu: float, sigma: float, c: float) -> float:
    """E[min(W, c)] for W log-normal(mu, sigma)."""
    if c <= 0:
        return 0.0
    z = (math.log(c) - mu) / sigma
    return math.exp(mu + sigma * sigma / 2) * _phi(z - sigma) + c * (1.0 - _phi(z))


def room_id(index: int) -> str:
    return f"room-{index + 1:04d}"


def _overlaps(a0: int, a1: int, spans: list[tuple[int, int]]) -> bool:
    return any(a0 < b1 and b0 < a1 for b0, b1 in spans)


def _plan_room(config: SimConfig, index: int, start_ms: int, end_ms: int) -> RoomPlan:
    rng = Random(f"livepulse-sim:{config.seed}:room:{index}")
    currency = Random(f"livepulse-sim:{config.seed}:currency:{index}").choice(config.currencies)
    session_ms = end_ms - start_ms
    n_products = rng.randint(*PRODUCTS)
    level = math.exp(rng.uniform(math.log(ROOM_PRICE_CNY[0]), math.log(ROOM_PRICE_CNY[1])))
    scale = MINOR_PER_FEN[currency]
    prices = [
        max(1, round((max(10, round(level * rng.lognormvariate(0.0, 0.5))) * 100 - 10) * scale))
        for _ in range(n_products)
    ]
    popularity = [1.0 / (rank + 1) ** 1.1 for rank in range(n_products)]
    rng.shuffle(popularity)
    return RoomPlan(
        index=index,
        room_id=room_id(index),
        weight=0.0,
        enter_rate=rng.uniform(*ENTER_RATE),
        watch_mu=math.log(rng.uniform(*WATCH_MEDIAN_S) * 1000),
        watch_sigma=rng.uniform(*WATCH_SIGMA),
        card_interval_ms=rng.uniform(*CARD_INTERVAL_S) * 1000,
        ctr=rng.uniform(*CTR),
        click_to_order=rng.uniform(*CLICK_TO_ORDER),
        pay_success=rng.uniform(*PAY_SUCCESS),
        refund_rate=rng.uniform(*REFUND_RATE),
        product_ids=[f"p-{index + 1:04d}-{k + 1:02d}" for k in range(n_products)],
        prices_cents=prices,
        popularity=popularity,
        ramp_ms=max(1, int(session_ms * rng.uniform(*RAMP_SHARE))),
        tail_ms=max(1, int(session_ms * rng.uniform(*TAIL_SHARE))),
        wobble=(
            rng.uniform(0.10, 0.20),
            rng.uniform(3.0, 8.0) * 60_000,
            rng.uniform(0.0, 2 * math.pi),
        ),
        currency=currency,
    )


def _place_flash_sales(plan: RoomPlan, config: SimConfig, start_ms: int, end_ms: int) -> None:
    rng = Random(f"livepulse-sim:{config.seed}:flash:{plan.index}")
    lo = start_ms + plan.ramp_ms
    hi = end_ms - plan.tail_ms
    incidents = [(i.start_ms, i.end_ms) for i in plan.incidents]
    taken: list[tuple[int, int]] = []
    for _ in range(rng.randint(*FLASH_SALES)):
        length = int(rng.uniform(*FLASH_SALE_MINUTES) * 60_000)
        if hi - lo < length:
            break
        found = None
        fallback = None
        for _attempt in range(50):
            s0 = rng.randint(lo, hi - length)
            s1 = s0 + length
            if _overlaps(s0, s1, taken):
                continue
            if not _overlaps(s0, s1, incidents):
                found = (s0, s1)
                break
            fallback = fallback or (s0, s1)
        if found is None and not taken:
            found = fallback  # every room has a flash sale, even if it must meet an incident
        if found is None:
            continue
        taken.append(found)
        plan.flash_sales.append((found[0], found[1], rng.uniform(*FLASH_SALE_FACTOR)))
    plan.flash_sales.sort()


def _place_incidents(plans: list[RoomPlan], config: SimConfig, start_ms: int, end_ms: int) -> None:
    if not config.incidents:
        return
    rng = Random(f"livepulse-sim:{config.seed}:incidents")
    # the larger half of the rooms, or as many of the largest as it takes to give every
    # incident its own room
    by_size = sorted(plans, key=lambda p: (-p.weight, p.index))
    candidates = by_size[: max((len(by_size) + 1) // 2, min(len(config.incidents), len(by_size)))]
    rng.shuffle(candidates)
    session_ms = end_ms - start_ms
    lo = start_ms + int(session_ms * INCIDENT_SPAN[0])
    hi = start_ms + int(session_ms * INCIDENT_SPAN[1])
    for n, kind in enumerate(config.incidents):
        plan = candidates[n % len(candidates)]
        length = min(round(rng.uniform(*INCIDENT_MINUTES) * 60) * 1000, hi - lo)
        taken = [(i.start_ms, i.end_ms) for i in plan.incidents]
        s0 = lo
        for _ in range(50):
            s0 = rng.randint(lo, hi - length) // 1000 * 1000
            if not _overlaps(s0, s0 + length, taken):
                break
        factor = rng.uniform(*TRAFFIC_CUT_FACTOR) if kind == "traffic_cut" else 1.0
        plan.incidents.append(Incident(plan.room_id, kind, s0, s0 + length, factor))


def plan_session(config: SimConfig) -> list[RoomPlan]:
    """Every room's plan, with base impression rates set so the total is about ``rate``."""
    config.check()
    start_ms, end_ms = config.bounds()
    session_ms = end_ms - start_ms
    plans = [_plan_room(config, i, start_ms, end_ms) for i in range(config.rooms)]
    size_rng = Random(f"livepulse-sim:{config.seed}:sizes")
    weights = [size_rng.lognormvariate(0.0, 1.0) for _ in plans]
    total = sum(weights)
    for plan, w in zip(plans, weights, strict=True):
        plan.weight = w / total
    _place_incidents(plans, config, start_ms, end_ms)
    for plan in plans:
        _place_flash_sales(plan, config, start_ms, end_ms)
        # integral of the arc over the session, per second (the generator's resolution)
        area_s = sum(
            plan.arc(start_ms + s * 1000 + 500, start_ms, end_ms)
            for s in range(-(-session_ms // 1000))
        )
        events_per_impression = plan.expected_events_per_impression(session_ms)
        target_events = plan.weight * config.rate * session_ms / 1000
        plan.impressions_per_s = target_events / max(area_s, 1e-9) / events_per_impression
    return plans


def incidents(config: SimConfig) -> list[dict]:
    """``[{"room_id", "kind", "start_ms", "end_ms"}]``, by start time (then room, kind)."""
    plans = plan_session(config)
    found = sorted(
        (i for plan in plans for i in plan.incidents),
        key=lambda i: (i.start_ms, i.room_id, i.kind),
    )
    return [i.as_dict() for i in found]

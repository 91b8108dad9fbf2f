"""The in-stream detector: on each newly closed window of a room, is a funnel step broken?

Pure code (no Faust, no Kafka): the worker calls :func:`on_close` right after a room's
windows close, stores the returned :class:`DetectorState` in the room's state (and so in its
changelog), and sends the returned :class:`AlertEvent` values to ``live.alerts``.

What is tested
--------------
Each kind watches one step of the funnel as a *proportion*: successes out of the attempts of
the step just before it, in the same window.

=================  ==========================  ================  ===========================
kind               successes (``observed``)    attempts          what breaks it
=================  ==========================  ================  ===========================
traffic_cut        enters                      impressions       the room is shown but
                                                                 nobody gets in
payment_trouble    orders_paid                 orders_created    orders are placed, payments
                                                                 do not complete
conversion_drop    orders_created              product_clicks    cards are clicked, orders
                                                                 are not placed (best seller
                                                                 sold out, conversion decay)
click_drop         product_clicks              product           product cards are shown, not
                                                 impressions       clicked (cards broken, an
                                                                   unattractive line-up)
=================  ==========================  ================  ===========================

A fifth kind, ``audience_loss``, is a volume test: the window's enters and impressions
against the room's own level (:func:`_judge_audience`): viewers who stop coming leave every
ratio as it was.

Conditioning on the step before makes every test immune to how much traffic the room has:
the opening ramp, the slow wobble, a flash sale five times the usual traffic and the
end-of-session tail all move the attempts and the successes together. It also keeps the kinds
apart: a payment outage leaves orders *created* per click unchanged, so it does not show as a
conversion drop, and a traffic cut leaves the orders per click unchanged. (``conversion_drop``
counts orders created per click rather than paid orders per enter for that reason: paid per
enter would fire on every payment outage and on every traffic cut's lost viewers too.)
A fall of impressions alone (fewer people shown the room) is not a traffic cut here: it is
what the end of every session looks like.

The statistic: a CUSUM per kind
------------------------------
Why not a per-window test: a room with 200 enters a minute has about 4 paid orders a minute.
One window with none where 4 were expected has a Poisson probability of 0.02, which over 60
windows an hour, three kinds and many rooms is far too many false alarms; a threshold strict
enough to be quiet must wait for a second or third bad window anyway, and needs a principled
way to add them up. A CUSUM is that way: among tests with a given false-alarm rate it has the
smallest worst-case detection delay for a change to a known alternative (Lorden 1971,
Moustakides 1986). With counts it needs no normal approximation and no ``scipy``: a log per
window.

The order flow (``payment_trouble``, ``conversion_drop``: :data:`BINOMIAL_KINDS`) is judged
as binomial trials: ``x`` successes of ``n`` (lagged) attempts against the alternative "the
rate fell to ``rho * p0``",

    llr = x * ln(rho) + (n - x) * ln((1 - rho * p0) / (1 - p0))

so each attempt that did not succeed weighs what it says: with 85 % of orders paid, an
unpaid order is strong evidence, with 20 % paid a weak one. Because a share of a window's
successes spills into the next window, the count varies more than a binomial of its
attempts; :func:`binomial_llr` takes ``n / kappa`` trials at ``kappa * p0`` (``kappa`` from
the lag, about 0.5 for payments; never trusting a window to vary less than half as much as
Poisson counts, ``MIN_DISPERSION``). The enter rate, a few per cent of impressions, is judged
as Poisson counts, ``llr = x * ln(rho) + expected * (1 - rho)``, which a binomial of a small
rate is. For every kind the statistic ``S = max(0, S + llr)`` fires the alert once
``S >= threshold`` (per kind). A normal window has a negative ``llr`` and pulls ``S`` back to
zero, a busy one (a flash sale) pulls harder, so old evidence does not linger; a collapsed
step in a big room fires on one window, a smaller drop after two or three. The alert's
``score`` is ``S`` in nats (``exp(score)`` is the likelihood ratio of the evidence since the
run began).

The smallest incident a room shows follows from the threshold ``h``: a step that stops
outright adds ``(n / kappa) * ln((1 - rho * p) / (1 - p))`` per window (``p = kappa * p0``),
so it is found once its attempts during the stall reach
``N = h * kappa / c`` with ``c = ln((1 - rho * p) / (1 - p))``; a fall to a share ``q`` of
the rate adds ``d = q * p * ln(rho) + (1 - q * p) * c`` per trial and is found after
``h * kappa / d`` attempts, and never when ``d <= 0`` (``q`` at or above ``c / (c - ln rho)``).
With the defaults (``h`` 6, ``rho`` 0.25, lag 0.4) a payment outage is found after about 7
orders created in it where 85 % are paid, 6 where 95 % are, 37 where 20 % are (0 paid of 19
created there is 3 nats: half the threshold, a second such window fires); a stop of orders
per click (``rho`` 0.5, lag 0.25, 8 % of clicks ordering) after about 144 clicks, i.e. 12
orders expected. A room with 8 orders created a minute therefore finds a payment outage on
its first whole window, once the guards below let it be judged.

Two CUSUMs run per kind: the main one, tuned to a collapse (payments to a quarter, enters to
40 %, orders per click to half), and a mild one (``mild_ratio`` 0.8, ``mild_threshold``).
The main one gathers nothing from a sustained fall of a quarter (with ``rho`` = 0.5 its
``llr`` is negative unless ``x < 0.72 * expected``), which a big room shows plainly, e.g. a
stock-out of its best seller; the mild one needs many windows in a small room but finds it in
a big one. Either crossing its threshold fires the alert (the score is the one that crossed).

Attempts carry over: a payment completes ~20 s after its order, an order ~15 s after its
click, so a share (``*_lag``) of a window's successes belong to the attempts of the window
before, and ``n = (1 - lag) * attempts + lag * attempts of the window before``. Without it
the first minute of a flash sale looks like a payment drop (orders up, payments not yet).

The baseline
------------
``p0`` pools the successes and attempts of the room's last ``baseline_windows`` closed windows
before the one under test, leaving out the windows of the kind's last alert episode, traffic
spikes (more than ``spike_ratio`` times the median enters: flash sales, whose boosted
conversion would make the room's ordinary conversion after the sale look like a drop) and the
window after each spike. ``p0`` is then lowered by ``baseline_z`` relative standard errors
(``1 / sqrt(successes)``): a baseline of 20 orders is uncertain by a fifth, and a CUSUM that
trusted it fully would fire on the estimation error. While a run of ``S > 0`` builds up it
keeps the rate it began with, and while an alert fires the rate is frozen, so a gradual
decay or an outage does not become the new normal.

Guards (a window is then not judged: ``S`` and the resolve count stay as they are):

* fewer than ``min_baseline_windows`` baseline windows (session start);
* the baseline's median enters per window below ``min_enters`` (small rooms);
* the window's impressions below ``min_volume_share`` of the baseline median (the opening
  ramp, the end-of-session tail, a window cut short: too little traffic to judge a step by);
* fewer than ``min_baseline_successes`` successes in the baseline, or fewer than
  ``min_expected`` successes expected in the window.

Firing and resolving
--------------------
A firing alert writes a ``firing`` event with the window's observed successes, the expected
``p0 * n``, the score and a severity: ``critical`` when ``observed <= critical_ratio *
expected`` (the step is essentially broken), ``warning`` otherwise. It resolves after
``resolve_windows`` consecutive judged windows whose ``llr`` against the mild drop is
``<= 0`` (the window is likelier under the baseline than under even a mild drop: about 90 % of
the expected successes or more) with a ``resolved`` event for the last of them; the
CUSUM restarts from zero. :func:`on_expire` resolves what is still firing when a room leaves
the table.

Stock-outs: one product at a time
---------------------------------
A stock-out of the best seller removes only that product's orders (a third of a room's orders
or less) while its card is still clicked: in the room's orders per click a fall that a room
with a handful of orders a minute hides in its noise. So the worker also counts clicks and
orders created per product in each window (``streams.core.rooms.Window.products``, kept until the
window has been judged), and :func:`_judge_products` runs one more Poisson CUSUM per product
for the room's ``max_products`` busiest ones, on the product's own orders per click against a
fall to ``stockout_ratio`` (nearly none). A firing event is a ``conversion_drop`` with the
``product_id`` set, so the operator learns which product to check. What remains out of reach
is in ``livepulse evaluate-alerts``' ``evidence`` column: a stock-out in the first minutes of a
session, before the product has a baseline, and a gradual conversion decay in a room with few
orders.

Deterministic: the state and the events are a function of the closed windows alone, in
order, however many windows one call brings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from streams.core.contract import OTHER
from streams.core.funnel import Counts

#: Alert kinds, in the order of ``DetectorState.kinds`` (a new kind is appended: records
#: written before it decode with fewer kinds, the missing ones fresh).
KINDS = ("traffic_cut", "payment_trouble", "conversion_drop", "audience_loss", "click_drop")
#: The kinds that test a funnel step as a proportion (the volume test is ``audience_loss``).
RATIO_KINDS = ("traffic_cut", "payment_trouble", "conversion_drop", "click_drop")
#: Ratio kinds judged as binomial trials (successes of attempts): the order flow, whose
#: success rates are far from 0 (payments: most orders are paid). The enter rate, a few per
#: cent of impressions, is judged as Poisson counts, which it then is.
BINOMIAL_KINDS = ("payment_trouble", "conversion_drop", "click_drop")
#: Per ratio kind: (successes, attempts) count fields.
STEPS = {
    "traffic_cut": ("enters", "impressions"),
    "payment_trouble": ("orders_paid", "orders_created"),
    "conversion_drop": ("orders_created", "product_clicks"),
    "click_drop": ("product_clicks", "product_impressions"),
}
#: The simulator's incident kinds and the alert kind each should raise.
INCIDENT_KIND = {
    "traffic_cut": "traffic_cut",
    "payment_outage": "payment_trouble",
    "stockout": "conversion_drop",
    "conversion_decay": "conversion_drop",
}


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of the detector (``LIVEPULSE_DETECTOR_*`` settings)."""

    #: Closed windows before the one under test that the baseline pools.
    baseline_windows: int = 15
    #: The baseline rate is lowered by this many of its relative standard errors.
    baseline_z: float = 1.0
    #: Baseline windows needed before a room is judged at all (session start).
    min_baseline_windows: int = 3
    #: Rooms whose baseline median enters per window is below this are not judged.
    min_enters: int = 60
    #: Windows with fewer impressions than this share of the baseline median are not judged.
    min_volume_share: float = 0.3
    #: Baseline windows with more than this times the median enters are left out (flash sales).
    spike_ratio: float = 1.5
    #: A step is judged only if the baseline predicts at least this many successes in the window.
    min_expected: float = 1.5
    #: A step is judged only if its baseline holds at least this many successes.
    min_baseline_successes: int = 10
    #: Design drop of each kind: the CUSUM is tuned to a success rate of ``ratio * baseline``.
    traffic_cut_ratio: float = 0.4
    payment_trouble_ratio: float = 0.25
    conversion_drop_ratio: float = 0.5
    click_drop_ratio: float = 0.5
    #: A second CUSUM per kind, tuned to a mild drop (0 turns it off): the design drops above
    #: gather nothing from a sustained fall of a fifth or a quarter, which a big room shows
    #: plainly (a stock-out of its best seller).
    mild_ratio: float = 0.8
    mild_threshold: float = 8.0
    #: Share of a window's successes that come from attempts in the window before: payments
    #: complete ~20 s after the order, orders ~15 s after the click, enters ~2 s after the
    #: impression. Without it a flash sale's first minute looks like a drop (orders up, their
    #: payments not yet).
    traffic_cut_lag: float = 0.0
    payment_trouble_lag: float = 0.4
    conversion_drop_lag: float = 0.25
    click_drop_lag: float = 0.05
    #: CUSUM thresholds (nats of evidence) at which each kind fires.
    traffic_cut_threshold: float = 8.0
    payment_trouble_threshold: float = 6.0
    conversion_drop_threshold: float = 6.0
    click_drop_threshold: float = 6.0
    #: Audience loss: enters *and* impressions of a window against the room's own level, a
    #: Poisson CUSUM against a fall to ``audience_loss_ratio`` of it, firing at
    #: ``audience_loss_threshold`` nats. The level is the lower of two medians of the windows
    #: before: of the last ``audience_windows`` (a flash sale of fewer windows than half of
    #: them does not move it) and of the last ``audience_recent_windows`` (it follows a slow
    #: end-of-session decay and the session's ramp-up).
    audience_loss_ratio: float = 0.4
    audience_loss_threshold: float = 8.0
    audience_windows: int = 10
    audience_recent_windows: int = 3
    #: Rooms whose enters level is below this are not judged for audience loss.
    audience_min_enters: float = 20.0
    #: Consecutive judged windows more likely normal than dropped before an alert resolves.
    resolve_windows: int = 2
    #: ``observed <= critical_ratio * expected`` in the firing window makes the alert critical.
    critical_ratio: float = 0.3
    #: Stock-out of one product: orders created per click of each of the room's busiest
    #: products, a Poisson CUSUM per product against a drop to ``stockout_ratio`` of its own
    #: baseline, firing at ``stockout_threshold`` nats (ratio 0 turns the test off). The
    #: threshold is above the room tests' because up to ``max_products`` CUSUMs run per room:
    #: at 6, one window without orders where 7 were expected fires, which plain Poisson noise
    #: does about once in 15 room-hours.
    stockout_ratio: float = 0.1
    stockout_threshold: float = 8.0
    #: Products per room whose orders the stock-out test follows (the busiest by orders).
    max_products: int = 8
    #: Windows with more than this times the median enters stay out of a product's baseline
    #: (a flash sale boosts orders per click). Lower than 3 would also leave out the opening
    #: ramp, which does not move a product's orders per click and is most of the history a
    #: stock-out early in a session can be judged against.
    stockout_spike_ratio: float = 4.0

    def ratio(self, kind: str) -> float:
        return getattr(self, f"{kind}_ratio")

    def lag(self, kind: str) -> float:
        return getattr(self, f"{kind}_lag")

    def threshold(self, kind: str) -> float:
        return getattr(self, f"{kind}_threshold")

    def check(self) -> None:
        """Raise ValueError on values the detector cannot work with."""
        if self.baseline_windows < 1 or not 1 <= self.min_baseline_windows <= self.baseline_windows:
            raise ValueError("need 1 <= min_baseline_windows <= baseline_windows")
        if self.resolve_windows < 1:
            raise ValueError("resolve_windows must be at least 1")
        for kind in RATIO_KINDS:
            if not 0 < self.ratio(kind) < 1:
                raise ValueError(f"{kind}_ratio must be between 0 and 1")
            if not 0 <= self.lag(kind) < 1:
                raise ValueError(f"{kind}_lag must be in [0, 1)")
            if self.threshold(kind) <= 0:
                raise ValueError(f"{kind}_threshold must be above 0")
        if not 0 <= self.mild_ratio < 1 or self.mild_threshold <= 0:
            raise ValueError("mild_ratio must be in [0, 1) and mild_threshold above 0")
        if self.spike_ratio <= 1 or self.min_volume_share < 0 or self.critical_ratio < 0:
            raise ValueError("spike_ratio > 1, min_volume_share >= 0, critical_ratio >= 0")
        if not 0 <= self.stockout_ratio < 1 or self.stockout_threshold <= 0:
            raise ValueError("stockout_ratio must be in [0, 1) and stockout_threshold above 0")
        if not 0 < self.audience_loss_ratio < 1 or self.audience_loss_threshold <= 0:
            raise ValueError("audience_loss_ratio must be between 0 and 1, its threshold above 0")
        if not 1 <= self.audience_recent_windows <= self.audience_windows <= self.baseline_windows:
            raise ValueError(
                "need 1 <= audience_recent_windows <= audience_windows <= baseline_windows"
            )
        if self.audience_min_enters < 0:
            raise ValueError("audience_min_enters must be >= 0")
        if self.max_products < 1 or self.stockout_spike_ratio <= 1:
            raise ValueError("max_products must be at least 1 and stockout_spike_ratio above 1")


class KindState(msgspec.Struct, array_like=True, omit_defaults=True):
    """One kind's CUSUM and alert of one room."""

    cusum: float = 0.0
    mild: float = 0.0  # the second CUSUM, tuned to a mild drop
    run_start: int = -1  # first window of the current run of S > 0 (-1: S is 0)
    run_rate: float = 0.0  # baseline rate when that run began
    firing: bool = False
    since: int = -1  # window start at which the current (or last) alert fired
    rate: float = 0.0  # frozen baseline rate while firing
    calm: int = 0  # consecutive calm windows while firing
    severity: str = ""
    volume: float = 0.0  # baseline median impressions, frozen while firing
    excl_from: int = -1  # windows of the last episode, left out of the baseline
    excl_to: int = -1  # (-1 while it still runs)
    run_volume: float = 0.0  # audience_loss: the impressions level when the run began


class ProductState(msgspec.Struct, array_like=True, omit_defaults=True):
    """One product's stock-out CUSUM and alert, in one room."""

    product: str
    clicks: float = 0.0  # baseline: decayed sums (weight 1 - 1/baseline_windows a window)
    orders: float = 0.0
    windows: int = 0  # windows taken into the baseline
    last_clicks: int = 0  # clicks in the room's window before (orders lag their clicks)
    last_start: int = -1  # that window's start
    cusum: float = 0.0
    run_rate: float = 0.0  # baseline rate when the current run of S > 0 began
    run_clicks: float = 0.0  # the baseline sums before that run: restored if it fires, so
    run_orders: float = 0.0  # the windows of a stock-out never become its baseline
    firing: bool = False
    since: int = -1
    calm: int = 0
    severity: str = ""


class DetectorState(msgspec.Struct, array_like=True, omit_defaults=True):
    """A room's detector state; ``DetectorState()`` is "no state yet"."""

    last_start: int = -1  # start of the newest window already judged
    kinds: list[KindState] = msgspec.field(default_factory=list)  # by KINDS; [] = all fresh
    products: list[ProductState] = msgspec.field(default_factory=list)

    def firing(self) -> list[str]:
        """Kinds with an active alert (a product's stock-out is a ``conversion_drop``)."""
        kinds = [kind for kind, ks in zip(KINDS, self.kinds, strict=False) if ks.firing]
        if "conversion_drop" not in kinds and any(ps.firing for ps in self.products):
            kinds.append("conversion_drop")
        return kinds

    def describe(self, size_ms: int) -> list[dict]:
        """Active alerts for ``/rooms/{room_id}``: kind, since (window start, ms), severity."""
        alerts = [
            {
                "kind": kind,
                "product_id": None,
                "since": ks.since,
                "since_end": ks.since + size_ms,
                "severity": ks.severity,
                "baseline_rate": ks.rate,
            }
            for kind, ks in zip(KINDS, self.kinds, strict=False)
            if ks.firing
        ]
        alerts += [
            {
                "kind": "conversion_drop",
                "product_id": ps.product,
                "since": ps.since,
                "since_end": ps.since + size_ms,
                "severity": ps.severity,
                "baseline_rate": ps.run_rate,
            }
            for ps in self.products
            if ps.firing
        ]
        return alerts


class AlertEvent(msgspec.Struct):
    """One record of ``live.alerts`` (``schemas/live.alerts.schema.json``), key ``room_id``."""

    room_id: str
    kind: str  # traffic_cut | payment_trouble | conversion_drop
    state: str  # firing | resolved
    window_start: int
    window_end: int
    observed: int
    expected: float
    score: float
    severity: str  # warning | critical
    product_id: str | None = None  # the product whose orders stopped (stock-out test)

    def encode(self) -> bytes:
        return _json_encode(self)

    def key(self) -> bytes:
        return self.room_id.encode()


_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder(AlertEvent).decode


def decode_alert(data: bytes) -> AlertEvent:
    return _json_decode(data)


class ClosedWindow(Protocol):
    start: int
    counts: Counts
    # product id -> [clicks, orders created] (``streams.core.rooms.Window.products``), or None
    products: dict[str, list[int]] | None


def _median(values: list[int]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def llr(x: int, expected: float, rho: float) -> float:
    """Poisson log-likelihood ratio of mean ``rho * expected`` against ``expected`` for ``x``."""
    return x * math.log(rho) + expected * (1 - rho)


#: Baseline rates are capped here in the binomial test (a rate of 1 would make one missing
#: success infinite evidence; lagged attempts can make a pooled rate reach it).
MAX_RATE = 0.99


#: A window's successes are taken to vary at least this much relative to a Poisson count of
#: the same mean (a binomial's is ``1 - p``): payment success differs between buyers, payment
#: methods and retries, so a rate near 1 is never trusted to the last order.
MIN_DISPERSION = 0.5


def binomial_llr(x: int, n: float, p0: float, rho: float, kappa: float = 1.0) -> float:
    """Binomial log-likelihood ratio of success rate ``rho * p0`` against ``p0`` for ``x``
    successes of ``n`` attempts: ``x ln(rho) + (n - x) ln((1 - rho p0) / (1 - p0))``.

    Each failure is evidence in proportion to how rarely the baseline fails: with 85 % of
    orders paid, one unpaid order against a fall to a quarter weighs 1.66 nats, with 20 %
    paid 0.05. ``kappa`` (:func:`_kappa`, at most 1) is how surely an attempt's success lands
    in this window: when successes spill into the next window, a window's count varies more
    than a binomial of its attempts, and the test takes ``n / kappa`` trials at rate
    ``kappa * p0`` (the same mean, the variance of the spill). ``n`` may be fractional and
    ``x`` may exceed it (successes of the window before): the expression stays linear in both,
    and such a window is evidence for the baseline.
    """
    kappa = min(kappa, (1 - MIN_DISPERSION) / p0) if p0 > 0 else kappa
    p = min(p0 * kappa, MAX_RATE)
    return x * math.log(rho) + (n / kappa - x) * math.log((1 - rho * p) / (1 - p))


def _kappa(windows: Sequence[ClosedWindow], j: int, field: str, lag: float, size_ms: int) -> float:
    """``sum q^2 / sum q`` over the attempts whose successes may land in window ``j``: those
    of window ``j`` land there with ``q = 1 - lag``, those of the window before with ``lag``
    (1 without a lag)."""
    if not lag:
        return 1.0
    n = getattr(windows[j].counts, field)
    before = (_attempts(windows, j, field, lag, size_ms) - (1 - lag) * n) / lag
    total = (1 - lag) * n + lag * before
    if total <= 0:
        return 1.0
    return ((1 - lag) ** 2 * n + lag**2 * before) / total


def on_close(
    config: DetectorConfig,
    state: DetectorState,
    room_id: str,
    closed_windows: Sequence[ClosedWindow],
    size_ms: int,
) -> tuple[DetectorState, list[AlertEvent]]:
    """Judge every closed window newer than ``state.last_start``, oldest first.

    ``closed_windows`` are the room's closed windows, oldest first (``.start`` in ms and
    ``.counts``). Returns the new state (``state`` is not modified) and the alert events, in
    order. A room whose state predates the detector has its retained windows judged once.
    """
    state = DetectorState(state.last_start, state.kinds, state.products)
    copied = False
    events: list[AlertEvent] = []
    first = len(closed_windows)  # the windows not judged yet are the newest
    while first and closed_windows[first - 1].start > state.last_start:
        first -= 1
    for i in range(first, len(closed_windows)):
        w = closed_windows[i]
        recent = closed_windows[max(0, i - config.baseline_windows - 1) : i + 1]
        if _quiet(config, state, recent):
            state.last_start = w.start
            continue
        if not copied:  # copy on the first window judged: most rooms are too small for that
            kinds = [msgspec.structs.replace(ks) for ks in state.kinds]
            kinds += [KindState() for _ in range(len(KINDS) - len(kinds))]
            products = [msgspec.structs.replace(ps) for ps in state.products]
            state = DetectorState(state.last_start, kinds, products)
            copied = True
        for kind in RATIO_KINDS:
            ks = state.kinds[KINDS.index(kind)]
            event = _judge(config, kind, ks, room_id, recent, size_ms)
            if event is not None:
                events.append(event)
        audience = state.kinds[KINDS.index("audience_loss")]
        event = _judge_audience(config, audience, room_id, recent, size_ms)
        if event is not None:
            events.append(event)
        if config.stockout_ratio > 0:
            events += _judge_products(config, state, room_id, recent, size_ms)
        state.last_start = w.start
    return state, events


def _quiet(config: DetectorConfig, state: DetectorState, windows: Sequence[ClosedWindow]) -> bool:
    """Nothing to judge in the last of ``windows``: no alert or run is open, and every window
    of the baseline had fewer than ``min_enters`` enters, so no median of them reaches it (the
    room and product tests would all decline). Skipped outright; a quiet room's products are
    not followed until it is judged."""
    for ks in state.kinds:
        if ks.firing:
            return False
    for ps in state.products:
        if ps.firing or ps.cusum > 0:
            return False
    least = min(config.min_enters, config.audience_min_enters)
    for w in windows[max(0, len(windows) - 1 - config.baseline_windows) : -1]:
        if w.counts.enters >= least:
            return False
    return True


def on_expire(state: DetectorState, room_id: str, size_ms: int) -> list[AlertEvent]:
    """Resolve events for a room leaving the table with alerts still firing."""
    firing = [
        (kind, ks.severity, None) for kind, ks in zip(KINDS, state.kinds, strict=False) if ks.firing
    ]
    firing += [("conversion_drop", ps.severity, ps.product) for ps in state.products if ps.firing]
    start, end = state.last_start, state.last_start + size_ms
    return [
        AlertEvent(room_id, kind, "resolved", start, end, 0, 0.0, 0.0, severity, product)
        for kind, severity, product in firing
    ]


def _attempts(
    windows: Sequence[ClosedWindow], j: int, field: str, lag: float, size_ms: int
) -> float:
    """Attempts whose successes land in window ``j``: its own, and ``lag`` of the one before.

    The window before is taken as 0 when the room had no window then (a gap), and as equal to
    window ``j`` when it is not in the list (the room's first, or trimmed, window).
    """
    n = getattr(windows[j].counts, field)
    if not lag:
        return n
    if j == 0:
        before = n
    else:
        prev = windows[j - 1]
        before = getattr(prev.counts, field) if prev.start == windows[j].start - size_ms else 0
    return (1 - lag) * n + lag * before


def _baseline(
    config: DetectorConfig,
    kind: str,
    ks: KindState,
    windows: Sequence[ClosedWindow],
    size_ms: int,
) -> tuple[float | None, float]:
    """``(rate, median impressions)`` of the baseline: the windows before the last one.

    The rate is None when the baseline is too thin to judge by.
    """
    num_field, den_field = STEPS[kind]
    lag = config.lag(kind)
    lo, hi = ks.excl_from, ks.excl_to
    first = max(0, len(windows) - 1 - config.baseline_windows)
    usable = [
        j
        for j in range(first, len(windows) - 1)
        if not (lo >= 0 and windows[j].start >= lo and (hi < 0 or windows[j].start <= hi))
    ]
    if len(usable) < config.min_baseline_windows:
        return None, 0.0
    median_enters = _median([windows[j].counts.enters for j in usable])
    if median_enters < config.min_enters:
        return None, 0.0
    # a traffic spike (flash sale) and the window after it, whose orders and payments still
    # come from the spike's boosted clicks, are no baseline
    spike = config.spike_ratio * median_enters
    spiky = {j for j in range(first, len(windows) - 1) if windows[j].counts.enters > spike}
    base = [j for j in usable if j not in spiky and j - 1 not in spiky]
    if len(base) < config.min_baseline_windows:
        return None, 0.0
    successes = sum(getattr(windows[j].counts, num_field) for j in base)
    attempts = sum(_attempts(windows, j, den_field, lag, size_ms) for j in base)
    if successes < config.min_baseline_successes or attempts <= 0:
        return None, 0.0
    volume = _median([windows[j].counts.impressions for j in base])
    # the rate is itself an estimate: lower it by ``baseline_z`` of its relative standard
    # error (1 / sqrt(successes)), so that a baseline of few successes errs on the quiet side
    shrink = max(0.0, 1.0 - config.baseline_z / math.sqrt(successes))
    return shrink * successes / attempts, volume


def _judge(
    config: DetectorConfig,
    kind: str,
    ks: KindState,
    room_id: str,
    windows: Sequence[ClosedWindow],
    size_ms: int,
) -> AlertEvent | None:
    """Judge the last of ``windows`` (the ones before it are its baseline candidates)."""
    num_field, den_field = STEPS[kind]
    w = windows[-1]
    if ks.firing:
        # judged against the baseline frozen when the alert fired, its volume included
        volume = ks.volume
        if w.counts.impressions < config.min_volume_share * volume:
            return None
        p0 = ks.rate
    else:
        p0, volume = _baseline(config, kind, ks, windows, size_ms)
        if p0 is None or w.counts.impressions < config.min_volume_share * volume:
            return None
        if ks.run_start >= 0:
            p0 = ks.run_rate  # a run (of the main CUSUM) keeps the rate it began with
    x = getattr(w.counts, num_field)
    n = _attempts(windows, len(windows) - 1, den_field, config.lag(kind), size_ms)
    expected = p0 * n
    if expected < config.min_expected:
        return None
    mild_on = config.mild_ratio > 0
    if kind in BINOMIAL_KINDS:
        kappa = _kappa(windows, len(windows) - 1, den_field, config.lag(kind), size_ms)
        score = binomial_llr(x, n, p0, config.ratio(kind), kappa)
        mild_score = binomial_llr(x, n, p0, config.mild_ratio, kappa) if mild_on else 0.0
    else:
        score = llr(x, expected, config.ratio(kind))
        mild_score = llr(x, expected, config.mild_ratio) if mild_on else 0.0
    end = w.start + size_ms
    if ks.firing:
        ks.cusum = max(0.0, ks.cusum + score)
        ks.mild = max(0.0, ks.mild + mild_score)
        # calm: the window is likelier under the baseline than under the (mild) drop
        calm = (mild_score if mild_on else score) <= 0
        ks.calm = ks.calm + 1 if calm else 0
        if ks.calm < config.resolve_windows:
            return None
        ks.firing = False
        ks.calm = 0
        ks.excl_to = w.start
        cusum = max(ks.cusum, ks.mild)
        ks.cusum, ks.mild, ks.run_start = 0.0, 0.0, -1
        return AlertEvent(
            room_id,
            kind,
            "resolved",
            w.start,
            end,
            x,
            round(expected, 3),
            round(cusum, 3),
            ks.severity,
        )
    ks.cusum = max(0.0, ks.cusum + score)
    ks.mild = max(0.0, ks.mild + mild_score)
    if ks.cusum <= 0:
        ks.run_start = -1
    elif ks.run_start < 0:
        ks.run_start, ks.run_rate = w.start, p0
    if ks.cusum >= config.threshold(kind):
        cusum = ks.cusum
    elif mild_on and ks.mild >= config.mild_threshold:
        cusum = ks.mild
    else:
        return None
    ks.firing = True
    ks.since = w.start
    ks.rate = p0
    ks.volume = volume
    ks.calm = 0
    ks.excl_from, ks.excl_to = (ks.run_start if ks.run_start >= 0 else w.start), -1
    ks.severity = "critical" if x <= config.critical_ratio * expected else "warning"
    return AlertEvent(
        room_id, kind, "firing", w.start, end, x, round(expected, 3), round(cusum, 3), ks.severity
    )


def _judge_products(
    config: DetectorConfig,
    state: DetectorState,
    room_id: str,
    windows: Sequence[ClosedWindow],
    size_ms: int,
) -> list[AlertEvent]:
    """The stock-out test on the last of ``windows``: one Poisson CUSUM per busy product.

    A stock-out removes one product's orders while its card is still clicked. In the room's
    orders per click that is a fall of the product's share (a third or less), which the room
    test needs many windows to see; in the product's own orders per click it is a fall to
    zero, which a few expected orders show within a window or two. The baseline is the
    product's decayed sums of orders and (lagged) clicks; a run of ``S > 0`` is judged
    against the rate it began with, and when it fires the sums go back to what they were
    before it, so a stock-out never becomes its own baseline. Rooms below ``min_enters`` and
    flash-sale windows (``stockout_spike_ratio``, and the window after one) do not enter any
    product's baseline.
    """
    w = windows[-1]
    counts = getattr(w, "products", None) or {}
    lag = config.lag("conversion_drop")
    decay = 1.0 - 1.0 / config.baseline_windows
    base = [x.counts.enters for x in windows[:-1][-config.baseline_windows :]]
    median_enters = _median(base) if base else 0.0
    judged_room = len(base) >= config.min_baseline_windows and median_enters >= config.min_enters
    spike = config.stockout_spike_ratio * median_enters
    prev = windows[-2] if len(windows) > 1 else None
    spiky = bool(base) and (
        w.counts.enters > spike
        or (prev is not None and prev.start == w.start - size_ms and prev.counts.enters > spike)
    )
    tracked = {ps.product: ps for ps in state.products}
    for product, (_, orders) in counts.items():
        if orders and product not in tracked and product != OTHER:
            tracked[product] = ProductState(product)
    events: list[AlertEvent] = []
    end = w.start + size_ms
    for ps in tracked.values():
        clicks, x = counts.get(ps.product, (0, 0))
        if ps.last_start < 0:
            before = clicks
        else:
            before = ps.last_clicks if ps.last_start == w.start - size_ms else 0
        n = (1 - lag) * clicks + lag * before
        ps.last_clicks, ps.last_start = clicks, w.start
        expected = 0.0
        if ps.firing or ps.cusum > 0:
            expected = ps.run_rate * n
        elif (
            judged_room
            and ps.windows >= config.min_baseline_windows
            and ps.orders >= config.min_baseline_successes
            and ps.clicks > 0
        ):
            shrink = max(0.0, 1.0 - config.baseline_z / math.sqrt(ps.orders))
            expected = shrink * ps.orders / ps.clicks * n
        judged = judged_room and expected >= config.min_expected
        score = llr(x, expected, config.stockout_ratio) if judged else 0.0
        if ps.firing:
            # calm: likelier under the baseline than under the stock-out; a card nobody
            # clicks any more (taken down) is calm too
            ps.calm = ps.calm + 1 if score <= 0 else 0
            if ps.calm >= config.resolve_windows:
                events.append(_product_event("resolved", room_id, w.start, end, ps, x, expected))
                ps.firing, ps.calm, ps.cusum = False, 0, 0.0
            elif judged:
                ps.cusum = max(0.0, ps.cusum + score)
            continue
        if judged:
            if ps.cusum <= 0 and score > 0:  # a run begins: remember the baseline before it
                ps.run_rate = expected / n
                ps.run_clicks, ps.run_orders = ps.clicks, ps.orders
            ps.cusum = max(0.0, ps.cusum + score)
            if ps.cusum >= config.stockout_threshold:
                ps.firing, ps.since, ps.calm = True, w.start, 0
                ps.severity = "critical" if x <= config.critical_ratio * expected else "warning"
                ps.clicks, ps.orders = ps.run_clicks, ps.run_orders
                events.append(_product_event("firing", room_id, w.start, end, ps, x, expected))
                continue
        if not spiky and median_enters >= config.min_enters:
            ps.clicks = decay * ps.clicks + n
            ps.orders = decay * ps.orders + x
            ps.windows += 1
    # follow the busiest products, and every one with a run or an alert
    hot = [ps for ps in tracked.values() if ps.firing or ps.cusum > 0]
    rest = sorted(
        (ps for ps in tracked.values() if not (ps.firing or ps.cusum > 0)),
        key=lambda ps: (-ps.orders, ps.product),
    )
    keep = hot + rest[: max(0, config.max_products - len(hot))]
    state.products = sorted(keep, key=lambda ps: ps.product)
    return events


def _product_event(
    state: str, room_id: str, start: int, end: int, ps: ProductState, x: int, expected: float
) -> AlertEvent:
    return AlertEvent(
        room_id,
        "conversion_drop",
        state,
        start,
        end,
        x,
        round(expected, 3),
        round(ps.cusum, 3),
        ps.severity,
        ps.product,
    )


def _audience_level(
    config: DetectorConfig, ks: KindState, windows: Sequence[ClosedWindow]
) -> tuple[float, float] | None:
    """``(enters, impressions)`` the room usually has, from the windows before the last one.

    Each is the lower of the median of the last ``audience_windows`` (leaving out flash sales:
    more than ``spike_ratio`` times the enters of the quietest before the recent ones) and
    of the last ``audience_recent_windows`` (the kind's last alert episode left out of both),
    lowered by ``baseline_z`` of its standard error. None before the room has
    ``audience_windows`` windows, when fewer than ``min_baseline_windows`` remain or when the
    enters level is below ``audience_min_enters``.
    """
    if len(windows) - 1 < config.audience_windows:
        return None  # a young room: a flash sale could be half of its history
    lo, hi = ks.excl_from, ks.excl_to
    base = [
        w
        for w in windows[len(windows) - 1 - config.audience_windows : -1]
        if not (lo >= 0 and w.start >= lo and (hi < 0 or w.start <= hi))
    ]
    if len(base) < max(config.min_baseline_windows, config.audience_recent_windows):
        return None
    recent = base[-config.audience_recent_windows :]
    # flash sales can fill most of ten minutes: the windows far above the quietest one before
    # the recent ones (``spike_ratio`` times its enters) are left out of the long median; the
    # recent ones do not set the bar, as they may be the start of the loss under test
    older = base[: -config.audience_recent_windows] or base
    bar = config.spike_ratio * min(w.counts.enters for w in older)
    steady = [w for w in base if w.counts.enters <= bar]
    levels = []
    for field in ("enters", "impressions"):
        long = _median([getattr(w.counts, field) for w in steady])
        short = _median([getattr(w.counts, field) for w in recent])
        level, behind = (long, len(steady)) if long <= short else (short, len(recent))
        # the level is an estimate: lower it by ``baseline_z`` of its relative standard error
        # (about 1 / sqrt(level * windows) for a median of Poisson counts)
        if level > 0:
            level *= max(0.0, 1.0 - config.baseline_z / math.sqrt(level * behind))
        levels.append(level)
    enters, impressions = levels
    if enters < config.audience_min_enters or enters <= 0:
        return None
    return enters, impressions


def _judge_audience(
    config: DetectorConfig,
    ks: KindState,
    room_id: str,
    windows: Sequence[ClosedWindow],
    size_ms: int,
) -> AlertEvent | None:
    """Audience loss on the last of ``windows``: its enters and impressions both far below
    the room's level (:func:`_audience_level`).

    The window's evidence is the smaller of the two Poisson log-likelihood ratios (enters,
    impressions) against a fall to ``audience_loss_ratio``: viewers who stop coming take
    both down, while enters falling alone, with the room still shown, is a ``traffic_cut``.
    With ``rho`` the design ratio a window adds evidence only when it holds fewer than
    ``(1 - rho) / -ln(rho)`` of the level (0.65 at 0.4), so a fall of a third or less is never
    one, a fall of half adds ``0.14 * level`` nats (one window at a level of 60 enters, two at
    30), and a decay slower than about a fifth per window is followed by the recent median
    without adding any. A decay as steep as an incident's ramp (half the audience within two
    or three windows) is an audience loss by this definition, at the end of a session too.
    A room without any event in a minute has no window to judge: a total loss shows on the
    first window after it. While a run of ``S > 0`` builds up, and while the alert fires, the
    level stays at what it was when the run began; resolving is as for the ratio kinds.
    """
    w = windows[-1]
    x, imp = w.counts.enters, w.counts.impressions
    if ks.firing:
        level, level_imp = ks.rate, ks.volume
    elif ks.run_start >= 0:
        level, level_imp = ks.run_rate, ks.run_volume
    else:
        found = _audience_level(config, ks, windows)
        if found is None:
            return None
        level, level_imp = found
    rho = config.audience_loss_ratio
    score = min(llr(x, level, rho), llr(imp, level_imp, rho) if level_imp > 0 else math.inf)
    end = w.start + size_ms
    if ks.firing:
        # calm: the enters or the impressions are likelier at the level than at a mild drop
        mild = config.mild_ratio or rho
        calm = min(llr(x, level, mild), llr(imp, level_imp, mild) if level_imp > 0 else 0) <= 0
        ks.calm = ks.calm + 1 if calm else 0
        if ks.calm < config.resolve_windows:
            return None
        cusum = ks.cusum
        ks.firing, ks.calm, ks.excl_to = False, 0, w.start
        ks.cusum, ks.run_start = 0.0, -1
        return AlertEvent(
            room_id,
            "audience_loss",
            "resolved",
            w.start,
            end,
            x,
            round(level, 3),
            round(cusum, 3),
            ks.severity,
        )
    ks.cusum = max(0.0, ks.cusum + score)
    if ks.cusum <= 0:
        ks.run_start = -1
    elif ks.run_start < 0:
        ks.run_start, ks.run_rate, ks.run_volume = w.start, level, level_imp
    if ks.cusum < config.audience_loss_threshold:
        return None
    ks.firing, ks.since, ks.calm = True, w.start, 0
    ks.rate, ks.volume = level, level_imp
    ks.excl_from, ks.excl_to = (ks.run_start if ks.run_start >= 0 else w.start), -1
    ks.severity = "critical" if x <= config.critical_ratio * level else "warning"
    return AlertEvent(
        room_id,
        "audience_loss",
        "firing",
        w.start,
        end,
        x,
        round(level, 3),
        round(ks.cusum, 3),
        ks.severity,
    )

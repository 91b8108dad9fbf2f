"""The in-stream detector on synthetic rooms: what it must find, where it must stay quiet."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec
import pytest
from jsonschema import Draft202012Validator

from streams.core.detector import (
    KINDS,
    AlertEvent,
    DetectorConfig,
    DetectorState,
    binomial_llr,
    decode_alert,
    llr,
    on_close,
    on_expire,
)
from streams.core.funnel import Counts
from streams.sim.family import poisson as sim_poisson

SIZE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % SIZE
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "live.alerts.schema.json").read_text())
CONFIG = DetectorConfig()


@dataclass
class W:
    start: int
    counts: Counts


def poisson(rng: random.Random, lam: float) -> int:
    return sim_poisson(rng, lam, normal_above=50)


def binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


@dataclass
class Minute:
    """What one minute of a synthetic room looks like (multipliers of its normal rates)."""

    volume: float = 1.0  # impressions (and everything below them)
    enter: float = 1.0  # enters per impression
    order: float = 1.0  # orders created per click
    pay: float = 1.0  # payments per order
    click: float = 1.0  # clicks per product card shown


def room(minutes: list[Minute], *, seed: int = 1, impressions: float = 4000.0) -> list[W]:
    """Windows of a room: 10 % enter, 0.4 clicks per enter, 8 % order, 85 % pay.

    Steps lag as in the simulator: a quarter of a window's orders come from the clicks of the
    window before, and 40 % of its payments from the orders of the window before. Orders are
    counts (Poisson); payments are trials of the orders created (each paid or not), and each
    payment lands in its order's window or, with probability 0.4, the next.
    """
    rng = random.Random(seed)
    pay = random.Random(f"pay-{seed}")  # payments draw from their own stream
    out: list[W] = []
    ordering_before = None
    spilled = None
    for i, m in enumerate(minutes):
        imp = poisson(rng, impressions * m.volume)
        enters = poisson(rng, imp * 0.10 * m.enter)
        clicks = poisson(rng, enters * 0.4 * m.click)
        cards = clicks * 8 if m.click == 1 else round(enters * 0.4 * 8)
        ordering = clicks * 0.08 * m.order  # orders these clicks lead to
        before = ordering if ordering_before is None else ordering_before
        created = poisson(rng, 0.75 * ordering + 0.25 * before)
        # the draw payments once took from ``rng``, kept so that the other steps' numbers
        # stay what the tests were written on
        poisson(rng, created * 0.85 * m.pay)
        paying = binomial(pay, created, 0.85 * m.pay)
        now = binomial(pay, paying, 0.6)
        if spilled is None:  # as if the window before had been this one
            spilled = binomial(pay, binomial(pay, created, 0.85 * m.pay), 0.4)
        paid = now + spilled
        ordering_before, spilled = ordering, paying - now
        counts = Counts(
            impressions=imp,
            enters=enters,
            leaves=enters,
            product_impressions=cards,
            product_clicks=clicks,
            orders_created=created,
            orders_paid=paid,
            gmv_cents=paid * 9900,
        )
        out.append(W(T0 + i * SIZE, counts))
    return out


def run(
    windows: list[W], config: DetectorConfig = CONFIG, room_id: str = "r1"
) -> tuple[DetectorState, list[AlertEvent]]:
    """One call per closed window, as the worker makes them most of the time."""
    state, events = DetectorState(), []
    for i in range(len(windows)):
        state, new = on_close(config, state, room_id, windows[: i + 1], SIZE)
        events += new
    return state, events


def normal(n: int) -> list[Minute]:
    return [Minute() for _ in range(n)]


def index(event: AlertEvent) -> int:
    return (event.window_start - T0) // SIZE


# --- quiet ----------------------------------------------------------------------------------


def session(seed: int, impressions: float = 4000.0) -> list[W]:
    """110 minutes: an opening ramp, wobble, flash sales (5x traffic, 1.5x orders per click,
    each followed by the traffic it brought) and an exponential tail."""
    minutes = [Minute(volume=0.15 + 0.85 * i / 5) for i in range(5)]
    for i in range(100):
        wobble = 1 + 0.15 * math.sin(i / 3)
        if i % 40 in (10, 11, 12):
            minutes.append(Minute(volume=5 * wobble, order=1.5))
        else:
            minutes.append(Minute(volume=wobble))
    minutes += [Minute(volume=math.exp(-3 * i / 4)) for i in range(1, 5)]
    return room(minutes, seed=seed, impressions=impressions)


def test_false_alerts_stay_under_one_per_ten_room_hours() -> None:
    windows = alerts = 0
    for seed in range(1, 21):
        ws = session(seed)
        windows += len(ws)
        tail = len(ws) - 4  # halving each minute: an audience loss by definition (below)
        alerts += sum(
            e.state == "firing" and not (e.kind == "audience_loss" and index(e) >= tail)
            for e in run(ws)[1]
        )
    room_hours = windows * SIZE / 3_600_000
    assert room_hours > 35
    assert alerts <= 0.1 * room_hours


def test_the_flash_sales_themselves_are_quiet() -> None:
    for seed in range(1, 6):
        ws = session(seed)
        for event in run(ws)[1]:
            if event.state != "firing":
                continue
            # nothing fires on a flash sale window or the two after it
            assert (index(event) - 5) % 40 not in (10, 11, 12, 13, 14), event


def test_flash_sale_onset_with_lagging_payments_is_no_payment_trouble() -> None:
    # orders jump fivefold in one minute, their payments follow into the next window
    minutes = normal(20) + [Minute(volume=5.0, order=1.5)] * 3 + normal(10)
    windows = room(minutes, seed=5)
    onset = windows[20].counts
    assert onset.orders_paid < 0.85 * onset.orders_created  # the lag is really there
    _, events = run(windows)
    assert events == []


def test_small_rooms_are_not_judged() -> None:
    # 50 enters and about 1.4 payments a minute, then no payments at all for ten minutes
    minutes = normal(20) + [Minute(pay=0.0)] * 10
    _, events = run(room(minutes, impressions=500))
    assert events == []
    relaxed = replace(CONFIG, min_enters=10, min_expected=1.0, min_baseline_successes=5)
    _, events = run(room(minutes, impressions=500), relaxed)
    assert [e.kind for e in events] == ["payment_trouble"]  # the guards, not the data


def test_no_verdict_before_a_baseline_exists() -> None:
    # payments broken from the very first minute: nothing to compare with yet
    minutes = [Minute(pay=0.0)] * 2
    state, events = run(room(minutes))
    assert events == []
    assert state.last_start == T0 + SIZE
    assert all(ks.cusum == 0 for ks in state.kinds)


def test_end_of_session_decay_is_no_traffic_cut() -> None:
    minutes = normal(20) + [Minute(volume=0.5 ** (i + 1)) for i in range(6)]
    _, events = run(room(minutes))
    assert [e.kind for e in events] == ["audience_loss"]  # half the audience gone each minute


def test_a_gradual_decay_ramp_up_and_return_from_flash_sales_are_no_audience_loss() -> None:
    ramp = [Minute(volume=0.1 + 0.9 * i / 8) for i in range(8)]
    sales = [Minute(volume=5.0, order=1.5)] * 4 + normal(6) + [Minute(volume=6.0)] * 3
    decay = [Minute(volume=0.88 ** (i + 1)) for i in range(25)]  # to 4 % over 25 minutes
    for seed in range(1, 6):
        _, events = run(room(ramp + normal(10) + sales + normal(10) + decay, seed=seed))
        assert [e for e in events if e.kind == "audience_loss"] == []


def test_small_rooms_are_quiet_on_audience() -> None:
    # 20 enters a minute with a 15 % wobble for three hours
    minutes = [Minute(volume=1 + 0.15 * math.sin(i / 3)) for i in range(180)]
    for seed in range(1, 4):
        _, events = run(room(minutes, seed=seed, impressions=200))
        assert events == []


# --- found ----------------------------------------------------------------------------------


def test_audience_loss_fires_when_enters_and_impressions_fall_together() -> None:
    for drop, first in ((0.25, 20), (0.5, 20)):
        minutes = normal(20) + [Minute(volume=drop)] * 3 + normal(10)
        state, events = run(room(minutes))
        firing = [e for e in events if e.state == "firing"]
        assert [(e.kind, index(e)) for e in firing] == [("audience_loss", first)], drop
        assert firing[0].observed < (drop + 0.1) * firing[0].expected
        assert [e.kind for e in events if e.state == "resolved"] == ["audience_loss"]
        assert state.firing() == []


def test_a_ramp_down_to_half_the_audience_is_found() -> None:
    ramp = [Minute(volume=1 - 0.5 * (i + 1) / 3) for i in range(3)]
    minutes = normal(20) + ramp + [Minute(volume=0.5)] * 2 + normal(10)
    _, events = run(room(minutes, impressions=2000))
    firing = [e for e in events if e.state == "firing"]
    assert [e.kind for e in firing] == ["audience_loss"]
    assert 21 <= index(firing[0]) <= 24


def test_a_traffic_cut_is_no_audience_loss() -> None:
    minutes = normal(20) + [Minute(enter=0.15)] * 4 + normal(10)
    _, events = run(room(minutes))
    assert "audience_loss" not in {e.kind for e in events}


def test_records_written_before_audience_loss_decode_and_carry_on() -> None:
    windows = room(normal(20) + [Minute(pay=0.03)] * 3)
    state, _ = run(windows)
    old = DetectorState(state.last_start, state.kinds[:3], state.products)  # three kinds then
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=DetectorState)
    assert back.firing() == ["payment_trouble"]
    more = room(normal(20) + [Minute(pay=0.03)] * 3 + normal(6) + [Minute(volume=0.2)] * 3)
    new, events = on_close(CONFIG, back, "r1", more, SIZE)
    assert len(new.kinds) == len(KINDS)
    assert [(e.kind, e.state) for e in events] == [
        ("payment_trouble", "resolved"),
        ("audience_loss", "firing"),
    ]


def test_payment_outage_fires_within_two_windows_then_resolves() -> None:
    minutes = normal(20) + [Minute(pay=0.03)] * 6 + normal(10)
    _, events = run(room(minutes))
    assert [(e.kind, e.state) for e in events] == [
        ("payment_trouble", "firing"),
        ("payment_trouble", "resolved"),
    ]
    firing, resolved = events
    assert 20 <= index(firing) <= 21
    assert firing.severity == "critical"
    assert firing.observed <= 0.3 * firing.expected
    assert firing.score >= CONFIG.payment_trouble_threshold
    assert 26 <= index(resolved) <= 29
    assert resolved.severity == "critical"


def test_traffic_cut_fires_on_its_first_window() -> None:
    minutes = normal(20) + [Minute(enter=0.15)] * 4 + normal(10)
    state, events = run(room(minutes))
    firing = [e for e in events if e.state == "firing"]
    assert [(e.kind, index(e)) for e in firing] == [("traffic_cut", 20)]
    assert firing[0].observed < 0.2 * firing[0].expected
    assert [e.kind for e in events if e.state == "resolved"] == ["traffic_cut"]
    assert state.firing() == []


def test_conversion_drop_found_and_kept_apart_from_payments() -> None:
    minutes = normal(20) + [Minute(order=0.3)] * 6 + normal(10)
    _, events = run(room(minutes))
    firing = [e for e in events if e.state == "firing"]
    assert [e.kind for e in firing] == ["conversion_drop"]
    assert 20 <= index(firing[0]) <= 22


def test_a_click_through_drop_fires_click_drop_alone() -> None:
    minutes = normal(20) + [Minute(click=0.4)] * 3 + normal(10)
    _, events = run(room(minutes))
    firing = [e for e in events if e.state == "firing"]
    assert [e.kind for e in firing] == ["click_drop"]
    assert 20 <= index(firing[0]) <= 21


def test_an_outage_does_not_become_the_baseline() -> None:
    # broken for 30 minutes, twice the baseline: still firing, still against the old rate
    minutes = normal(20) + [Minute(pay=0.03)] * 30
    state, events = run(room(minutes))
    assert [(e.kind, e.state) for e in events] == [("payment_trouble", "firing")]
    assert state.firing() == ["payment_trouble"]
    (active,) = state.describe(SIZE)
    assert active["kind"] == "payment_trouble"
    assert active["severity"] == "critical"
    assert active["since"] == events[0].window_start


# --- the contract with the worker -----------------------------------------------------------


def test_one_call_for_many_windows_equals_one_call_each() -> None:
    windows = room(normal(20) + [Minute(pay=0.03)] * 5 + normal(6) + [Minute(enter=0.1)] * 3)
    one_by_one, events = run(windows)
    assert events
    rng = random.Random(7)
    state, chunked, i = DetectorState(), [], 0
    while i < len(windows):
        i = min(len(windows), i + rng.randint(1, 5))
        state, new = on_close(CONFIG, state, "r1", windows[:i], SIZE)
        chunked += new
    assert chunked == events
    assert msgspec.msgpack.encode(state) == msgspec.msgpack.encode(one_by_one)
    all_at_once, events_at_once = on_close(CONFIG, DetectorState(), "r1", windows, SIZE)
    assert events_at_once == events
    assert msgspec.msgpack.encode(all_at_once) == msgspec.msgpack.encode(one_by_one)


def test_a_window_already_judged_is_not_judged_again() -> None:
    windows = room(normal(20) + [Minute(pay=0.03)] * 3)
    state, events = run(windows)
    assert events
    again, more = on_close(CONFIG, state, "r1", windows, SIZE)
    assert more == []
    assert msgspec.msgpack.encode(again) == msgspec.msgpack.encode(state)


def test_retention_trims_the_list_without_changing_verdicts() -> None:
    windows = room(normal(80) + [Minute(pay=0.03)] * 4 + normal(5))
    _, full = run(windows)
    state, trimmed = DetectorState(), []
    for i in range(len(windows)):
        state, new = on_close(CONFIG, state, "r1", windows[max(0, i + 1 - 60) : i + 1], SIZE)
        trimmed += new
    assert trimmed == full
    assert [(e.kind, e.state) for e in full] == [
        ("payment_trouble", "firing"),
        ("payment_trouble", "resolved"),
    ]


def test_the_input_state_is_not_modified() -> None:
    windows = room(normal(20) + [Minute(pay=0.03)] * 3)
    state, _ = run(windows[:21])
    before = msgspec.msgpack.encode(state)
    on_close(CONFIG, state, "r1", windows, SIZE)
    assert msgspec.msgpack.encode(state) == before


def test_state_survives_the_changelog() -> None:
    windows = room(normal(20) + [Minute(pay=0.03)] * 3)
    state, _ = run(windows)
    assert state.firing() == ["payment_trouble"]
    data = msgspec.msgpack.encode(state)
    back = msgspec.msgpack.decode(data, type=DetectorState)
    assert back == state
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(DetectorState()), type=DetectorState) == (
        DetectorState()
    )
    assert len(msgspec.msgpack.encode(DetectorState())) < 80
    # a restored state carries on exactly as the live one would
    more = room(normal(20) + [Minute(pay=0.03)] * 3 + normal(6))
    _, live = on_close(CONFIG, state, "r1", more, SIZE)
    _, restored = on_close(CONFIG, back, "r1", more, SIZE)
    assert live == restored
    assert [e.state for e in live] == ["resolved"]


def test_same_input_same_bytes() -> None:
    windows = room(normal(20) + [Minute(pay=0.03)] * 4 + [Minute(enter=0.1)] * 3 + normal(6))
    first = [e.encode() for e in run(windows)[1]]
    second = [e.encode() for e in run(windows)[1]]
    assert first == second
    assert len(first) == 4


def test_alert_events_follow_their_schema() -> None:
    validator = Draft202012Validator(SCHEMA)
    windows = room(normal(20) + [Minute(pay=0.03)] * 4 + normal(6))
    _, events = run(windows)
    assert {e.state for e in events} == {"firing", "resolved"}
    for event in events:
        body = json.loads(event.encode())
        validator.validate(body)
        assert set(body) == set(SCHEMA["required"])
        assert body["window_end"] - body["window_start"] == SIZE
        assert decode_alert(event.encode()) == event
        assert event.key() == b"r1"
    bad = {**json.loads(events[0].encode()), "kind": "gmv_drop"}
    assert not validator.is_valid(bad)
    assert set(SCHEMA["properties"]["kind"]["enum"]) == set(KINDS)


def test_on_expire_resolves_what_still_fires() -> None:
    state, events = run(room(normal(20) + [Minute(pay=0.03)] * 3))
    assert state.firing() == ["payment_trouble"]
    (resolved,) = on_expire(state, "r1", SIZE)
    assert (resolved.kind, resolved.state, resolved.severity) == (
        "payment_trouble",
        "resolved",
        events[0].severity,
    )
    assert on_expire(DetectorState(), "r1", SIZE) == []


def test_log_likelihood_ratio() -> None:
    # nothing where 4 were expected, against a drop to a quarter: 4 * 0.75 nats
    assert llr(0, 4.0, 0.25) == pytest.approx(3.0)
    assert llr(4, 4.0, 0.25) < 0  # as expected: evidence against a drop
    assert llr(1, 4.0, 0.25) > 0


def test_binomial_evidence_weighs_each_missing_success_by_how_rare_a_failure_is() -> None:
    # 0 paid of 19 created: where 85 % pay, overwhelming; where 1 in 5 pays, ln(1/0.8^19)
    # at most (against a fall to nothing), and 19 * ln(0.95 / 0.8) against a fall to a quarter
    assert binomial_llr(0, 19, 0.2, 0.25) == pytest.approx(19 * math.log(0.95 / 0.8))
    assert binomial_llr(0, 19, 0.85, 0.25) > 5 * binomial_llr(0, 19, 0.2, 0.25)
    assert binomial_llr(16, 19, 0.85, 0.25) < 0  # paid as usual
    # a window whose successes spill into the next varies more: less evidence per trial
    assert 0 < binomial_llr(0, 19, 0.85, 0.25, 0.5) < binomial_llr(0, 19, 0.85, 0.25)
    # at the payment defaults the docstring's smallest outage (7 orders where 85 % pay) is
    # what crosses the threshold
    kappa = 0.6**2 + 0.4**2
    h = CONFIG.payment_trouble_threshold
    assert binomial_llr(0, 6, 0.85, 0.25, kappa) < h <= binomial_llr(0, 7, 0.85, 0.25, kappa)


def test_payment_outages_with_8_paid_a_minute_are_found_by_their_evidence() -> None:
    # 3 000 impressions a minute: about 9.6 orders created and 8.2 paid a minute. The first
    # window of an outage still gets the payments spilled from the window before, so two
    # windows hold 5 to 15 nats: most are found, some not; three windows are all found.
    for windows, least in ((2, 6), (3, 10)):
        minutes = normal(20) + [Minute(pay=0.0)] * windows + normal(10)
        found = 0
        for seed in range(1, 11):
            _, events = run(room(minutes, seed=seed, impressions=3000))
            found += any(
                e.kind == "payment_trouble" and 20 <= index(e) <= 20 + windows for e in events
            )
        assert found >= least, windows


@pytest.mark.parametrize(
    "change",
    [
        {"min_baseline_windows": 0},
        {"baseline_windows": 2, "min_baseline_windows": 3},
        {"payment_trouble_ratio": 1.0},
        {"traffic_cut_threshold": 0.0},
        {"conversion_drop_lag": 1.0},
        {"spike_ratio": 1.0},
        {"resolve_windows": 0},
    ],
)
def test_config_check_rejects_nonsense(change: dict) -> None:
    with pytest.raises(ValueError):
        replace(CONFIG, **change).check()
    CONFIG.check()


# -- the stock-out test: one product's orders stop while its card is still clicked -----------


@dataclass
class PW:
    start: int
    counts: Counts
    products: dict[str, list[int]] | None


#: click shares and orders per click of a room's products; "p-best" sells the most
PRODUCTS = {"p-best": (0.35, 0.10), "p-two": (0.25, 0.08), "p-three": (0.4, 0.04)}


def shop(
    minutes: list[Minute],
    *,
    sold_out: set[int] = frozenset(),  # type: ignore[assignment]
    seed: int = 1,
    clicks: float = 400.0,
) -> list[PW]:
    """Windows with per-product clicks and orders; ``p-best`` has none in ``sold_out``.

    As in :func:`room`, a quarter of a window's orders come from the clicks of the one before.
    """
    rng = random.Random(seed)
    out: list[PW] = []
    ordering_before: dict[str, float] = {}
    for i, m in enumerate(minutes):
        products = {}
        for name, (share, rate) in PRODUCTS.items():
            c = poisson(rng, clicks * m.volume * share)
            ordering = c * rate * m.order
            lagged = 0.75 * ordering + 0.25 * ordering_before.get(name, ordering)
            ordering_before[name] = ordering
            o = 0 if name == "p-best" and i in sold_out else poisson(rng, lagged)
            products[name] = [c, o]
        total_clicks = sum(c for c, _ in products.values())
        enters = poisson(rng, 1000 * m.volume)
        counts = Counts(
            impressions=10 * enters,
            enters=enters,
            product_clicks=total_clicks,
            orders_created=sum(o for _, o in products.values()),
        )
        out.append(PW(T0 + i * SIZE, counts, products))
    return out


def product_events(events: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if e.product_id is not None]


def test_a_stockout_of_the_best_seller_fires_naming_it_then_resolves() -> None:
    windows = shop(normal(30), sold_out=set(range(20, 26)))
    state, events = run(windows)  # type: ignore[arg-type]
    found = product_events(events)
    assert [(e.product_id, e.state, e.kind) for e in found] == [
        ("p-best", "firing", "conversion_drop"),
        ("p-best", "resolved", "conversion_drop"),
    ]
    firing, resolved = found
    assert firing.window_start in (T0 + 20 * SIZE, T0 + 21 * SIZE)  # within two windows
    assert firing.observed == 0 and firing.expected > 2 and firing.score >= 6
    assert T0 + 26 * SIZE <= resolved.window_start <= T0 + 29 * SIZE
    # while it fires: /rooms/{id} names the product, the room shows a conversion drop
    mid, _ = run(windows[:24])  # type: ignore[arg-type]
    assert "conversion_drop" in mid.firing()
    # (half of this room's orders are p-best's: the room-level test may fire as well)
    products = [a["product_id"] for a in mid.describe(SIZE) if a["product_id"] is not None]
    assert products == ["p-best"]
    assert on_expire(mid, "r1", SIZE)[-1].product_id == "p-best"
    assert not state.firing()


def test_a_stockout_does_not_become_its_products_baseline() -> None:
    # ten windows sold out: had they entered the baseline, the rate would have fallen by half
    windows = shop(normal(40), sold_out=set(range(20, 30)))
    before, _ = run(windows[:20])  # type: ignore[arg-type]
    after, events = run(windows)  # type: ignore[arg-type]
    assert [e.state for e in product_events(events)] == ["firing", "resolved"]

    def rate(state: DetectorState) -> float:
        ps = next(p for p in state.products if p.product == "p-best")
        return ps.orders / ps.clicks

    assert rate(after) == pytest.approx(rate(before), rel=0.25)


def test_products_stay_quiet_through_noise_and_flash_sales() -> None:
    # 40 room-hours of normal selling with a 4x flash sale (1.5x orders per click) each hour
    fired = []
    for seed in range(40):
        minutes = normal(25) + [Minute(volume=4.0, order=1.5)] * 3 + normal(32)
        _, events = run(shop(minutes, seed=seed))  # type: ignore[arg-type]
        fired += product_events(events)
    assert fired == []


def test_the_stockout_test_can_be_turned_off() -> None:
    windows = shop(normal(30), sold_out=set(range(20, 26)))
    _, events = run(windows, replace(CONFIG, stockout_ratio=0))  # type: ignore[arg-type]
    assert product_events(events) == []


def test_product_state_survives_the_changelog() -> None:
    windows = shop(normal(30), sold_out=set(range(20, 26)))
    state, _ = run(windows[:22])  # type: ignore[arg-type]
    assert state.products and any(p.firing or p.cusum > 0 for p in state.products)
    raw = msgspec.msgpack.encode(state)
    assert msgspec.msgpack.decode(raw, type=DetectorState) == state
    # and a restored state carries on exactly as the live one
    live, a = on_close(CONFIG, state, "r1", windows, SIZE)  # type: ignore[arg-type]
    back = msgspec.msgpack.decode(raw, type=DetectorState)
    restored, b = on_close(CONFIG, back, "r1", windows, SIZE)  # type: ignore[arg-type]
    assert (live, a) == (restored, b)


def test_only_the_busiest_products_are_followed() -> None:
    windows = shop(normal(10))
    for i, w in enumerate(windows):
        assert w.products is not None
        w.products.update({f"p-rare-{i}-{k}": [3, 1] for k in range(10)})
    state, _ = run(windows, replace(CONFIG, max_products=5))  # type: ignore[arg-type]
    names = [p.product for p in state.products]
    assert len(names) == 5 and {"p-best", "p-two", "p-three"} <= set(names)

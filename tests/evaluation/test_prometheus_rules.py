"""streams.evaluation.prometheus_rules without Prometheus: the scraped counters, the
OpenMetrics it backfills, the inlining of recording rules, ``for:`` and the move in time."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.evaluation.prometheus_rules import (
    EVAL_MS,
    EvalError,
    firings,
    inline,
    scrapes,
    shift_to_now,
    write_openmetrics,
)
from streams.sim import SimConfig, compute_truth, generate

END = 1_750_000_000_000
SMALL = SimConfig(seed=5, rooms=3, minutes=4, rate=150, incidents=("payment_outage",), end_ms=END)


def parse(text: str) -> dict[tuple[str, str], float]:
    """(room, counter name) -> value, of the rooms' running totals in one scrape."""
    return {
        (sample.labels["room_id"], sample.name): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith("_total") and "room_id" in sample.labels
    }


def test_scrapes_every_5_s_until_the_tail_and_end_at_the_truth() -> None:
    scraped = list(scrapes(SMALL, tail_ms=60_000))
    start, end = SMALL.bounds()
    times = [t for t, _ in scraped]
    assert times == list(range(start + 5_000, end + 60_000 + 1, 5_000))
    # counters never go down
    previous: dict = {}
    for _, text in scraped:
        now = parse(text)
        assert all(now[k] >= v for k, v in previous.items() if k in now)
        previous = now
    # the last scrape holds every applied event: the independently computed ground truth
    truth = compute_truth(SMALL, generate(SMALL))
    want: defaultdict[str, Counter] = defaultdict(Counter)
    for w in truth["windows"]:
        for name in ("impressions", "enters", "product_clicks", "orders_created", "orders_paid"):
            want[w["room_id"]][name] += w[name]
        want[w["room_id"]]["gmv"] += w["gmv_cents"] / 100
    last = parse(scraped[-1][1])
    assert set(want) == {room for room, _ in last} and len(want) == SMALL.rooms
    for room, counts in want.items():
        for name, value in counts.items():
            assert last[(room, f"livepulse_room_{name}_total")] == pytest.approx(value), name
        late = truth["late_by_room"].get(room, 0)
        assert last[(room, "livepulse_room_late_events_total")] == late


def test_openmetrics_groups_families_stamps_samples_and_keeps_only_what_is_asked(
    tmp_path: Path,
) -> None:
    text = (
        'livepulse_room_enters_total{room_id="a"} 3\nlivepulse_room_leaves_total{room_id="a"} 1\n'
    )
    scraped = [(1_000, text), (6_500, text.replace(" 3", " 5"))]
    path = tmp_path / "x.om"
    n = write_openmetrics(scraped, path, {"livepulse_room_enters_total"}.__contains__)
    assert n == 2
    series = 'livepulse_room_enters_total{room_id="a",job="livepulse",instance="rules-eval:6066"}'
    assert path.read_text().splitlines() == [
        "# TYPE livepulse_room_enters counter",
        f"{series} 3 1.000",
        f"{series} 5 6.500",
        "# EOF",
    ]
    with pytest.raises(EvalError):
        write_openmetrics([(0, "not a sample line at all {")], path, lambda _: True)


RECORDINGS = {
    "room_id:x:rate5m": "sum by (room_id) (rate(x_total[5m]))",
    "room_id:y:rate5m": "sum by (room_id) (rate(y_total[5m]))",
    "room_id:xy:ratio_rate5m": "room_id:x:rate5m / (room_id:y:rate5m > 0)",
}


def test_inline_replaces_recorded_series_and_ranges_become_subqueries() -> None:
    assert inline("room_id:x:rate5m > 2", RECORDINGS, EVAL_MS) == (
        "(sum by (room_id) (rate(x_total[5m]))) > 2"
    )
    got = inline(
        "quantile_over_time(0.5, room_id:xy:ratio_rate5m[30m] offset 5m)", RECORDINGS, EVAL_MS
    )
    assert got == (
        "quantile_over_time(0.5, ((sum by (room_id) (rate(x_total[5m]))) / "
        "((sum by (room_id) (rate(y_total[5m]))) > 0))[30m:15s] offset 5m)"
    )
    # a name that merely starts like a recorded one, and raw series, are left alone
    assert inline("room_id:x:rate5m_other + x_total", RECORDINGS, EVAL_MS) == (
        "room_id:x:rate5m_other + x_total"
    )
    with pytest.raises(EvalError, match="label matchers"):
        inline('room_id:x:rate5m{room_id="a"}', RECORDINGS, EVAL_MS)
    with pytest.raises(EvalError, match="offset but no range"):
        inline("room_id:x:rate5m offset 5m", RECORDINGS, EVAL_MS)


def test_firings_apply_for_to_each_run_of_evaluations() -> None:
    def at(*minutes: float) -> list[list]:
        return [[m * 60, "1"] for m in minutes]

    # held from 10m: pending, firing at 11m; a gap at 12m15s; back from 12m30s: fires at 13m30s
    values = at(10, 10.25, 10.5, 10.75, 11, 11.25, 11.5, 11.75, 12, 12.5, 12.75, 13, 13.25, 13.5)
    assert firings(values, 15_000, 60_000) == [660_000, 810_000]
    assert firings(at(10, 10.25), 15_000, 60_000) == []
    assert firings(at(10, 10.5), 15_000, 0) == [600_000, 630_000]


def test_shift_keeps_the_alignment_and_places_a_session_without_end() -> None:
    now = 1_800_000_123_456
    moved, delta = shift_to_now(SimConfig(end_ms=END), now)
    assert delta % 60_000 == 0 and delta % EVAL_MS == 0
    assert 0 <= now - moved.end_ms < 60_000
    placed, zero = shift_to_now(SimConfig(), now)
    assert zero == 0 and placed.end_ms == now - now % 60_000

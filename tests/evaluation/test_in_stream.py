"""The alert evaluation's rules: matching, delays, rates, and a pipeline faithful to the worker."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from streams.core.funnel import Counts
from streams.evaluation.in_stream import (
    ClosedWindow,
    EvalConfig,
    SessionOutcome,
    close_windows,
    evaluate,
    incident_evidence,
    parse_seeds,
    report,
)
from streams.evaluation.tables import markdown
from streams.sim import SimConfig, compute_truth, generate

SIZE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % SIZE
CONFIG = EvalConfig(seeds=(1,), rooms=4, minutes=30)


def at(minutes: float) -> int:
    return T0 + round(minutes * SIZE)


def incident(room: str, kind: str, start: float, end: float) -> dict:
    return {"room_id": room, "kind": kind, "start_ms": at(start), "end_ms": at(end)}


def session(
    incidents: list[dict], detections: list[tuple[str, str, int]], *, quiet: bool = False
) -> SessionOutcome:
    enters = {"r1": 400.0, "r2": 400.0, "r3": 400.0, "small": 50.0}
    return SessionOutcome(
        seed=1,
        quiet=quiet,
        room_hours=len(enters) * 30 / 60,
        room_enters=enters,
        evidence=[10.0] * len(incidents),
        incidents=incidents,
        detections=detections,
    )


def test_true_and_false_positives_recall_and_delays() -> None:
    incidents = [
        incident("r1", "payment_outage", 10.5, 15.5),  # starts half-way into window 10
        incident("r2", "stockout", 12.0, 16.0),
        incident("r3", "traffic_cut", 5.0, 9.0),  # never found
        incident("small", "payment_outage", 5.0, 9.0),  # not eligible: 50 enters/min
    ]
    detections = [
        ("r1", "payment_trouble", at(11) + 6_000),  # window 10 closed: delay 1 window, 36 s
        ("r1", "payment_trouble", at(14) + 6_000),  # again, inside: a true positive too
        ("r1", "payment_trouble", at(15.5) + 2 * SIZE + 1),  # after end + slack: false
        ("r1", "traffic_cut", at(12)),  # wrong kind for r1's incident
        ("r2", "conversion_drop", at(15) + 6_000),  # stock-out: window 14 closed, delay 3
        ("r3", "traffic_cut", at(5) - 1),  # before its incident started
        ("small", "payment_trouble", at(8)),  # found, but outside the target's condition
    ]
    rep = report([session(incidents, detections)], CONFIG)
    kinds = rep["incident_kinds"]
    pay = kinds["payment_outage"]
    assert (pay["incidents"], pay["eligible"], pay["recall"], pay["recall_all"]) == (2, 1, 1, 1)
    assert (pay["delay_windows_median"], pay["delay_s_median"]) == (1, 36.0)
    stock = kinds["stockout"]
    assert (stock["recall"], stock["delay_windows_median"], stock["delay_s_median"]) == (
        1,
        3,
        186.0,
    )
    assert kinds["traffic_cut"]["recall"] == 0
    assert kinds["traffic_cut"]["delay_windows_median"] is None
    assert kinds["conversion_decay"]["recall"] is None  # no such incident
    alerts = rep["alert_kinds"]
    assert (
        alerts["payment_trouble"]["detections"],
        alerts["payment_trouble"]["true_positives"],
    ) == (
        4,
        3,
    )
    assert alerts["traffic_cut"]["precision"] == 0
    assert alerts["conversion_drop"]["precision"] == 1
    assert rep["delays"]["delay_windows_median"] == 2  # r1 (1) and r2 (3), eligible only
    by_room = {r["room_id"]: r for r in rep["incidents"]}
    assert by_room["r1"]["fired_at_ms"] == at(11) + 6_000
    assert not by_room["r3"]["detected"] and not by_room["small"]["eligible"]


def test_false_alerts_per_room_hour_come_from_incident_free_sessions() -> None:
    quiet = session(
        [], [("r1", "conversion_drop", at(3)), ("small", "traffic_cut", at(9))], quiet=True
    )
    busy = session([incident("r1", "payment_outage", 1, 5)], [("r2", "traffic_cut", at(3))])
    rep = report([quiet, replace(quiet, seed=2, detections=[]), busy], CONFIG)
    fa = rep["false_alerts"]
    assert (fa["alerts"], fa["room_hours"], fa["per_room_hour"]) == (2, 4.0, 0.5)
    # three of the four rooms have >= 200 enters a minute
    assert (fa["alerts_eligible_rooms"], fa["room_hours_eligible_rooms"]) == (1, 3.0)
    assert rep["alert_kinds"]["conversion_drop"]["false_per_room_hour"] == 0.25
    # and every false alert over every session: the busy session's traffic cut too
    assert (fa["all_sessions_alerts"], fa["all_sessions_room_hours"]) == (3, 6.0)
    assert [(f["room_id"], f["quiet"]) for f in rep["false_alerts_list"]] == [
        ("r1", True),
        ("small", True),
        ("r2", False),
    ]
    assert rep["alert_kinds"]["traffic_cut"]["precision"] == 0  # the busy session's alert
    assert rep["alert_kinds"]["payment_trouble"]["detections"] == 0


def test_any_source_of_detections_plugs_in() -> None:
    # what streams.evaluation.prometheus_rules hands over: (room_id, kind, fired_at_ms), only
    rules = [("r1", "payment_trouble", at(12) + 30_000)]
    rep = report([session([incident("r1", "payment_outage", 10.5, 15.5)], rules)], CONFIG)
    row = rep["incident_kinds"]["payment_outage"]
    assert row["recall"] == 1
    assert row["delay_windows_median"] == 2  # windows 10 and 11 had closed by then
    assert row["delay_s_median"] == 120.0
    result = {"config": {**vars(CONFIG), "seeds": [1]}, "records": 1, "rules": rep}
    text = markdown(result)
    assert "**rules**" in text and "| payment_outage | payment_trouble | 1 (1) | 1 |" in text


def test_evidence_sees_a_drop_and_no_drop() -> None:
    def windows(created: list[int]) -> list[ClosedWindow]:
        return [
            ClosedWindow(at(i), Counts(product_clicks=200, orders_created=c), at(i + 1))
            for i, c in enumerate(created)
        ]

    inc = incident("r1", "conversion_decay", 10, 14)
    steady = windows([20] * 30)
    assert incident_evidence(steady, inc, SIZE) == 0
    assert incident_evidence(steady[9:15], inc, SIZE) is None  # too little outside it
    dropped = windows([20] * 10 + [10] * 4 + [20] * 16)
    # 40 orders where 80 were expected: 40 ln(1/2) + 40
    assert incident_evidence(dropped, inc, SIZE) == pytest.approx(40 - 40 * 0.6931, rel=1e-3)
    # a flash sale's boosted windows are no baseline (here: a higher rate outside)
    flash = windows([20] * 10 + [10] * 4 + [20] * 6 + [60] * 4 + [20] * 6)
    assert incident_evidence(flash, inc, SIZE, [(at(20), at(24))]) == pytest.approx(
        incident_evidence(dropped, inc, SIZE)
    )


def test_a_stockouts_evidence_is_its_best_sellers() -> None:
    def windows(best: list[int]) -> list[ClosedWindow]:
        return [
            ClosedWindow(
                at(i),
                Counts(product_clicks=500, orders_created=b + 9),
                at(i + 1),
                {"p-best": [100, b], "p-other": [400, 9]},
            )
            for i, b in enumerate(best)
        ]

    inc = incident("r1", "stockout", 10, 14)
    assert incident_evidence(windows([10] * 30), inc, SIZE) == 0
    # four windows without the best seller's 10 orders each: x = 0, m = 40
    stocked_out = windows([10] * 10 + [0] * 4 + [10] * 16)
    assert incident_evidence(stocked_out, inc, SIZE) == pytest.approx(40.0)
    # the room's orders per click fell from 19/500 to 9/500: 36 ln(36/76) + 40, much weaker
    decay = incident("r1", "conversion_decay", 10, 14)
    assert incident_evidence(stocked_out, decay, SIZE) == pytest.approx(13.1, abs=0.05)
    # no product counts (a room from before they were kept): nothing to judge by
    bare = [ClosedWindow(w.start, w.counts, w.closed_at_ms) for w in stocked_out]
    assert incident_evidence(bare, inc, SIZE) is None


def test_parse_seeds() -> None:
    assert parse_seeds("1-4") == (1, 2, 3, 4)
    assert parse_seeds("7") == (7,)
    assert parse_seeds("1,3,5-6,3") == (1, 3, 5, 6)
    for bad in ("", "x", "4-1", "1-", "-3"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_the_pipeline_closes_the_windows_of_the_truth() -> None:
    """Decode + PartitionProcessor at real-time pace close the windows of the independently
    computed truth, with the same counts, in order; only a room's newest windows, which the
    partition's watermark has not passed, stay open."""
    sim = SimConfig(seed=3, rooms=3, minutes=5, rate=300, end_ms=T0 + 30_500, partitions=2)
    truth = compute_truth(sim, generate(sim))
    expected: dict[str, dict[int, dict]] = {}
    for w in truth["windows"]:
        expected.setdefault(w["room_id"], {})[w["window_start"]] = w

    def check(got: dict[str, list[ClosedWindow]]) -> int:
        assert set(got) == set(expected)
        for room, windows in got.items():
            starts = [w.start for w in windows]
            assert starts == sorted(expected[room])[: len(starts)], room
            assert len(starts) >= len(expected[room]) - 2, room
            for w in windows:
                want = expected[room][w.start]
                for name in ("impressions", "enters", "product_clicks", "orders_paid"):
                    assert getattr(w.counts, name) == want[name], (room, w.start, name)
                assert w.closed_at_ms >= w.start + SIZE + sim.grace_ms
        return sum(len(ws) for ws in got.values())

    # without the idle rule the windows are a function of the records alone
    plain = close_windows(sim, idle_timeout_s=1e9).rooms
    closed = check(plain)
    # with the worker's idle rule (30 s) the same windows close, no later, and maybe more
    idle = close_windows(sim)
    assert check(idle.rooms) >= closed
    for room, windows in plain.items():
        for a, b in zip(idle.rooms[room], windows, strict=False):
            assert a.closed_at_ms <= b.closed_at_ms
    assert idle.incidents == truth["incidents"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "evaluate-alerts", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "x"], "expected seeds like 1-12"),
        (["--seeds", "1-2", "--rooms", "0"], "rooms, minutes and rate must be positive"),
        (["--minutes", "-1"], "rooms, minutes and rate must be positive"),
        (["--jobs", "0"], "--jobs: expected at least 1"),
    ],
)
def test_bad_options_get_one_line(args: list[str], message: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr


#: The small configuration run by `make test` (about 25 s on two cores). The full one is
#: `livepulse evaluate-alerts` with its defaults (docs/alerts.md).
SMALL = EvalConfig(seeds=(1, 2, 3, 4), rooms=6, minutes=20, rate=800)


@pytest.mark.slow
def test_small_evaluation_meets_the_targets_it_can() -> None:
    """The issue's targets, with margins for 16 incidents and 8 incident-free room-hours.

    Targets: recall >= 0.95 for payment trouble and traffic cuts (rooms >= 200 enters/min),
    median delay <= 2 closed windows, <= 1 false alert per 10 room-hours. The stock-out and
    conversion-decay target (recall >= 0.9) is not met, in the full run either: many of those
    incidents hold too little evidence in per-window counts (docs/alerts.md). 20-minute
    sessions leave a stock-out too little history to be judged against (none of these four is
    found; the stock-out test is exercised in test_detector.py); for decay only a floor is kept.
    """
    result = evaluate(SMALL, jobs=2)
    rep = result["detector"]
    kinds = rep["incident_kinds"]
    big = [kinds["payment_outage"], kinds["traffic_cut"]]
    eligible = sum(k["eligible"] for k in big)
    found = sum(round(k["recall"] * k["eligible"]) for k in big if k["eligible"])
    assert eligible >= 5
    assert found >= 0.8 * eligible  # target 0.95: one miss allowed at this size
    assert kinds["traffic_cut"]["delay_windows_median"] <= 2
    assert rep["delays"]["delay_windows_median"] <= 3  # target 2, over all kinds
    fa = rep["false_alerts"]
    assert fa["room_hours"] == 8
    assert fa["per_room_hour"] <= 0.5  # target 0.1: at most 4 alerts in 8 room-hours
    assert fa["all_sessions_per_room_hour"] <= 0.5
    for kind, a in rep["alert_kinds"].items():
        assert a["precision"] is None or a["precision"] >= 0.7, kind
    decay = kinds["conversion_decay"]
    assert decay["recall_all"] >= 0.25  # the floor (target 0.9, not reached)
    assert result["records"] > 5_000_000

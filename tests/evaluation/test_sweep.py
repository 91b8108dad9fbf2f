"""The sweep on a handful of rooms: the detection curves' shape, with margins (the full
curves are ``livepulse evaluate-alerts --sweep``, in docs/alerts.md)."""

from __future__ import annotations

import pytest

from streams.core.detector import DetectorConfig
from streams.evaluation import sweep
from streams.evaluation.tables import sweep_markdown
from streams.sim.family import WINDOW_MS, Incident, SweepSession, generate, plan_incidents

SEED = 3  # not a tuning or held-out seed of the full sweep


@pytest.fixture(scope="module")
def result() -> dict:
    configs = [
        # audience losses in rooms of 200 enters a minute: a fifth, half and all of them
        sweep.SweepConfig(
            seeds=(SEED,),
            stages=("audience",),
            sizes=(200,),
            drops=(0.2, 0.5, 1.0),
            durations=(2, 3),
            quiet_sessions=0,
        ),
        # payment outages (a fifth, all) for two windows in a room of 1 000 enters a minute,
        # and one incident-free session of two rooms for 40 minutes
        sweep.SweepConfig(
            seeds=(SEED,),
            stages=("payment",),
            sizes=(1000,),
            drops=(0.2, 1.0),
            durations=(2,),
            quiet_rooms=2,
            quiet_minutes=40,
        ),
    ]
    results = [r for config in configs for r in sweep.run(config)]
    quiet = [r for r in results if not r.session.incidents]
    assert quiet and quiet[0].session.rooms_sizes == (1000,)
    return sweep.report(results, configs[0])


def recall(rows: list[dict], **where: object) -> float:
    chosen = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert chosen, where
    return sum(r["detected"] for r in chosen) / len(chosen)


def test_bigger_drops_are_found_at_least_as_often(result: dict) -> None:
    rows = result["detector"]["incidents"]
    small = recall(rows, stage="audience", drop=0.2)
    assert recall(rows, stage="audience", drop=1.0) >= 0.99
    assert recall(rows, stage="audience", drop=0.5) >= max(small, 0.5)
    assert small <= 0.5  # a fifth of the audience is within a room's own drift


def test_a_full_payment_outage_in_a_large_room_is_always_found(result: dict) -> None:
    rows = result["detector"]["incidents"]
    (outage,) = [r for r in rows if r["stage"] == "payment" and r["drop"] == 1.0]
    assert outage["paid_per_minute"] >= 8
    assert outage["detected"]
    assert 1 <= outage["delay_windows"] <= 3
    assert recall(rows, stage="payment", drop=1.0) >= recall(rows, stage="payment", drop=0.2)


def test_incident_free_sessions_stay_nearly_quiet(result: dict) -> None:
    fa = result["detector"]["false_alerts"]
    assert fa["room_hours"] == pytest.approx(80 / 60)
    assert fa["alerts"] <= 1


def test_the_tables_show_every_stage_and_the_targets(result: dict) -> None:
    text = sweep_markdown(result, "detector")
    assert "*audience*" in text and "*payment*" in text
    assert "| 100 % | 2 |" in text
    assert "false alert per 10 room-hours" in text


def test_incidents_shape_only_their_own_stage() -> None:
    end = 1_750_000_020_000 - 1_750_000_020_000 % WINDOW_MS
    (inc,) = plan_incidents(5, "payment", end, sizes=(200,), drops=(1.0,), durations=(2,))
    assert inc.factor(inc.start_ms - 1) == 1.0
    assert inc.factor(inc.end_ms) == 1.0
    assert inc.factor(inc.end_ms - 1) == 0.0
    ramp = Incident("r", "audience", 0.6, 1, 3, 200, 0)
    depths = [ramp.factor(t * WINDOW_MS + 1) for t in range(4)]
    assert depths == sorted(depths, reverse=True) and depths[-1] == pytest.approx(0.4)
    session = SweepSession(5, 26, end, (inc,))
    records = list(generate(session))
    assert [r.arrival_ms for r in records] == sorted(r.arrival_ms for r in records)
    assert records == list(generate(session))  # deterministic


def test_bad_sweeps_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown stages"):
        sweep.SweepConfig(stages=("nope",)).check()
    with pytest.raises(ValueError):
        sweep.SweepConfig(detector=DetectorConfig(audience_windows=0)).check()

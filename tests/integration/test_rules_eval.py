"""The room alert rules against a simulated session, through a real Prometheus server
(streams.evaluation.prometheus_rules); and the shape every rule must have, as that server parsed it.

promtool and prometheus (Debian's package "prometheus") are required in CI; without them the
tests are skipped on a laptop. No broker or worker is needed.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import orjson

from streams.evaluation.in_stream import session_end
from streams.evaluation.prometheus_rules import (
    DEFAULT_RULES_DIR,
    KINDS,
    evaluate_rules,
    load_rules,
    prometheus_server,
)
from streams.sim import SimConfig, incidents
from tests.support.promtool import _required, promtool

#: 4 rooms for 20 minutes at 400 events/s; one payment outage, 8.3-15.3 min into the session
#: in room-0001 (about 8 orders created a minute there). End time far from the wall clock:
#: evaluate_rules moves the session next to it and the detections back.
SESSION = SimConfig(
    seed=3,
    rooms=4,
    minutes=20,
    rate=400,
    incidents=("payment_outage",),
    end_ms=1_750_000_000_000,
)
SLACK_MS = 5 * 60_000  # the 3-minute window and `for` still see the outage after it ends


def prometheus() -> str:
    return _required(
        "prometheus", ".ci/run should install Debian's prometheus", "apt-get install prometheus"
    )


def test_payment_outage_fires_only_the_payment_alert_only_in_its_room(tmp_path: Path) -> None:
    (incident,) = incidents(SESSION)
    assert incident["kind"] == "payment_outage"
    timings: dict[str, float] = {}
    started = time.monotonic()
    found = evaluate_rules(
        SESSION,
        promtool=promtool(),
        prometheus=prometheus(),
        workdir=tmp_path,
        timings=timings,
    )
    print(f"\nrules_eval: {time.monotonic() - started:.1f} s {timings} -> {found}")
    # the simulator's tails halve a room's audience within a minute or so: an audience loss by
    # its definition, apart from the incident
    found, tails = session_end(SESSION, found)
    assert {kind for _, kind, _ in tails} <= {"audience_loss"}
    # the volume rule also fires in room-0002 as its traffic comes back from flash sales that
    # filled 8 of its first 13 minutes (its level is then the sales'): a known limit of
    # LivePulseRoomAudienceLoss (docs/alerts.md); this test is about the ratio rules
    volume = [d for d in found if d[1] == "audience_loss"]
    assert {r for r, _, _ in volume} <= {"room-0002"}
    found = [d for d in found if d[1] != "audience_loss"]
    room, start, end = incident["room_id"], incident["start_ms"], incident["end_ms"]
    assert found, "no alert fired"
    assert {r for r, _, _ in found} == {room}, "an alert fired in a room without incident"
    assert {k for _, k, _ in found} == {"payment_trouble"}
    first = min(at for _, _, at in found)
    assert start < first <= end + SLACK_MS, (first - start) / 60_000
    assert all(start < at <= end + SLACK_MS for _, _, at in found)


def test_every_rule_has_the_shape_alertmanager_and_the_evaluation_rely_on(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    rule_files = sorted(DEFAULT_RULES_DIR.glob("*.yml"))
    with prometheus_server(prometheus(), tmp_path, rule_files) as url:
        with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=30) as r:
            groups = orjson.loads(r.read())["data"]["groups"]
        recordings, _ = load_rules(url)
    alerts = [rule for g in groups for rule in g["rules"] if rule["type"] == "alerting"]
    assert all(rule["health"] != "err" for g in groups for rule in g["rules"])
    by_scope: dict[str, set[str]] = {}
    for rule in alerts:
        name, labels, notes = rule["name"], rule["labels"], rule["annotations"]
        assert rule["duration"] > 0, f"{name}: no for:"
        assert labels.get("severity") in {"critical", "warning"}, name
        assert labels.get("scope") in {"room", "pipeline"}, name
        assert notes.get("summary") and notes.get("runbook"), name
        by_scope.setdefault(labels["scope"], set()).add(name)
        if labels["scope"] == "room":
            assert "$labels.room_id" in notes["summary"], name
            assert 'livepulse_room_enters_total{room_id="__other__"}' in rule["query"], name
    assert by_scope["room"] == set(KINDS)
    assert by_scope["pipeline"] == {
        "LivePulseWorkerDown",
        "LivePulseWatermarkLagGrowing",
        "LivePulseConsumerLagGrowing",
        "LivePulseDeadLetterRateHigh",
    }
    # the names the dashboards use
    xs = ["impressions", "enters", "product_impressions", "product_clicks"]
    xs += ["orders_created", "orders_paid", "gmv", "late_events"]
    rs = ["enter", "click_through", "conversion", "click_to_order", "payment", "gpm", "aov"]
    wanted = {f"room_id:livepulse_room_{x}:rate{w}" for x in xs for w in ("1m", "5m")}
    wanted |= {f"room_id:livepulse_room_{r}:ratio_rate{w}" for r in rs for w in ("1m", "5m")}
    wanted |= {f"job:livepulse_room_{x}:rate5m" for x in xs}
    wanted |= {f"job:livepulse_room_{r}:ratio_rate5m" for r in rs}
    assert wanted <= set(recordings), sorted(wanted - set(recordings))

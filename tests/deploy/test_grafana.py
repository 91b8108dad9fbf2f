"""The Grafana dashboard: generated JSON committed as generated, complete panels, valid PromQL,
metric names from the contract, provisioning that points where the dashboard looks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.grafana.queries import DASHBOARD, dashboard_queries, load, panels, room_variable
from tests.support.promtool import promtool, tools_venv

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
RULES = ROOT / "deploy" / "prometheus" / "rules"

# The metric contract of issue #6 (streams/worker/metrics.py and the recording rules).
RATES = (
    "impressions",
    "enters",
    "product_impressions",
    "product_clicks",
    "orders_created",
    "orders_paid",
    "gmv",
    "late_events",
)
RATIOS = ("enter", "click_through", "conversion", "click_to_order", "payment", "gpm", "aov")
COUNTERS = (
    "impressions",
    "enters",
    "leaves",
    "watch_seconds",
    "product_impressions",
    "product_clicks",
    "orders_created",
    "orders_paid",
    "gmv",
    "refunds",
    "refund_amount",
    "late_events",
)
WINDOW = (
    *(c for c in COUNTERS if c != "late_events"),
    "unique_viewers",
    "enter_ratio",
    "click_through_ratio",
    "conversion_ratio",
    "click_to_order_ratio",
    "gmv_per_thousand_enters",
    "average_order_value",
    "order_growth_ratio",
    "gmv_growth_ratio",
    "start_timestamp_seconds",
    # issue 15: people, rates in people, watch time, UV value, online viewers
    "impression_users",
    "viewers",
    "product_impression_users",
    "clickers",
    "buyers",
    "enter_users_ratio",
    "click_through_users_ratio",
    "click_to_buy_users_ratio",
    "conversion_users_ratio",
    "payment_success_ratio",
    "refund_ratio",
    "unpaid_orders",
    "uv_value",
    "average_order_value_per_buyer",
    "watch_seconds_per_viewer",
    "average_watch_seconds",
    "online_viewers",
    "online_viewers_peak",
)
SESSION = ("viewers", "buyers", "online_viewers_peak")
CONTRACT = (
    {f"livepulse_room_{x}_total" for x in COUNTERS}
    | {f"livepulse_room_window_{x}" for x in WINDOW}
    | {f"livepulse_room_session_{x}" for x in SESSION}
    | {
        "livepulse_room_alert_active",
        "livepulse_events_consumed_total",
        "livepulse_events_invalid_total",
        "livepulse_events_late_total",
        "livepulse_events_applied_total",
        "livepulse_events_duplicate_total",
        "livepulse_windows_closed_total",
        "livepulse_rooms",
        "livepulse_partition_watermark_lag_seconds",
        "livepulse_partition_watermark_timestamp_seconds",
        "livepulse_consumer_lag_records",
        "up",
    }
    | {f"room_id:livepulse_room_{x}:rate{w}" for x in RATES for w in ("1m", "5m")}
    | {f"room_id:livepulse_room_{r}:ratio_rate{w}" for r in RATIOS for w in ("1m", "5m")}
    | {f"job:livepulse_room_{x}:rate5m" for x in RATES}
    | {f"job:livepulse_room_{r}:ratio_rate5m" for r in RATIOS}
)
# Metric names in PromQL: words with an underscore or a colon that are not followed by "(" (a
# function) and are not label names or PromQL keywords.
_NAME = re.compile(r"(?<![\w:\"'])([a-zA-Z_][\w:]*)(?![\w:]*\s*\()")
_NOT_METRICS = {
    "by",
    "without",
    "on",
    "ignoring",
    "and",
    "or",
    "unless",
    "group_left",
    "group_right",
    "bool",
    "offset",
    # aggregation operators, when a `by (...)` stands between them and their "("
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
}


def _panels() -> list[tuple[str, dict]]:
    return panels(load())


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", without_labels
    )
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    return {m for m in _NAME.findall(without_ranges) if m not in _NOT_METRICS and not m.isdigit()}


def test_committed_json_is_what_the_generator_writes() -> None:
    python = tools_venv("python")
    proc = subprocess.run(
        [python, str(GRAFANA / "dashboard.py"), "--stdout"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    committed = DASHBOARD.read_text(encoding="utf-8")
    assert proc.stdout == committed, (
        "deploy/grafana/dashboards/livepulse.json differs from what deploy/grafana/dashboard.py "
        "generates: run `make dashboard` and commit the result"
    )


def test_every_panel_has_a_unit_thresholds_and_a_query() -> None:
    found = _panels()
    assert len(found) >= 20
    for row, panel in found:
        where = f"{row} / {panel['title']}"
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{where}: no unit"
        steps = defaults.get("thresholds", {}).get("steps", [])
        assert len(steps) >= 2, f"{where}: thresholds need a base and at least one step"
        assert steps[0]["value"] is None, f"{where}: the first threshold step is the base"
        values = [s["value"] for s in steps[1:]]
        assert values == sorted(values), f"{where}: threshold steps out of order"
        assert all(s.get("color") for s in steps), f"{where}: a threshold without a colour"
        targets = panel.get("targets", [])
        assert targets, f"{where}: no query"
        ref_ids = [t.get("refId") for t in targets]
        assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), f"{where}: refIds {ref_ids}"
        for target in targets:
            assert target.get("expr", "").strip(), f"{where}: empty query"
        assert panel.get("description"), f"{where}: no description"


def test_panels_use_the_provisioned_prometheus() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    prometheus = [d for d in provisioned["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1
    assert prometheus[0]["url"] == "http://prometheus:9090"
    uid = prometheus[0]["uid"]
    board = load()
    for row, panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, (row, panel["title"])
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid


def test_rows_in_order_and_panels_inside_the_grid() -> None:
    board = load()
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == [
        "Overview: all rooms",
        "Room $room: online viewers and watch time",
        "Room $room: funnel in events and in people",
        "Room $room: conversion and growth over time",
        "Room $room: GMV, GPM, AOV, UV value",
        "In-stream alerts",
        "Pipeline: late and dead-lettered events",
        "Pipeline: workers, watermarks, consumer lag",
    ]
    taken: set[tuple[int, int]] = set()
    ids = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        assert panel["id"] not in ids
        ids.add(panel["id"])


def test_room_variable_and_required_views() -> None:
    assert room_variable() == ("livepulse_room_enters_total", "room_id")
    exprs = " ".join(t["expr"] for _, p in _panels() for t in p["targets"])
    # The funnel, in order, in one panel.
    funnel = next(p for _, p in _panels() if p["title"].startswith("Funnel"))
    stages = [re.search(r"livepulse_room_(\w+):rate5m", t["expr"])[1] for t in funnel["targets"]]
    assert stages == [
        "impressions",
        "enters",
        "product_impressions",
        "product_clicks",
        "orders_paid",
    ]
    # The funnel in people beside it, in the same order.
    people = next(p for _, p in _panels() if p["title"].startswith("Funnel in people"))
    stages = [re.search(r"livepulse_room_window_(\w+)\{", t["expr"])[1] for t in people["targets"]]
    assert stages == [
        "impression_users",
        "viewers",
        "product_impression_users",
        "clickers",
        "buyers",
    ]
    assert people["gridPos"]["y"] == funnel["gridPos"]["y"]
    for needed in (
        'livepulse_room_window_online_viewers{room_id="$room", window="open"}',
        'livepulse_room_window_online_viewers{room_id="$room", window="closed"}',
        "livepulse_room_window_online_viewers_peak",
        "livepulse_room_session_online_viewers_peak",
        "livepulse_room_session_viewers",
        "livepulse_room_window_enter_users_ratio",
        "livepulse_room_window_click_through_users_ratio",
        "livepulse_room_window_click_to_buy_users_ratio",
        "livepulse_room_window_conversion_users_ratio",
        "livepulse_room_window_watch_seconds_per_viewer",
        "livepulse_room_window_uv_value",
        "room_id:livepulse_room_enter:ratio_rate5m",
        "room_id:livepulse_room_click_through:ratio_rate5m",
        "room_id:livepulse_room_conversion:ratio_rate5m",
        "room_id:livepulse_room_click_to_order:ratio_rate5m",
        "livepulse_room_window_order_growth_ratio",
        "room_id:livepulse_room_gmv:rate5m",
        "room_id:livepulse_room_gpm:ratio_rate5m",
        "room_id:livepulse_room_aov:ratio_rate5m",
        "topk(10, room_id:livepulse_room_gmv:rate5m",
        "livepulse_events_late_total",
        "livepulse_events_invalid_total",
        "livepulse_partition_watermark_lag_seconds",
        "livepulse_consumer_lag_records",
        'up{job="livepulse"}',
        "livepulse_room_alert_active",
    ):
        assert needed in exprs, f"no panel queries {needed}"


def test_queries_name_only_contract_metrics() -> None:
    used: set[str] = set()
    for q in dashboard_queries("r1"):
        names = metric_names(q.expr)
        assert names, f"{q.panel}: no metric in {q.expr}"
        unknown = names - CONTRACT
        assert not unknown, f"{q.panel}: {sorted(unknown)} not in the metric contract"
        used |= names
    assert len(used) >= 25


def test_metric_name_extraction() -> None:
    assert metric_names(
        'sum by (topic, reason) (rate(livepulse_events_late_total{topic="a_b"}[5m]))'
    ) == {"livepulse_events_late_total"}
    assert metric_names("a:b:c and on (room_id) (x_y * 60 >= 1) or vector(0)") == {
        "a:b:c",
        "x_y",
    }


def test_recording_rules_the_dashboard_uses_exist() -> None:
    files = sorted(RULES.glob("*.yml")) + sorted(RULES.glob("*.yaml"))
    if not files:
        pytest.skip("deploy/prometheus/rules/ has no rule files yet")
    recorded = {
        rule["record"]
        for path in files
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", [])
        for rule in group.get("rules", [])
        if "record" in rule
    }
    used = {name for q in dashboard_queries("r1") for name in metric_names(q.expr) if ":" in name}
    assert used <= recorded, f"recording rules missing: {sorted(used - recorded)}"


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), with the variables substituted."""
    queries = dashboard_queries("room-under-test")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q.expr}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(queries)} rules found" in proc.stdout


def test_dashboard_queries_substitutes_every_variable() -> None:
    queries = dashboard_queries("room-42", rate_interval="2m")
    targets = sum(len(p["targets"]) for _, p in _panels())
    assert len(queries) == targets
    for q in queries:
        assert "$" not in q.expr, q
    room = [q for q in queries if q.row.startswith("Room $room")]
    assert room and all('room_id="room-42"' in q.expr for q in room)
    assert any("[2m]" in q.expr for q in queries)
    assert any(q.instant for q in queries) and any(not q.instant for q in queries)

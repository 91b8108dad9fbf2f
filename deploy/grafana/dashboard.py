"""The LivePulse Grafana dashboard, as code (grafana-foundation-sdk, Grafana 11.6 schema).

    make dashboard                          # = .venv-tools/bin/python deploy/grafana/dashboard.py
    python deploy/grafana/dashboard.py      # writes deploy/grafana/dashboards/livepulse.json
    python deploy/grafana/dashboard.py --stdout

The SDK needs Python 3.11+ and lives in the tools venv (``make .venv-tools``), not in the
project's. The committed JSON is what Grafana provisions; tests/deploy/test_grafana.py fails
when it differs from what this file generates, and ``deploy/grafana/queries.py`` (stdlib only)
reads the panel queries back from that JSON for tests.

Rates and ratios come from the recording rules in deploy/prometheus/rules/recording.yml
(``room_id:livepulse_room_<x>:rate5m`` ...); window values, alerts and pipeline health from
the worker's own metrics. Money is in the events' currency units (unit ``short``): set
``MONEY_UNIT`` to e.g. ``currencyUSD`` when all rooms sell in one currency Grafana knows.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

OUTPUT = Path(__file__).parent / "dashboards" / "livepulse.json"

DASHBOARD_UID = "livepulse"
#: Must equal the uid in provisioning/datasources/prometheus.yml.
DATASOURCE_UID = "livepulse-prometheus"
DATASOURCE = dash_m.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)

MONEY_UNIT = "short"
RATIO_UNIT = "percentunit"
PER_MINUTE = "epm"  # events per minute
PER_SECOND = "eps"  # events per second

ROOM = 'room_id="$room"'


# --- thresholds -------------------------------------------------------------------------------
# Each is (base colour, [(value, colour), ...]). Funnel ratios follow the plausible ranges in
# streams/sim/sessions.py: below the low end of a range is yellow, far below is red.


@dataclass(frozen=True)
class Steps:
    base: str
    steps: tuple[tuple[float, str], ...]

    def build(self) -> dash.ThresholdsConfig:
        return (
            dash.ThresholdsConfig()
            .mode(dash_m.ThresholdsMode.ABSOLUTE)
            .steps(
                [dash_m.Threshold(None, self.base)]
                + [dash_m.Threshold(value, color) for value, color in self.steps]
            )
        )


def low_is_bad(red_below: float, yellow_below: float) -> Steps:
    return Steps("red", ((red_below, "yellow"), (yellow_below, "green")))


def high_is_bad(yellow_from: float, red_from: float) -> Steps:
    return Steps("green", ((yellow_from, "yellow"), (red_from, "red")))


#: Something that should never be zero while rooms are live (traffic, orders, GMV).
NONZERO = Steps("red", ((0.001, "green"),))
ENTER_RATE = low_is_bad(0.01, 0.03)  # enters / impressions; plausible 3–15 %
CTR = low_is_bad(0.02, 0.05)  # product clicks / product impressions; 5–15 %
CONVERSION = low_is_bad(0.002, 0.005)  # paid orders / enters; about 1–3 %
CLICK_TO_ORDER = low_is_bad(0.005, 0.015)  # paid / clicks; 2–10 % created x 70–95 % paid
PAYMENT = low_is_bad(0.5, 0.7)  # paid / created; 70–95 %
GROWTH = Steps("red", ((-0.5, "yellow"), (-0.2, "green")))  # vs the previous window
ALERT = Steps("green", ((1, "red"),))
UP = Steps("red", ((1, "green"),))
LATE_PER_S = high_is_bad(1, 10)
INVALID_PER_S = high_is_bad(0.1, 1)
ROOM_LATE_PER_MIN = high_is_bad(1, 10)
WATERMARK_LAG_S = high_is_bad(30, 120)  # a window is 60 s; grace is 5 s
CONSUMER_LAG = high_is_bad(10_000, 100_000)


# --- panels -----------------------------------------------------------------------------------


@dataclass
class Q:
    """One Prometheus query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass
class Grid:
    """Explicit positions: the SDK's automatic layout cannot put two short panels beside a
    tall one."""

    y: int = 0
    ids: int = 0
    panels: list = field(default_factory=list)

    def next_id(self) -> int:
        self.ids += 1
        return self.ids


def _targets(queries: list[Q]) -> list[prom.Dataquery]:
    out = []
    for i, q in enumerate(queries):
        target = (
            prom.Dataquery()
            .expr(q.expr)
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
            .legend_format(q.legend or "__auto")
        )
        target = target.instant() if q.instant else target.range()
        if q.table:
            target = target.format(prom_m.PromQueryFormat.TABLE)
        out.append(target)
    return out


def _common(panel, title: str, description: str, unit: str, steps: Steps, queries: list[Q]):
    panel = (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .thresholds(steps.build())
    )
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def stat_panel(title, description, unit, steps, queries, *, decimals=None, mappings=None):
    panel = _common(stat.Panel(), title, description, unit, steps, queries)
    panel = (
        panel.reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common_m.BigValueColorMode.VALUE)
        .graph_mode(common_m.BigValueGraphMode.NONE)
        .no_value("no data")
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if mappings:
        panel = panel.mappings(mappings)
    return panel


def series_panel(title, description, unit, steps, queries, *, decimals=None, min_val=None):
    panel = _common(timeseries.Panel(), title, description, unit, steps, queries)
    panel = (
        panel.thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common_m.GraphThresholdsStyleMode.DASHED)
        )
        .line_width(2)
        .fill_opacity(10)
        .span_nulls(False)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common_m.LegendDisplayMode.LIST)
            .placement(common_m.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_b.VizTooltipOptions().mode(common_m.TooltipDisplayMode.MULTI))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if min_val is not None:
        panel = panel.min(min_val)
    return panel


def bars_panel(title, description, unit, steps, queries, *, decimals=None):
    panel = _common(bargauge.Panel(), title, description, unit, steps, queries)
    panel = (
        panel.orientation(common_m.VizOrientation.HORIZONTAL)
        .display_mode(common_m.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .min(0)
        .no_value("no data")
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def timeline_panel(title, description, unit, steps, queries, mappings):
    panel = _common(statetimeline.Panel(), title, description, unit, steps, queries)
    return panel.mappings(mappings).show_value(common_m.VisibilityMode.NEVER).merge_values(True)


def table_panel(title, description, unit, steps, queries, hide: list[str]):
    panel = _common(table.Panel(), title, description, unit, steps, queries)
    return panel.with_transformation(
        dash_m.DataTransformerConfig(
            id_val="organize", options={"excludeByName": dict.fromkeys(hide, True)}
        )
    ).no_value("none active")


def value_map(mapping: dict[str, tuple[str, str]]) -> list:
    return [
        dash_m.ValueMap(
            options={
                value: dash_m.ValueMappingResult(text=text, color=color, index=i)
                for i, (value, (text, color)) in enumerate(mapping.items())
            }
        )
    ]


ALERT_STATES = value_map({"0": ("ok", "green"), "1": ("ALERT", "red")})
UP_STATES = value_map({"0": ("DOWN", "red"), "1": ("UP", "green")})


# --- the dashboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class At:
    """Where a panel goes in its row: ``y`` counts from the first line under the row's title."""

    x: int
    y: int
    w: int
    h: int


#: A panel builder and its place.
Placed = tuple[At, object]


def open_window(metric: str) -> str:
    """The room's open window's value of ``livepulse_room_window_<metric>`` (see ``closed``)."""
    return f'max(livepulse_room_window_{metric}{{{ROOM}, window="open"}})'


def closed(metric: str) -> str:
    """The room's last closed window's value of ``livepulse_room_window_<metric>``: one value
    per room; max() folds a copy that briefly exists on two workers during a partition
    hand-over."""
    return f'max(livepulse_room_window_{metric}{{{ROOM}, window="closed"}})'


def overview_row() -> list[Placed]:
    """All rooms at once: activity, money, conversion, alerting rooms, best and worst rooms."""
    return [
        (
            At(x=0, y=0, w=4, h=4),
            stat_panel(
                "Active rooms",
                "Rooms served by the workers (livepulse_rooms, role=active), summed over workers.",
                "short",
                Steps("red", ((1, "green"),)),
                [Q('sum(livepulse_rooms{role="active"})', "rooms", instant=True)],
                decimals=0,
            ),
        ),
        (
            At(x=4, y=0, w=5, h=4),
            stat_panel(
                "GMV per minute",
                "All rooms, 5-minute rate of paid GMV per minute, one value per currency.",
                MONEY_UNIT,
                NONZERO,
                [Q("job:livepulse_room_gmv:rate5m * 60", "{{currency}}", instant=True)],
                decimals=2,
            ),
        ),
        (
            At(x=9, y=0, w=5, h=4),
            stat_panel(
                "Paid orders per minute",
                "All rooms, 5-minute rate of paid orders.",
                PER_MINUTE,
                NONZERO,
                [
                    Q(
                        "job:livepulse_room_orders_paid:rate5m * 60",
                        "paid orders / min",
                        instant=True,
                    )
                ],
                decimals=1,
            ),
        ),
        (
            At(x=14, y=0, w=5, h=4),
            stat_panel(
                "Conversion (paid orders / enters)",
                "All rooms, ratio of 5-minute rates.",
                RATIO_UNIT,
                CONVERSION,
                [Q("job:livepulse_room_conversion:ratio_rate5m", "conversion", instant=True)],
                decimals=2,
            ),
        ),
        (
            At(x=19, y=0, w=5, h=4),
            stat_panel(
                "Rooms with an in-stream alert",
                "Rooms whose in-stream detector has any alert active "
                "(livepulse_room_alert_active == 1).",
                "short",
                Steps("green", ((1, "red"),)),
                [
                    Q(
                        "count(max by (room_id) (livepulse_room_alert_active) == 1) or vector(0)",
                        "rooms alerting",
                        instant=True,
                    )
                ],
                decimals=0,
            ),
        ),
        (
            At(x=0, y=4, w=12, h=9),
            bars_panel(
                "Top 10 rooms by GMV per minute",
                "5-minute rate of paid GMV per room, currency units per minute; the __other__ "
                "aggregate of rooms beyond the export cap is left out.",
                MONEY_UNIT,
                NONZERO,
                [
                    Q(
                        'topk(10, room_id:livepulse_room_gmv:rate5m{room_id!="__other__"} * 60)',
                        "{{room_id}} ({{currency}})",
                        instant=True,
                    )
                ],
                decimals=2,
            ),
        ),
        (
            At(x=12, y=4, w=12, h=9),
            bars_panel(
                "Lowest conversion: 10 rooms (paid orders / enters)",
                "Rooms with the lowest ratio of 5-minute rates of paid orders to enters, among "
                "rooms with at least one enter per minute.",
                RATIO_UNIT,
                CONVERSION,
                [
                    Q(
                        "bottomk(10, room_id:livepulse_room_conversion:ratio_rate5m"
                        " and on (room_id)"
                        ' (room_id:livepulse_room_enters:rate5m{room_id!="__other__"} * 60 >= 1))',
                        "{{room_id}}",
                        instant=True,
                    )
                ],
                decimals=2,
            ),
        ),
    ]


def online_row() -> list[Placed]:
    """Who is in the room: online viewers now and at the peak, people this session, watch time."""
    return [
        (
            At(x=0, y=0, w=12, h=8),
            series_panel(
                "Online viewers",
                "Enters minus leaves since the room's state began (a viewer without a leave "
                "stays counted): now (open window), at the end of each closed window, and the "
                "closed window's peak.",
                "short",
                NONZERO,
                [
                    Q(open_window("online_viewers"), "now"),
                    Q(closed("online_viewers"), "end of last closed window"),
                    Q(closed("online_viewers_peak"), "peak of last closed window"),
                ],
                decimals=0,
                min_val=0,
            ),
        ),
        (
            At(x=12, y=0, w=6, h=4),
            stat_panel(
                "Online now",
                "Enters minus leaves so far (the open window's running count).",
                "short",
                NONZERO,
                [Q(open_window("online_viewers"), "online", instant=True)],
                decimals=0,
            ),
        ),
        (
            At(x=18, y=0, w=6, h=4),
            stat_panel(
                "Peak online this session",
                "The largest online count at the end of any second of the room's session.",
                "short",
                NONZERO,
                [Q(f"max(livepulse_room_session_online_viewers_peak{{{ROOM}}})", "peak", True)],
                decimals=0,
            ),
        ),
        (
            At(x=12, y=4, w=6, h=4),
            stat_panel(
                "Viewers this session",
                "Distinct people who entered since the room's session began (累计观看人数).",
                "short",
                NONZERO,
                [Q(f"max(livepulse_room_session_viewers{{{ROOM}}})", "viewers", instant=True)],
                decimals=0,
            ),
        ),
        (
            At(x=18, y=4, w=6, h=4),
            stat_panel(
                "Buyers this session",
                "Distinct people who paid since the room's session began.",
                "short",
                NONZERO,
                [Q(f"max(livepulse_room_session_buyers{{{ROOM}}})", "buyers", instant=True)],
                decimals=0,
            ),
        ),
        (
            At(x=0, y=8, w=24, h=8),
            series_panel(
                "Watch time",
                "Of each closed window: watch time per viewer (人均观看时长: total watch time / "
                "distinct viewers) and per leave (average of the leaves' watch times).",
                "s",
                NONZERO,
                [
                    Q(closed("watch_seconds_per_viewer"), "per viewer"),
                    Q(closed("average_watch_seconds"), "per leave"),
                ],
                decimals=1,
                min_val=0,
            ),
        ),
    ]


def funnel_row() -> list[Placed]:
    """The room's funnel in events (left) and in people (right), each with its rates."""
    funnel_stages = (
        ("impressions", "impressions"),
        ("enters", "enters"),
        ("product_impressions", "product impressions"),
        ("product_clicks", "product clicks"),
        ("orders_paid", "paid orders"),
    )
    people_stages = (
        ("impression_users", "shown the room"),
        ("viewers", "viewers"),
        ("product_impression_users", "shown a product"),
        ("clickers", "clickers"),
        ("buyers", "buyers"),
    )

    return [
        (
            At(x=0, y=0, w=12, h=8),
            bars_panel(
                "Funnel: impressions → enters → product impressions → clicks → paid orders",
                "The room's funnel stages, 5-minute rates in events per minute (summed over "
                "workers). A red bar is a stage with no events at all.",
                PER_MINUTE,
                NONZERO,
                [
                    Q(f"room_id:livepulse_room_{name}:rate5m{{{ROOM}}} * 60", label, instant=True)
                    for name, label in funnel_stages
                ],
                decimals=1,
            ),
        ),
        (
            At(x=0, y=8, w=6, h=4),
            stat_panel(
                "Enter rate (enters / impressions)",
                "Ratio of 5-minute rates. Plausible range 3–15 %.",
                RATIO_UNIT,
                ENTER_RATE,
                [Q(f"room_id:livepulse_room_enter:ratio_rate5m{{{ROOM}}}", "enter rate", True)],
                decimals=1,
            ),
        ),
        (
            At(x=6, y=8, w=6, h=4),
            stat_panel(
                "Click-through (clicks / product impressions)",
                "Ratio of 5-minute rates. Plausible range 5–15 %.",
                RATIO_UNIT,
                CTR,
                [Q(f"room_id:livepulse_room_click_through:ratio_rate5m{{{ROOM}}}", "CTR", True)],
                decimals=1,
            ),
        ),
        (
            At(x=0, y=12, w=6, h=4),
            stat_panel(
                "Conversion (paid orders / enters)",
                "Ratio of 5-minute rates: the headline conversion. About 1–3 % is usual.",
                RATIO_UNIT,
                CONVERSION,
                [
                    Q(
                        f"room_id:livepulse_room_conversion:ratio_rate5m{{{ROOM}}}",
                        "conversion",
                        True,
                    )
                ],
                decimals=2,
            ),
        ),
        (
            At(x=6, y=12, w=6, h=4),
            stat_panel(
                "Click-to-order (paid orders / clicks)",
                "Ratio of 5-minute rates.",
                RATIO_UNIT,
                CLICK_TO_ORDER,
                [
                    Q(
                        f"room_id:livepulse_room_click_to_order:ratio_rate5m{{{ROOM}}}",
                        "click-to-order",
                        True,
                    )
                ],
                decimals=2,
            ),
        ),
        (
            At(x=12, y=0, w=12, h=8),
            bars_panel(
                "Funnel in people: shown the room → viewers → shown a product → clickers → buyers",
                "Distinct people (user_id) at each stage of the room's last closed window "
                "(HLL sketches: within 2 % of exact). A red bar is a stage nobody reached.",
                "short",
                NONZERO,
                [Q(closed(name), label, instant=True) for name, label in people_stages],
                decimals=0,
            ),
        ),
        (
            At(x=12, y=8, w=6, h=4),
            stat_panel(
                "Enter rate in people (viewers / people shown the room)",
                "Last closed window.",
                RATIO_UNIT,
                ENTER_RATE,
                [Q(closed("enter_users_ratio"), "enter rate (people)", True)],
                decimals=1,
            ),
        ),
        (
            At(x=18, y=8, w=6, h=4),
            stat_panel(
                "Click-through in people (clickers / people shown a product)",
                "Last closed window.",
                RATIO_UNIT,
                CTR,
                [Q(closed("click_through_users_ratio"), "CTR (people)", True)],
                decimals=1,
            ),
        ),
        (
            At(x=12, y=12, w=6, h=4),
            stat_panel(
                "Conversion in people (buyers / viewers)",
                "Last closed window.",
                RATIO_UNIT,
                CONVERSION,
                [Q(closed("conversion_users_ratio"), "conversion (people)", True)],
                decimals=2,
            ),
        ),
        (
            At(x=18, y=12, w=6, h=4),
            stat_panel(
                "Click-to-buy in people (buyers / clickers)",
                "Last closed window (商品点击-成交率).",
                RATIO_UNIT,
                CLICK_TO_ORDER,
                [Q(closed("click_to_buy_users_ratio"), "click-to-buy (people)", True)],
                decimals=2,
            ),
        ),
    ]


def over_time_row() -> list[Placed]:
    """The room's conversion, growth, payment success and orders over time."""
    return [
        (
            At(x=0, y=0, w=12, h=8),
            series_panel(
                "Conversion rate (paid orders / enters)",
                "Ratio of 1- and 5-minute rates, and the value of the room's last closed window.",
                RATIO_UNIT,
                CONVERSION,
                [
                    Q(f"room_id:livepulse_room_conversion:ratio_rate1m{{{ROOM}}}", "1m rate"),
                    Q(f"room_id:livepulse_room_conversion:ratio_rate5m{{{ROOM}}}", "5m rate"),
                    Q(closed("conversion_ratio"), "last closed window"),
                ],
                decimals=2,
                min_val=0,
            ),
        ),
        (
            At(x=12, y=0, w=12, h=8),
            series_panel(
                "Order and GMV growth vs the previous window",
                "Last closed window's paid orders (and GMV) over the window before it, minus 1. "
                "-100 % means nothing sold; absent when the previous window sold nothing.",
                RATIO_UNIT,
                GROWTH,
                [
                    Q(closed("order_growth_ratio"), "paid orders"),
                    Q(closed("gmv_growth_ratio"), "GMV"),
                ],
                decimals=0,
            ),
        ),
        (
            At(x=0, y=8, w=12, h=8),
            series_panel(
                "Payment success (paid / created orders)",
                "Ratio of 1- and 5-minute rates. A drop with steady created orders is payment "
                "trouble.",
                RATIO_UNIT,
                PAYMENT,
                [
                    Q(f"room_id:livepulse_room_payment:ratio_rate1m{{{ROOM}}}", "1m rate"),
                    Q(f"room_id:livepulse_room_payment:ratio_rate5m{{{ROOM}}}", "5m rate"),
                ],
                decimals=1,
                min_val=0,
            ),
        ),
        (
            At(x=12, y=8, w=12, h=8),
            series_panel(
                "Orders per minute",
                "Created and paid orders, 1-minute rates.",
                PER_MINUTE,
                NONZERO,
                [
                    Q(f"room_id:livepulse_room_orders_created:rate1m{{{ROOM}}} * 60", "created"),
                    Q(f"room_id:livepulse_room_orders_paid:rate1m{{{ROOM}}} * 60", "paid"),
                ],
                decimals=1,
                min_val=0,
            ),
        ),
    ]


def money_row() -> list[Placed]:
    """The room's GMV, GPM and AOV over time; UV value and AOV per buyer."""
    return [
        (
            At(x=0, y=0, w=8, h=8),
            series_panel(
                "GMV per minute",
                "Paid GMV, 1- and 5-minute rates in currency units per minute; and the GMV of the "
                "last closed window (per window, not per minute).",
                MONEY_UNIT,
                NONZERO,
                [
                    Q(f"room_id:livepulse_room_gmv:rate1m{{{ROOM}}} * 60", "1m rate"),
                    Q(f"room_id:livepulse_room_gmv:rate5m{{{ROOM}}} * 60", "5m rate"),
                    Q(closed("gmv"), "last closed window"),
                ],
                decimals=2,
                min_val=0,
            ),
        ),
        (
            At(x=8, y=0, w=8, h=8),
            series_panel(
                "GPM: GMV per thousand enters",
                "1000 × GMV / enters: ratio of 1- and 5-minute rates, and the last closed window.",
                MONEY_UNIT,
                NONZERO,
                [
                    Q(f"room_id:livepulse_room_gpm:ratio_rate1m{{{ROOM}}}", "1m rate"),
                    Q(f"room_id:livepulse_room_gpm:ratio_rate5m{{{ROOM}}}", "5m rate"),
                    Q(closed("gmv_per_thousand_enters"), "last closed window"),
                ],
                decimals=2,
                min_val=0,
            ),
        ),
        (
            At(x=16, y=0, w=8, h=8),
            series_panel(
                "AOV: average order value",
                "GMV / paid orders: ratio of 5-minute rates, and the last closed window.",
                MONEY_UNIT,
                NONZERO,
                [
                    Q(f"room_id:livepulse_room_aov:ratio_rate5m{{{ROOM}}}", "5m rate"),
                    Q(closed("average_order_value"), "last closed window"),
                ],
                decimals=2,
                min_val=0,
            ),
        ),
        (
            At(x=0, y=8, w=12, h=8),
            series_panel(
                "UV value: GMV per viewer",
                "GMV / viewers (distinct people who entered) of each closed window (UV价值).",
                MONEY_UNIT,
                NONZERO,
                [Q(closed("uv_value"), "UV value")],
                decimals=2,
                min_val=0,
            ),
        ),
        (
            At(x=12, y=8, w=12, h=8),
            series_panel(
                "AOV per buyer and per order",
                "GMV / buyers (distinct people who paid) and GMV / paid orders, of each "
                "closed window.",
                MONEY_UNIT,
                NONZERO,
                [
                    Q(closed("average_order_value_per_buyer"), "per buyer"),
                    Q(closed("average_order_value"), "per order"),
                ],
                decimals=2,
                min_val=0,
            ),
        ),
    ]


def alerts_row() -> list[Placed]:
    """The in-stream detector's alerts, for the room and all rooms."""
    return [
        (
            At(x=0, y=0, w=12, h=7),
            timeline_panel(
                "Alerts of room $room",
                "The worker's in-stream detector: conversion_drop, payment_trouble, traffic_cut, "
                "audience_loss, click_drop.",
                "none",
                ALERT,
                [
                    Q(
                        f"max by (kind) (livepulse_room_alert_active{{{ROOM}}})",
                        "{{kind}}",
                    )
                ],
                ALERT_STATES,
            ),
        ),
        (
            At(x=12, y=0, w=6, h=7),
            series_panel(
                "Rooms alerting, by kind",
                "Number of rooms with each in-stream alert active.",
                "short",
                Steps("green", ((1, "red"),)),
                [
                    Q(
                        "count by (kind) (max by (room_id, kind) "
                        "(livepulse_room_alert_active) == 1)",
                        "{{kind}}",
                    )
                ],
                decimals=0,
                min_val=0,
            ),
        ),
        (
            At(x=18, y=0, w=6, h=7),
            table_panel(
                "Active in-stream alerts",
                "Every room and kind whose alert is active now.",
                "none",
                ALERT,
                [
                    Q(
                        "max by (room_id, kind) (livepulse_room_alert_active) == 1",
                        instant=True,
                        table=True,
                    )
                ],
                hide=["Time", "Value"],
            ),
        ),
    ]


def late_row() -> list[Placed]:
    """Events consumed, late and dead-lettered."""
    return [
        (
            At(x=0, y=0, w=6, h=8),
            series_panel(
                "Events consumed per second, by topic",
                "Records read from the source topics, summed over workers.",
                PER_SECOND,
                NONZERO,
                [
                    Q(
                        "sum by (topic) (rate(livepulse_events_consumed_total[$__rate_interval]))",
                        "{{topic}}",
                    )
                ],
                decimals=1,
                min_val=0,
            ),
        ),
        (
            At(x=6, y=0, w=6, h=8),
            series_panel(
                "Late events per second, by topic and reason",
                "Events not applied: beyond the grace period (grace) or for a window already "
                "closed (closed).",
                PER_SECOND,
                LATE_PER_S,
                [
                    Q(
                        "sum by (topic, reason) "
                        "(rate(livepulse_events_late_total[$__rate_interval]))",
                        "{{topic}} {{reason}}",
                    )
                ],
                decimals=2,
                min_val=0,
            ),
        ),
        (
            At(x=12, y=0, w=6, h=8),
            series_panel(
                "Dead-lettered (invalid) events per second",
                "Records sent to live.deadletter, by source topic and reason "
                "(json, schema, key, clock).",
                PER_SECOND,
                INVALID_PER_S,
                [
                    Q(
                        "sum by (topic, reason) "
                        "(rate(livepulse_events_invalid_total[$__rate_interval]))",
                        "{{topic}} {{reason}}",
                    )
                ],
                decimals=2,
                min_val=0,
            ),
        ),
        (
            At(x=18, y=0, w=6, h=8),
            series_panel(
                "Late events of room $room per minute",
                "5-minute rate of the room's late events.",
                PER_MINUTE,
                ROOM_LATE_PER_MIN,
                [Q(f"room_id:livepulse_room_late_events:rate5m{{{ROOM}}} * 60", "late / min")],
                decimals=1,
                min_val=0,
            ),
        ),
    ]


def pipeline_row() -> list[Placed]:
    """Workers, watermarks and consumer lag."""
    return [
        (
            At(x=0, y=0, w=6, h=8),
            stat_panel(
                "Workers up",
                'Prometheus scrape health of each worker (up{job="livepulse"}).',
                "none",
                UP,
                [Q('up{job="livepulse"}', "{{instance}}", instant=True)],
                decimals=0,
                mappings=UP_STATES,
            ),
        ),
        (
            At(x=6, y=0, w=9, h=8),
            series_panel(
                "Watermark lag per partition",
                "Wall clock minus the partition's event-time watermark. Normally about the grace "
                "period; it grows while a partition's rooms are silent or its worker is behind.",
                "s",
                WATERMARK_LAG_S,
                [
                    Q(
                        "max by (partition) (livepulse_partition_watermark_lag_seconds)",
                        "partition {{partition}}",
                    )
                ],
                decimals=1,
                min_val=0,
            ),
        ),
        (
            At(x=15, y=0, w=9, h=8),
            series_panel(
                "Consumer lag per partition",
                "Records not yet read by the ingest stage, per source topic and partition.",
                "short",
                CONSUMER_LAG,
                [
                    Q(
                        "max by (topic, partition) (livepulse_consumer_lag_records)",
                        "{{topic}} [{{partition}}]",
                    )
                ],
                decimals=0,
                min_val=0,
            ),
        ),
    ]


#: (row title, its panels), in order; docs/deployment.md explains each row.
ROWS = (
    ("Overview: all rooms", overview_row),
    ("Room $room: online viewers and watch time", online_row),
    ("Room $room: funnel in events and in people", funnel_row),
    ("Room $room: conversion and growth over time", over_time_row),
    ("Room $room: GMV, GPM, AOV, UV value", money_row),
    ("In-stream alerts", alerts_row),
    ("Pipeline: late and dead-lettered events", late_row),
    ("Pipeline: workers, watermarks, consumer lag", pipeline_row),
)


def rows() -> list[tuple[str, list[Placed]]]:
    return [(title, panels()) for title, panels in ROWS]


def build() -> dash.Dashboard:
    room = (
        dash.QueryVariable("room")
        .label("Room")
        .description("Live room (room_id).")
        .datasource(DATASOURCE)
        .query("label_values(livepulse_room_enters_total, room_id)")
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(False)
        .include_all(False)
    )
    board = (
        dash.Dashboard("LivePulse: live-room funnel")
        .uid(DASHBOARD_UID)
        .description(
            "Per-room funnel, conversion, GMV and the health of the LivePulse pipeline. "
            "Generated by deploy/grafana/dashboard.py: edit that, not this JSON."
        )
        .tags(["livepulse", "live-commerce"])
        .editable()
        .time("now-1h", "now")
        .refresh("10s")
        .timezone("browser")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .with_variable(room)
    )
    grid = Grid()
    for title, panels in rows():
        board = board.with_row(
            dash.Row(title)
            .id(grid.next_id())
            .grid_pos(dash_m.GridPos(h=1, w=24, x=0, y=grid.y))
            .collapsed(False)
        )
        top = grid.y + 1
        bottom = top
        for at, panel in panels:
            place = dash_m.GridPos(h=at.h, w=at.w, x=at.x, y=top + at.y)
            board = board.with_panel(panel.id(grid.next_id()).grid_pos(place))  # type: ignore[attr-defined]
            bottom = max(bottom, top + at.y + at.h)
        grid.y = bottom
    return board


def render() -> str:
    model = build().build()
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", action="store_true", help="print instead of writing")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

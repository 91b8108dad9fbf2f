"""Writes the promtool unit tests of this directory: ``python deploy/prometheus/tests/generate.py``.

The tests' input series are hours of 15-second samples, too long to keep consistent by hand,
so they are built here from per-minute rates and phases (a flash sale, an outage, a restart),
and written as ``*_test.yml`` beside this file; ``promtool test rules`` runs those files, and
tests/deploy/test_rules.py checks that they are what this script writes. Edit here, run it,
then ``promtool test rules deploy/prometheus/tests/*.yml``.

Expected annotations are exact: when a rule's text changes, change the strings below.
Check times keep 30 s away from the moment a rule flips, because rule groups read each
other's newest samples in either order (promtool, like Prometheus, does not order groups).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).parent
PER_MIN = 4  # samples a minute (15 s)
SAMPLES = 60 * PER_MIN + 1  # one hour, 0m to 60m
W1, W2, W3, W4 = "worker-1:6066", "worker-2:6066", "worker-3:6066", "worker-4:6066"

Series = tuple[str, str, str | None]  # (series, values, comment)
Alert = tuple[dict[str, str], dict[str, str]]  # (labels, annotations)

# --- promtool notation and YAML -----------------------------------------------------------


def _num(v: float) -> str:
    text = f"{round(v, 6):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def notation(values: list[float | None]) -> str:
    """``values`` (``None``: no sample) as promtool's ``a+bxn`` / ``_xn`` notation."""
    tokens, i, n = [], 0, len(values)
    while i < n:
        if values[i] is None:
            j = i
            while j < n and values[j] is None:
                j += 1
            tokens.append("_" if j - i == 1 else f"_x{j - i}")
            i = j
            continue
        a = values[i]
        if i + 1 < n and values[i + 1] is not None:
            d = values[i + 1] - a
            j = i + 1
            while (
                j + 1 < n
                and values[j + 1] is not None
                and abs(values[j + 1] - values[j] - d) < 1e-9
            ):
                j += 1
            sign = "+" if d >= 0 else "-"
            tokens.append(f"{_num(a)}{sign}{_num(abs(d))}x{j - i}")
            i = j + 1
        else:
            tokens.append(_num(a))
            i += 1
    return " ".join(tokens)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _comment(text: str, indent: int) -> str:
    prefix = " " * indent + "# "
    lines = textwrap.wrap(
        " ".join(text.split()), 98, initial_indent=prefix, subsequent_indent=prefix
    )
    return "".join(line + "\n" for line in lines)


def group(
    series: Iterable[Series],
    alerts: Iterable[tuple[str, str, list[Alert]]] = (),
    exprs: Iterable[tuple[str, str, list[tuple[str, str]], str | None]] = (),
    comment: str = "",
) -> str:
    out = [_comment(comment, 2) if comment else "", "  - interval: 15s\n    input_series:\n"]
    for name, values, note in series:
        out.append(_comment(note, 6) if note else "")
        out.append(f"      - series: {_quote(name)}\n        values: {_quote(values)}\n")
    alerts = list(alerts)
    if alerts:
        out.append("    alert_rule_test:\n")
    for at, name, expected in alerts:
        out.append(f"      - eval_time: {at}\n        alertname: {name}\n")
        if not expected:
            out.append("        exp_alerts: []\n")
            continue
        out.append("        exp_alerts:\n")
        for labels, notes in expected:
            out.append("          - exp_labels:\n")
            out += [f"              {k}: {_quote(v)}\n" for k, v in labels.items()]
            out.append("            exp_annotations:\n")
            out += [f"              {k}: {_quote(v)}\n" for k, v in notes.items()]
    exprs = list(exprs)
    if exprs:
        out.append("    promql_expr_test:\n")
    for at, expr, samples, note in exprs:
        out.append(_comment(note, 6) if note else "")
        out.append(f"      - expr: {_quote(expr)}\n        eval_time: {at}\n")
        if not samples:
            out.append("        exp_samples: []\n")
            continue
        out.append("        exp_samples:\n")
        out += [f"          - labels: {_quote(lb)}\n            value: {v}\n" for lb, v in samples]
    return "".join(out)


def document(header: str, rule_files: list[str], groups: list[str]) -> str:
    out = [_comment(header, 0), "rule_files:\n", *(f"  - {r}\n" for r in rule_files)]
    out.append("evaluation_interval: 15s\ntests:\n")
    return "".join(out + groups)


def labels(instance: str, **extra: str) -> str:
    more = "".join(f',{k}="{v}"' for k, v in extra.items())
    return f'{{job="livepulse",instance="{instance}"{more}}}'


# --- rooms --------------------------------------------------------------------------------

#: A room's rates a minute, unless a room says otherwise.
BASE = {
    "impressions": 1000,
    "enters": 100,
    "product_impressions": 600,
    "product_clicks": 120,
    "orders_created": 12,
    "orders_paid": 9.6,
}
PAY_LAG_MIN = 0.5  # paid orders follow a change in created orders 30 s later
FLASH = {"*": 5, "orders_created": 7.5, "orders_paid": 7.5}  # 5x traffic, 1.5x orders per click
Phase = tuple[float, float, dict[str, float]]  # (from minute, to minute, multipliers)


def _multiplier(metric: str, t: float, phases: Iterable[Phase]) -> float:
    m = 1.0
    for a, b, mult in phases:
        if metric == "orders_paid" and ("orders_created" in mult or "*" in mult):
            a, b = a + PAY_LAG_MIN, b + PAY_LAG_MIN  # payments follow their orders
        if a <= t < b:
            m *= mult.get(metric, mult.get("*", 1.0))
    return m


def room_values(
    per_min: float,
    metric: str,
    *,
    scale: float = 1.0,
    phases: Iterable[Phase] = (),
    gap: tuple[float, float] | None = None,
    from_zero_after_gap: bool = False,
    born: float = 0,
) -> list[float | None]:
    """A room counter: sample k at k*15 s; the interval before it adds rate * multipliers."""
    phases = list(phases)
    values: list[float | None] = []
    v = 0.0
    first = round(born * PER_MIN)
    for k in range(SAMPLES):
        if k < first:
            values.append(None)
            continue
        if k > first:
            t = (k - 1) / PER_MIN  # the interval (k-1, k], by its start minute
            if gap and gap[0] <= t < gap[1]:
                values.append(None)
                continue
            if from_zero_after_gap and gap and k == round(gap[1] * PER_MIN) + 1:
                v = 0.0  # state lost: the restarted worker counts from 0
                values.append(v)
                continue
            v += per_min * scale * _multiplier(metric, t, phases) / PER_MIN
        values.append(v)
    return values


def room(name: str, note: str, instance: str = W1, **kw) -> list[Series]:
    out = []
    for i, (metric, per_min) in enumerate(BASE.items()):
        series = f"livepulse_room_{metric}_total{labels(instance, room_id=name)}"
        out.append((series, notation(room_values(per_min, metric, **kw)), note if i == 0 else None))
    return out


def moved_room(name: str, note: str, at_min: float) -> list[Series]:
    """Served by worker-1 until ``at_min``, then by worker-2, which reports the same totals."""
    out = []
    k = round(at_min * PER_MIN)
    for i, (metric, per_min) in enumerate(BASE.items()):
        values = room_values(per_min, metric)
        before = values[: k + 1] + [None] * (SAMPLES - k - 1)
        after = [None] * (k + 1) + values[k + 1 :]
        for instance, vals in ((W1, before), (W2, after)):
            series = f"livepulse_room_{metric}_total{labels(instance, room_id=name)}"
            out.append((series, notation(vals), note if i == 0 and instance == W1 else None))
    return out


ROOMS: list[tuple[str, str, dict]] = [
    ("steady", "no incident: nothing may fire", {}),
    (
        "traffic-cut",
        "enters fall to 15 % at 40m while impressions go on; product cards, clicks and orders "
        "follow a minute later",
        {
            "phases": [
                (40, 60, {"enters": 0.15}),
                (
                    41,
                    60,
                    {
                        "product_impressions": 0.15,
                        "product_clicks": 0.15,
                        "orders_created": 0.15,
                        "orders_paid": 0.15,
                    },
                ),
            ]
        },
    ),
    (
        "flash-sale",
        "3x the volume, three 4-minute flash sales (5x traffic, 1.5x click -> order) as close as "
        "the simulator places them: the click -> order ratio is high for most of the baseline "
        "window, and lower once they are over",
        {"scale": 3, "phases": [(14, 18, FLASH), (22, 26, FLASH), (30, 34, FLASH)]},
    ),
    (
        "small",
        "a tenth of the volume (10 enters/min): a payment outage at 20m and a traffic cut at 40m "
        "stay quiet",
        {"scale": 0.1, "phases": [(20, 30, {"orders_paid": 0.03}), (40, 60, {"enters": 0.15})]},
    ),
    (
        "tail",
        "end of the session: everything decays from 50m (to 50 %, 20 %, 5 %) and stops at 56m",
        {
            "phases": [
                (50, 52, {"*": 0.5}),
                (52, 54, {"*": 0.2}),
                (54, 56, {"*": 0.05}),
                (56, 60, {"*": 0}),
            ]
        },
    ),
    (
        "slow-tail",
        "end of a session that winds down slowly: everything loses 10 % a minute from 35m "
        "(to 8 % at 60m); the audience level follows, quiet",
        {"phases": [(35 + i, 36 + i, {"*": 0.9 ** (i + 1)}) for i in range(25)]},
    ),
    (
        "click-through",
        "product cards shown go on, but 70 % fewer are clicked from 40m (and so fewer orders)",
        {"phases": [(40, 60, {"product_clicks": 0.3, "orders_created": 0.3, "orders_paid": 0.3})]},
    ),
    (
        "audience",
        "the audience falls to a quarter at 40m: impressions, enters and everything after them; "
        "the funnel's ratios are unchanged",
        {"phases": [(40, 60, {"*": 0.25})]},
    ),
    (
        "restart",
        "worker restart that lost its state: no scrape 40m-41m, then every counter starts again "
        "from 0",
        {"gap": (40, 41), "from_zero_after_gap": True},
    ),
    (
        "restart-resume",
        "worker down 40m-42m with its state kept: the 2 minutes of backlog are applied in 30 s",
        {"gap": (40, 42), "phases": [(42, 42.5, {"*": 5})]},
    ),
    (
        "payment",
        "payment outage from 40m: 3 % of payments succeed, orders are still created",
        {"phases": [(40, 60, {"orders_paid": 0.03})]},
    ),
    (
        "conversion",
        "clicks go on but 70 % fewer orders are created (and paid) from 40m",
        {"phases": [(40, 60, {"orders_created": 0.3, "orders_paid": 0.3})]},
    ),
    (
        "stockout",
        "3x the volume; 40 % fewer orders per click from 40m (a best seller sold out): fires",
        {"scale": 3, "phases": [(40, 60, {"orders_created": 0.6, "orders_paid": 0.6})]},
    ),
    (
        "dip",
        "3x the volume; 28 % fewer orders per click from 40m: below the 35 % drop the rule "
        "needs, quiet",
        {"scale": 3, "phases": [(40, 60, {"orders_created": 0.72, "orders_paid": 0.72})]},
    ),
    (
        "payment-dip",
        "payments succeed 60 % as often from 40m (48 % instead of 80 %): above half the "
        "baseline, quiet",
        {"phases": [(40, 60, {"orders_paid": 0.6})]},
    ),
    (
        "few-orders",
        "normal traffic but a tenth of the clicks and orders (1.2 orders a minute): fewer orders "
        "per click from 20m to 30m and a payment outage from 40m are too few orders to tell, quiet",
        {
            "phases": [
                (0, 60, {"product_clicks": 0.1, "orders_created": 0.1, "orders_paid": 0.1}),
                (20, 30, {"orders_created": 0.3, "orders_paid": 0.3}),
                (40, 60, {"orders_paid": 0.03}),
            ]
        },
    ),
    (
        "enter-dip",
        "enters per impression fall to 55 % from 40m: above half the baseline, quiet",
        {"phases": [(40, 60, {"enters": 0.55})]},
    ),
    (
        "__other__",
        "the sum of rooms beyond the export cap, with a traffic cut at 40m: never a room alert",
        {"phases": [(40, 60, {"enters": 0.15})]},
    ),
]
LOUD_ROOMS = ("traffic-cut", "payment", "conversion", "audience", "tail", "click-through")
QUIET_ROOMS = [name for name, _, _ in ROOMS if name not in LOUD_ROOMS]
QUIET_ROOMS.remove("stockout")
QUIET_ROOMS.append("moved")

TC, PT, CD = "LivePulseRoomTrafficCut", "LivePulseRoomPaymentTrouble", "LivePulseRoomConversionDrop"
AL = "LivePulseRoomAudienceLoss"
CT = "LivePulseRoomClickThroughDrop"
ROOM_RUNBOOK = {
    TC: "Impressions continue but viewers do not get in: check the room's stream and entry page "
    "(player errors, region or age gating, a broken live card); compare with the room's "
    "impressions on the dashboard.",
    PT: "Payments are failing while shoppers keep ordering: check the payment provider's status "
    "and error rates for this room's shop, then the checkout of its products.",
    CD: "Shoppers click but do not order: check stock of the room's best sellers, prices and "
    "coupons of the products on sale, and the checkout page; ask the host.",
    CT: "Cards are shown but not clicked: check that the room's product cards render and open "
    "(images, prices, the card's link), and what the host is presenting.",
    AL: "The audience left or stopped arriving: check the room's placement in feeds and "
    "recommendations (a traffic boost that ended, a demotion), the stream itself (frozen video, "
    "audio), and whether the host is ending the session.",
}
ROOM_SEVERITY = {TC: "critical", PT: "critical", CD: "warning", AL: "warning", CT: "warning"}


def room_alert(name: str, room_id: str, summary: str) -> Alert:
    return (
        {"severity": ROOM_SEVERITY[name], "scope": "room", "room_id": room_id},
        {"summary": summary, "runbook": ROOM_RUNBOOK[name]},
    )


def traffic_cut(r: str) -> Alert:
    return room_alert(
        TC, r, f"Room {r}: enter rate at 15% of its baseline; 15 enters/min, usually 100."
    )


def payment(r: str, baseline: str) -> Alert:
    return room_alert(
        PT,
        r,
        f"Room {r}: only 2.4% of created orders paid over 3 min (36 created; baseline {baseline}).",
    )


def conversion(r: str, pct: str = "30%", orders: int = 11, expected: int = 36) -> Alert:
    return room_alert(
        CD,
        r,
        f"Room {r}: orders per product click at {pct} of its baseline; {orders} orders "
        f"created in 3 min where {expected} were expected from its clicks.",
    )


def audience(r: str, now: int, usual: int) -> Alert:
    return room_alert(
        AL,
        r,
        f"Room {r}: {now} enters/min where it usually has {usual}; impressions fell with them.",
    )


def room_alerts_test() -> str:
    series: list[Series] = []
    for name, note, kw in ROOMS:
        series += room(name, f"{name}: {note}", **kw)
    series += moved_room(
        "moved",
        "moved: the room moves from worker-1 to worker-2 at 40m (rebalance), which reports the "
        "same totals",
        40,
    )
    stockout = conversion("stockout", "60%", 65, 108)
    lost = audience("audience", 25, 100)
    clicks = room_alert(
        CT,
        "click-through",
        "Room click-through: product clicks per card shown at 30% of its baseline.",
    )
    expect = [
        ("36m", {TC: [], PT: [], CD: [], AL: []}),
        ("40m30s", {AL: [], CT: []}),
        ("42m30s", {CT: [clicks]}),
        ("41m30s", {TC: [], PT: [], CD: []}),
        ("42m30s", {TC: [traffic_cut("traffic-cut")], PT: [], CD: [], AL: [lost]}),
        (
            "44m",
            {
                TC: [traffic_cut("traffic-cut")],
                PT: [payment("payment", "80%")],
                CD: [conversion("conversion"), stockout],
            },
        ),
        ("49m", {AL: []}),  # the recent level has taken the lasting loss in
        ("53m30s", {AL: [audience("tail", 20, 100)]}),
        (
            "55m",
            {
                TC: [traffic_cut("traffic-cut")],
                PT: [payment("payment", "80%")],
                CD: [conversion("conversion"), stockout],
            },
        ),
    ]
    checks = [(at, name, alerts) for at, d in expect for name, alerts in d.items()]
    quiet = "|".join(QUIET_ROOMS)
    exprs = [
        (
            "60m",
            f'max by (room_id, alertname) (max_over_time(ALERTS{{room_id=~"{quiet}"}}[60m]))',
            [],
            "no room alert was even pending in these rooms during the hour",
        ),
        (
            "60m",
            "max by (room_id, alertname) (max_over_time("
            'ALERTS{room_id=~"traffic-cut|payment|conversion|stockout|audience|tail|click-through"}'
            "[60m]))",
            [
                (f'{{alertname="{TC}", room_id="traffic-cut"}}', "1"),
                (f'{{alertname="{PT}", room_id="payment"}}', "1"),
                (f'{{alertname="{CD}", room_id="conversion"}}', "1"),
                (f'{{alertname="{CD}", room_id="stockout"}}', "1"),
                (f'{{alertname="{AL}", room_id="audience"}}', "1"),
                (f'{{alertname="{AL}", room_id="tail"}}', "1"),
                (f'{{alertname="{CT}", room_id="click-through"}}', "1"),
            ],
            "each incident room raised its own alert and no other; the tail, halving its "
            "audience within a minute, is an audience loss",
        ),
    ]
    rooms = group(
        series,
        checks,
        exprs,
        comment=f"One hour of {len(ROOMS) + 1} rooms, scraped every 15 s. Unless noted a room "
        "has 1000 impressions, 100 enters, 120 product clicks, 12 orders created and 9.6 paid "
        "a minute; paid orders follow a change in created orders 30 s later. Incidents start "
        "at 40m; a rule fires once its window has seen enough and `for` has passed.",
    )
    early = room(
        "payment-early",
        "payment-early: live from 30m, payment outage from 34m",
        born=30,
        phases=[(34, 60, {"orders_paid": 0.03})],
    )
    early_checks = [
        ("37m", PT, []),
        ("38m30s", PT, [payment("payment-early", "80%")]),
        ("55m", PT, [payment("payment-early", "2.4%")]),
    ]
    early_exprs = [
        (
            "60m",
            'max by (alertname) (max_over_time(ALERTS{room_id="payment-early"}[60m]))',
            [(f'{{alertname="{PT}"}}', "1")],
            None,
        )
    ]
    young = group(
        early,
        early_checks,
        early_exprs,
        comment="A room whose payments fail 4 minutes after it went live, before it has a "
        "baseline of 20 paid orders: the absolute floor (paid < 20 % of created) fires. Its "
        "baseline then fills with the outage itself, which the floor keeps firing through.",
    )
    header = (
        "promtool test rules deploy/prometheus/tests/room_alerts_test.yml -- written by "
        "generate.py. The room alerts of ../rules/alerts.yml: which rooms must fire, when, "
        "with what text, and which must stay quiet (flash sales, a small room, the end-of-"
        "session tail, worker restarts, a room moving between workers, the __other__ "
        "aggregate, drops below the thresholds)."
    )
    return document(header, ["../rules/recording.yml", "../rules/alerts.yml"], [rooms, young])


# --- recording rules ------------------------------------------------------------------------

XS = [
    "impressions",
    "enters",
    "product_impressions",
    "product_clicks",
    "orders_created",
    "orders_paid",
    "gmv",
    "late_events",
]
RATIOS = [
    ("enter", "enters", "impressions", 1),
    ("click_through", "product_clicks", "product_impressions", 1),
    ("conversion", "orders_paid", "enters", 1),
    ("click_to_order", "orders_paid", "product_clicks", 1),
    ("payment", "orders_paid", "orders_created", 1),
    ("gpm", "gmv", "enters", 1000),
    ("aov", "gmv", "orders_paid", 1),
]
# counter steps per 15 s of two rooms; whole numbers, so rates are exact quotients
R1 = dict(
    impressions=300,
    enters=30,
    product_impressions=120,
    product_clicks=12,
    orders_created=3,
    orders_paid=2,
    gmv=250,
    late_events=1,
)
R2 = dict(
    impressions=150,
    enters=30,
    product_impressions=60,
    product_clicks=12,
    orders_created=3,
    orders_paid=3,
    gmv=600,
    late_events=0,
)


def steady(step: float, k_from: int = 0, k_to: int = SAMPLES - 1) -> list[float | None]:
    return [None if not k_from <= k <= k_to else (k - k_from) * step for k in range(SAMPLES)]


def rate(step: int, window_s: int) -> float:
    return float(step * (window_s // 15)) / window_s  # as Prometheus computes it here


#: Money and its ratios carry the room's currency (r1 sells in CNY, r2 in JPY).
MONEY = {"gmv", "gpm", "aov"}
CURRENCY = {"r1": "CNY", "r2": "JPY"}


def recording_test() -> str:
    series: list[Series] = []
    for room_id, steps, instance, note in (
        ("r1", R1, W1, "r1 (CNY) on worker-1; r2 (JPY), with other ratios, on worker-2"),
        ("r2", R2, W2, None),
    ):
        for i, x in enumerate(XS):
            extra = {"currency": CURRENCY[room_id]} if x in MONEY else {}
            name = f"livepulse_room_{x}_total{labels(instance, room_id=room_id, **extra)}"
            series.append((name, notation(steady(steps[x])), note if i == 0 else None))
            # the worker's own totals over all its rooms (here: the one room)
            if x == "late_events":
                late = labels(instance, topic="live.views", reason="grace")
                series.append(
                    (f"livepulse_events_late_total{late}", notation(steady(steps[x])), None)
                )
            else:
                funnel = f"livepulse_funnel_{x}_total{labels(instance, **extra)}"
                series.append((funnel, notation(steady(steps[x])), None))
    exprs = []
    rates: dict[tuple[str, str], tuple[float, float]] = {}

    def room_labels(x: str, room_id: str) -> str:
        money = f',currency="{CURRENCY[room_id]}"' if x in MONEY else ""
        return f'{{room_id="{room_id}"{money}}}'

    for w, s in (("1m", 60), ("5m", 300)):
        for x in XS:
            rates[(w, x)] = (rate(R1[x], s), rate(R2[x], s))
            name = f"room_id:livepulse_room_{x}:rate{w}"
            samples = [
                (f"{name}{room_labels(x, r)}", repr(v))
                for r, v in zip(("r1", "r2"), rates[(w, x)], strict=True)
            ]
            exprs.append(("10m", name, samples, None))
        for r, num, den, k in RATIOS:
            name = f"room_id:livepulse_room_{r}:ratio_rate{w}"
            values = [(k * rates[(w, num)][i]) / rates[(w, den)][i] for i in (0, 1)]
            samples = [
                (f"{name}{room_labels(r, rm)}", repr(v))
                for rm, v in zip(("r1", "r2"), values, strict=True)
            ]
            exprs.append(("10m", name, samples, None))
    total = {x: rates[("5m", x)][0] + rates[("5m", x)][1] for x in XS}
    for x in XS:
        name = f"job:livepulse_room_{x}:rate5m"
        if x in MONEY:  # one room per currency here: the job sum per currency is the room's
            samples = [
                (f'{name}{{currency="{CURRENCY[rm]}"}}', repr(rates[("5m", x)][i]))
                for i, rm in enumerate(("r1", "r2"))
            ]
        else:
            samples = [(name, repr(total[x]))]
        exprs.append(("10m", name, samples, None))
    for r, num, den, k in RATIOS:
        name = f"job:livepulse_room_{r}:ratio_rate5m"
        if r in MONEY:
            samples = [
                (
                    f'{name}{{currency="{CURRENCY[rm]}"}}',
                    repr((k * rates[("5m", num)][i]) / rates[("5m", den)][i]),
                )
                for i, rm in enumerate(("r1", "r2"))
            ]
        else:
            samples = [(name, repr((k * total[num]) / total[den]))]
        exprs.append(("10m", name, samples, None))
    names = group(
        series,
        (),
        exprs,
        comment="Every name the dashboards rely on, for two rooms on two workers: per-room "
        "rates (per second), ratios of rates, and the overall sums. Counters grow by a fixed "
        "step every 15 s, so a rate is step * samples / window exactly.",
    )

    def room_series(room_id: str, instance: str, metric: str, values, note=None) -> Series:
        name = f"livepulse_room_{metric}_total{labels(instance, room_id=room_id)}"
        return (name, notation(values), note)

    k10 = 10 * PER_MIN
    reset = steady(30)
    reset[k10 + 1 :] = [30.0 * (k - k10) for k in range(k10 + 1, SAMPLES)]
    edge = [
        room_series(
            "moved",
            W1,
            "enters",
            steady(30, 0, k10),
            "moved: on worker-1 until 10m, then on worker-2, which reports the same running total",
        ),
        room_series("moved", W2, "enters", [None] * (k10 + 1) + steady(30)[k10 + 1 :]),
        room_series(
            "reset",
            W1,
            "enters",
            reset,
            "reset: the worker lost its state at 10m and counts again (a reset, not a drop)",
        ),
        room_series(
            "quiet",
            W1,
            "impressions",
            steady(300),
            "quiet: impressions but no enters or orders: ratios over 0 are absent, not 0 or NaN",
        ),
        *(room_series("quiet", W1, m, steady(0)) for m in ("enters", "orders_paid")),
        (
            f"livepulse_room_gmv_total{labels(W1, room_id='quiet', currency='CNY')}",
            notation(steady(0)),
            None,
        ),
    ]
    edge_exprs = [
        (
            "16m",
            'room_id:livepulse_room_enters:rate5m{room_id=~"moved|reset"}',
            [
                ('room_id:livepulse_room_enters:rate5m{room_id="moved"}', "2"),
                ('room_id:livepulse_room_enters:rate5m{room_id="reset"}', "2"),
            ],
            "2 enters/s after the move and the reset (while a 5m window spans the move, "
            "Prometheus' extrapolation at both series' ends adds ~5 %)",
        ),
        ("19m", 'room_id:livepulse_room_conversion:ratio_rate5m{room_id="quiet"}', [], None),
        ("19m", 'room_id:livepulse_room_gpm:ratio_rate1m{room_id="quiet"}', [], None),
        ("19m", 'room_id:livepulse_room_aov:ratio_rate5m{room_id="quiet"}', [], None),
        (
            "19m",
            'room_id:livepulse_room_enter:ratio_rate1m{room_id="quiet"}',
            [('room_id:livepulse_room_enter:ratio_rate1m{room_id="quiet"}', "0")],
            "0 enters of 300 impressions is a ratio of 0",
        ),
    ]
    edges = group(
        edge,
        (),
        edge_exprs,
        comment="A room moving between workers and a counter reset keep the room's rate; a "
        "ratio whose denominator is 0 has no sample.",
    )

    # a worker over its export cap: room "top" is exported until 10m, then summed into
    # room_id="__other__" (which counts only what the room applies from then on), and comes
    # back with its own series at 20m; the worker's funnel counter runs on throughout
    k10, k20 = 10 * PER_MIN, 20 * PER_MIN
    own = [v if k <= k10 or k > k20 else None for k, v in enumerate(steady(30))]
    other = [None] * (k10 + 1) + [30.0 * (k - k10) for k in range(k10 + 1, SAMPLES)]
    other[k20 + 1 :] = [other[k20]] * (SAMPLES - k20 - 1)  # flat again once "top" is back
    top_series = [
        (
            f"livepulse_room_enters_total{labels(W3, room_id='top')}",
            notation(own),
            "top: own series until 10m and from 20m; summed into __other__ in between",
        ),
        (f"livepulse_room_enters_total{labels(W3, room_id='__other__')}", notation(other), None),
        (f"livepulse_funnel_enters_total{labels(W3)}", notation(steady(30)), None),
    ]
    top_exprs = [
        (at, "job:livepulse_room_enters:rate5m", [("job:livepulse_room_enters:rate5m", "2")], None)
        for at in ("9m", "12m", "15m", "22m", "28m")
    ]
    top_set = group(
        top_series,
        (),
        top_exprs,
        comment="The overall rates stay exact while a room moves in and out of a worker's "
        "export cap (2 enters/s throughout): they come from the worker's funnel counters.",
    )

    steps = {"impressions": 250, "enters": 25, "product_clicks": 30, "orders_created": 3}
    steps["orders_paid"] = 2

    def b1(metric: str) -> list[float | None]:
        values, v = [0.0], 0.0
        for k in range(1, SAMPLES):
            t = (k - 1) / PER_MIN
            step = 10 if metric == "enters" and t >= 37 else steps[metric]
            v += step * (5 if 20 <= t < 22 else 1)
            values.append(v)
        return values

    base = [
        room_series(
            "b1",
            W1,
            m,
            b1(m),
            "b1: steady, a 2-minute 5x spike at 20m, and 60 % fewer enters per impression from 37m"
            if m == "impressions"
            else None,
        )
        for m in steps
    ]
    enter_ratio = (25 * 20 / 300) / (250 * 20 / 300)

    def one(name: str, value: str, at: str = "40m", note: str | None = None):
        return (at, name, [(f'{name}{{room_id="b1"}}', value)], note)

    base_exprs = [
        one(
            "room_id:livepulse_room_enter:ratio_rate5m_baseline",
            repr(enter_ratio),
            note="at 40m the baseline still ends at 35m: before the drop, and the spike is "
            "outvoted",
        ),
        one("room_id:livepulse_room_enter:ratio_rate1m", repr((10 * 4 / 60) / (250 * 4 / 60))),
        one("room_id:livepulse_room_enters:rate1m_baseline", repr(100 / 60)),
        one("room_id:livepulse_room_product_clicks:rate1m_baseline", "2"),
        one("room_id:livepulse_room_click_to_created:ratio_rate5m_baseline", "0.1"),
        one("room_id:livepulse_room_payment:ratio_rate5m_baseline", repr(2 / 3)),
        one("room_id:livepulse_room_orders_created:rate3m_expected", "0.2"),
        one(
            "room_id:livepulse_room_orders_created:increase30m_offset5m",
            "456",
            note="orders created from 5m to 35m: 28 minutes at 12/min and 2 minutes at 60/min",
        ),
        one("room_id:livepulse_room_orders_paid:increase30m_offset5m", "304"),
        one(
            "room_id:livepulse_room_enter:ratio_rate5m_baseline",
            repr(enter_ratio),
            at="45m",
            note="at 45m the baseline holds 5 minutes of the new ratio, still the minority",
        ),
    ]
    baselines = group(
        base,
        (),
        base_exprs,
        comment="Baselines: medians over the 30 minutes that ended 5 minutes ago.",
    )
    header = (
        "promtool test rules deploy/prometheus/tests/recording_test.yml -- written by "
        "generate.py. Values of ../rules/recording.yml: the names the dashboards use, and the "
        "alert baselines."
    )
    return document(header, ["../rules/recording.yml"], [names, edges, top_set, baselines])


# --- pipeline alerts ------------------------------------------------------------------------


def counter(
    step: float,
    *,
    gap: tuple[int, int] | None = None,
    restart_at: int | None = None,
    stop_at: int | None = None,
    changes: Iterable[tuple[int, float]] = (),
) -> list[float | None]:
    """A process counter by sample index: ``gap`` (first, end) unscraped, restarted (one step
    counted) at ``restart_at``, flat after ``stop_at``, its step changed at ``changes``."""
    changes = list(changes)
    values: list[float | None] = []
    v = 0.0
    for k in range(SAMPLES):
        if gap and gap[0] <= k < gap[1]:
            values.append(None)
            continue
        if k > 0 and (stop_at is None or k <= stop_at):
            s = step
            for at, new in changes:
                if k >= at:
                    s = new
            v += s
        if restart_at is not None and k == restart_at:
            v = step
        values.append(v)
    return values


def gauge(fn: Callable[[int], float | None]) -> list[float | None]:
    return [fn(k) for k in range(SAMPLES)]


WD, WL, CL, DL = (
    "LivePulseWorkerDown",
    "LivePulseWatermarkLagGrowing",
    "LivePulseConsumerLagGrowing",
    "LivePulseDeadLetterRateHigh",
)
PIPELINE_RUNBOOK = {
    WD: "Check the worker process and its logs (`docker compose logs worker-1 worker-2`); its "
    "partitions move to the other workers after the session timeout.",
    WL: "A source topic of this partition is stalled or far behind: compare consumer lag per "
    "topic, check the producers. A partition all of whose rooms have ended also stops its "
    "watermark (event time only advances with events).",
    CL: "The workers read slower than the producers write: check worker CPU and scrape "
    "/metrics for livepulse_events_consumed_total; add workers (up to the partition count).",
    DL: "A producer sends records that break contract v1: read live.deadletter (headers "
    "source_topic, reason) to find which and why.",
}


def pipeline_alert(name: str, extra: dict[str, str], summary: str) -> Alert:
    severity = "critical" if name == WD else "warning"
    return (
        {"severity": severity, "scope": "pipeline", **extra},
        {"summary": summary, "runbook": PIPELINE_RUNBOOK[name]},
    )


def pipeline_alerts_test() -> str:
    m = PER_MIN
    gap1 = (10 * m + 1, 20 * m)  # worker-1 unscraped from 10m15s to 19m45s

    def lag_w1(k: int) -> float | None:
        if gap1[0] <= k < gap1[1]:
            return None
        if k < gap1[0]:
            return 8
        if k < 35 * m:  # after the restart: 10 minutes behind, caught up 8 minutes later
            return max(8, 610 - 18 * (k - 20 * m))
        return 8 + 15 * (k - 35 * m)  # stuck from 35m: grows with the wall clock

    def burst(k: int) -> float:  # 60 000 records (150 s) pile up 15m-17m, drained by 25m
        a, b, c = 15 * m, 17 * m, 25 * m
        if a <= k < b:
            return 500 + (60000 - 500) * (k - a) // (b - a)
        if b <= k < c:
            return 60000 - (60000 - 500) * (k - b) // (c - b)
        return 500

    series: list[Series] = [
        (
            f"up{labels(W4)}",
            notation(gauge(lambda k: 0 if k < 2.5 * m else 1)),
            "worker-4: a cold start (topics created, groups joined) takes 2.5 min to serve "
            "/metrics: not down",
        ),
        (
            f"up{labels(W1)}",
            notation(gauge(lambda k: 0 if 10 * m <= k < 20 * m else 1)),
            "worker-1: down from 10m to 20m (restarted, counters from 0); after catching up, its "
            "partition 0 watermark stalls at 35m while it still applies events",
        ),
        (
            f"livepulse_partition_watermark_lag_seconds{labels(W1, partition='0')}",
            notation(gauge(lag_w1)),
            None,
        ),
        (
            f"livepulse_events_applied_total{labels(W1, topic='live.views')}",
            notation(counter(6000, gap=gap1, restart_at=gap1[1])),
            None,
        ),
        (
            f"up{labels(W2)}",
            notation(gauge(lambda k: 0 if k in (5 * m, 5 * m + 1) else 1)),
            "worker-2: a 30 s scrape failure at 5m; a backlog burst at 15m; restarts at 25m "
            "(counters reset); live.orders falls behind from 30m; 3 % invalid live.views records "
            "from 40m",
        ),
        (
            f"livepulse_partition_watermark_lag_seconds{labels(W2, partition='1')}",
            notation(gauge(lambda k: 8)),
            None,
        ),
        (
            f"livepulse_events_applied_total{labels(W2, topic='live.views')}",
            notation(counter(5994, restart_at=25 * m)),
            None,
        ),
        (
            f"livepulse_events_consumed_total{labels(W2, topic='live.views')}",
            notation(counter(6000, restart_at=25 * m)),
            None,
        ),
        (
            f"livepulse_events_invalid_total{labels(W2, topic='live.views', reason='schema')}",
            notation(counter(6, restart_at=25 * m, changes=[(40 * m + 1, 180)])),
            None,
        ),
        (
            f"livepulse_events_consumed_total{labels(W2, topic='live.orders')}",
            notation(counter(75, restart_at=25 * m)),
            None,
        ),
        (
            f"livepulse_events_invalid_total{labels(W2, topic='live.orders', reason='json')}",
            notation(counter(0.9, restart_at=25 * m)),
            None,
        ),
        (
            f"livepulse_consumer_lag_records{labels(W2, topic='live.views', partition='1')}",
            notation(gauge(burst)),
            None,
        ),
        (
            f"livepulse_consumer_lag_records{labels(W2, topic='live.orders', partition='1')}",
            notation(gauge(lambda k: 0 if k <= 30 * m else 30 * (k - 30 * m))),
            None,
        ),
        (
            f"up{labels(W3)}",
            notation(gauge(lambda k: 1)),
            "worker-3: its rooms all end at 30m; its watermark stops with them",
        ),
        (
            f"livepulse_partition_watermark_lag_seconds{labels(W3, partition='3')}",
            notation(gauge(lambda k: 8 if k <= 30 * m else 8 + 15 * (k - 30 * m))),
            None,
        ),
        (
            f"livepulse_events_applied_total{labels(W3, topic='live.views')}",
            notation(counter(6000, stop_at=30 * m)),
            None,
        ),
    ]
    down = pipeline_alert(
        WD,
        {"instance": W1, "job": "livepulse"},
        f"LivePulse worker {W1} is down: its rooms have no metrics.",
    )
    stalled = pipeline_alert(
        WL,
        {"instance": W1, "job": "livepulse", "partition": "0"},
        f"Partition 0 on {W1}: watermark 9m 8s behind and growing.",
    )
    behind = pipeline_alert(
        CL,
        {"topic": "live.orders"},
        "Topic live.orders: 3m 24s of records waiting and the backlog grows.",
    )
    invalid = pipeline_alert(
        DL, {"topic": "live.views"}, "Topic live.views: 3% of records go to the dead-letter topic."
    )
    checks = [
        ("2m30s", WD, []),
        ("5m30s", WD, []),
        ("10m30s", WD, []),
        ("12m30s", WD, []),
        ("13m30s", WD, [down]),
        ("19m30s", WD, [down]),
        ("20m30s", WD, []),
        ("26m", WL, []),
        ("30m", WL, []),
        ("41m", WL, []),
        ("44m", WL, [stalled]),
        ("17m", CL, []),
        ("22m", CL, []),
        ("37m", CL, []),
        ("38m30s", CL, [behind]),
        ("45m", DL, []),
        ("47m", DL, [invalid]),
    ]
    exprs = [
        (
            "60m",
            "max by (alertname, instance, partition, topic) "
            '(max_over_time(ALERTS{scope="pipeline", alertstate="firing"}[60m]))',
            [
                (f'{{alertname="{WD}", instance="{W1}"}}', "1"),
                (f'{{alertname="{WL}", instance="{W1}", partition="0"}}', "1"),
                (f'{{alertname="{CL}", topic="live.orders"}}', "1"),
                (f'{{alertname="{DL}", topic="live.views"}}', "1"),
            ],
            "only these fired in the hour: not the scrape blip, the restarts, the catching up, "
            "the burst, the ended rooms, live.orders' few invalid records",
        )
    ]
    workers = group(
        series,
        checks,
        exprs,
        comment="Three workers for an hour, scraped every 15 s; live.views carries 400 "
        "records/s, live.orders 5/s (0.06/s of them invalid: 1.2 %, but too few to page anyone).",
    )
    nobody = group(
        [
            (
                'livepulse_events_consumed_total{job="other",instance="x:1",topic="live.views"}',
                "0+1x20",
                'no LivePulse target at all: up{job="livepulse"} is absent',
            )
        ],
        [
            ("30s", WD, []),
            ("2m", WD, []),
            (
                "4m",
                WD,
                [
                    pipeline_alert(
                        WD,
                        {"job": "livepulse"},
                        'No LivePulse worker is scraped: up{job="livepulse"} is absent.',
                    )
                ],
            ),
        ],
    )
    header = (
        "promtool test rules deploy/prometheus/tests/pipeline_alerts_test.yml -- written by "
        "generate.py. The pipeline alerts of ../rules/alerts.yml (scope: pipeline): what "
        "fires, and what must not."
    )
    return document(header, ["../rules/alerts.yml"], [workers, nobody])


FILES = {
    "room_alerts_test.yml": room_alerts_test,
    "recording_test.yml": recording_test,
    "pipeline_alerts_test.yml": pipeline_alerts_test,
}


def main() -> None:
    for name, build in FILES.items():
        (HERE / name).write_text(build())


if __name__ == "__main__":
    main()

"""What the alert evaluations print: tables of the scores that :mod:`in_stream` and
:mod:`sweep` compute (the scoring lives there, the presentation here)."""

from __future__ import annotations


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}f}"


def rows(result: dict, source: str) -> list[list[str]]:
    """The report of one source as table rows (header first), for the terminal and docs."""
    rep = result[source]
    out = [
        [
            "incident",
            "alert",
            "n (≥200/min)",
            "recall",
            "recall all",
            "evidence≥thr (recall)",
            "delay win med/p90",
            "delay s med/p90",
            "precision",
            "false/room-h",
        ]
    ]
    for kind, k in rep["incident_kinds"].items():
        a = rep["alert_kinds"][k["alert_kind"]]
        out.append(
            [
                kind,
                k["alert_kind"],
                f"{k['incidents']} ({k['eligible']})",
                _num(k["recall"]),
                _num(k["recall_all"]),
                f"{k['with_evidence']} ({_num(k['recall_with_evidence'])})",
                f"{_num(k['delay_windows_median'], 1)} / {_num(k['delay_windows_p90'])}",
                f"{_num(k['delay_s_median'], 0)} / {_num(k['delay_s_p90'], 0)}",
                _num(a["precision"]),
                _num(a["false_per_room_hour"], 3),
            ]
        )
    fa = rep["false_alerts"]
    out.append(
        [
            "none (incident-free)",
            "all kinds",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            f"{_num(fa['per_room_hour'], 3)} ({fa['alerts']} in {fa['room_hours']:.0f} room-h; "
            f"all sessions {fa['all_sessions_alerts']} in {fa['all_sessions_room_hours']:.0f}; "
            f"{fa.get('session_end_alerts', 0)} audience_loss in session-end tails)",
        ]
    )
    return out


def _seed_list(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1:
        return f"{seeds[0]}–{seeds[-1]}"
    return ",".join(map(str, seeds))


def markdown(result: dict) -> str:
    """The report as Markdown tables, one per alert source."""
    cfg = result["config"]
    seeds = cfg["seeds"]
    lines = [
        f"Seeds {_seed_list(seeds)} ({len(seeds)} incident sessions + {len(seeds)} "
        f"incident-free), {cfg['rooms']} rooms, {_num(cfg['minutes'])} min, "
        f"{_num(cfg['rate'])} events/s; {result['records']:,} records.",
    ]
    for source in ("detector", "rules"):
        if source not in result:
            continue
        table = rows(result, source)
        lines += ["", f"**{source}**", ""]
        lines.append("| " + " | ".join(table[0]) + " |")
        lines.append("|" + "---|" * len(table[0]))
        lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return "\n".join(lines)


def render(result: dict, source: str):  # -> rich.table.Table
    """One source's report for the terminal: a column per incident kind (fits 80 columns)."""
    from rich.table import Table

    table = rows(result, source)
    header, body = table[0], table[1:]
    t = Table(title=f"{source}: incidents found, delays and false alerts")
    short = {
        "payment_outage": "payment",
        "stockout": "stock-out",
        "traffic_cut": "traffic",
        "conversion_decay": "decay",
        "none (incident-free)": "no incident",
        "payment_trouble": "payment",
        "conversion_drop": "conversion",
        "all kinds": "all",
    }
    t.add_column("")
    for row in body:
        t.add_column(short.get(row[0], row[0]), justify="right")
    for i, name in enumerate(header[1:], start=1):
        t.add_row(name, *(short.get(row[i], row[i]) for row in body))
    return t


# --- the sweep -------------------------------------------------------------------------------


def _count(c: dict | None) -> str:
    return "" if c is None else f" ({c['found']}/{c['n']})"


def _delay(value: float | None) -> str:
    return "" if value is None else f" ({_num(value, 1)})"


def _cell(c: dict | None) -> str:
    if c is None:
        return ""
    delay = "" if c["delay_median"] is None else f" ({_num(c['delay_median'], 1)})"
    return f"{_num(c['recall'])}{delay}"


def sweep_markdown(result: dict, source: str) -> str:
    """One source's sweep as Markdown: per stage, recall (median delay in windows) by drop
    size and duration (rows) and room size (columns); then onsets, false alerts, targets."""
    from streams.evaluation.sweep import curve

    rep = result[source]
    sizes = sorted({c["size"] for c in rep["curves"]})
    big = curve([r for r in rep["incidents"] if r["size"] >= 200], ("stage", "drop"))
    drops = sorted({c["drop"] for c in big})
    summary = {(c["stage"], c["drop"]): c for c in big}
    lines = [
        "",
        "Rooms ≥ 200 enters/min, every duration: found/incidents (median delay, windows)",
        "",
        "| stage | " + " | ".join(f"{round(d * 100)} %" for d in drops) + " |",
        "|---|" + "---|" * len(drops),
    ]
    for stage in sorted({c["stage"] for c in big}):
        row = [summary.get((stage, d)) for d in drops]
        lines.append(
            f"| {stage} | "
            + " | ".join(
                "" if c is None else f"{c['found']}/{c['n']}" + _delay(c["delay_median"])
                for c in row
            )
            + " |"
        )
    for stage in sorted({c["stage"] for c in rep["curves"]}):
        lines += [
            "",
            f"*{stage}* — recall (median delay, windows) by enters/min",
            "",
            "| drop | windows | " + " | ".join(str(s) for s in sizes) + " |",
            "|---|---|" + "---|" * len(sizes),
        ]
        cells = {
            (c["drop"], c["duration"], c["size"]): c for c in rep["curves"] if c["stage"] == stage
        }
        for drop, duration in sorted(
            {(c["drop"], c["duration"]) for c in rep["curves"] if c["stage"] == stage}
        ):
            row = [_cell(cells.get((drop, duration, s))) for s in sizes]
            lines.append(f"| {round(drop * 100)} % | {duration} | " + " | ".join(row) + " |")
    onset = ", ".join(
        f"{c['stage']} {'cliff' if c['onset'] == 0 else str(c['onset']) + '-window ramp'} "
        f"{_num(c['recall'])}"
        for c in rep["by_onset"]
    )
    fa = rep["false_alerts"]
    by_kind = ", ".join(f"{k} {v}" for k, v in fa["by_kind"].items()) or "none"
    t = rep["targets"]
    big, outage = t["recall_big_drops"], t["payment_outage"]
    per_stage = "; ".join(
        f"{s} {_num(c['recall'])} ({c['found']}/{c['n']}, delay {_num(c['delay_median'], 1)})"
        for s, c in t["recall_big_drops_by_stage"].items()
    )
    lines += [
        "",
        f"Recall by onset: {onset}.",
        "",
        f"False alerts on incident-free sessions: {fa['alerts']} in {fa['room_hours']:.0f} "
        f"room-hours ({by_kind}).",
        "",
        "| target | value | met |",
        "|---|---|---|",
        "| rooms ≥ 200 enters/min, drops ≥ 50 % for ≥ 2 windows: recall ≥ 0.95, median delay "
        f"≤ 2 | {_cell(big)} ({per_stage}) | {'yes' if t['big_drops_met'] else 'no'} |",
        "| rooms ≥ 8 paid/min, full payment outage ≥ 2 windows: recall ≥ 0.9 | "
        f"{_cell(outage)}{_count(outage)} | "
        f"{'yes' if t['payment_outage_met'] else 'no'} |",
        "| ≤ 1 false alert per 10 room-hours | "
        f"{_num(t['false_per_10_room_hours'])} | {'yes' if t['false_met'] else 'no'} |",
    ]
    return "\n".join(lines)

"""The queries of the committed LivePulse dashboard, read back from its JSON (stdlib only).

Tests import this from the project's venv, which does not have grafana-foundation-sdk::

    from deploy.grafana.queries import dashboard_queries, room_variable

    for q in dashboard_queries("demo-room-01"):
        ...  # q.expr is plain PromQL, ready for /api/v1/query (q.instant) or query_range

Grafana substitutes the same way: ``$room`` / ``${room}`` become the room id verbatim
(a single-value variable is not escaped), ``$__rate_interval`` the rate window.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DASHBOARD = Path(__file__).parent / "dashboards" / "livepulse.json"

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass(frozen=True)
class PanelQuery:
    row: str  # title of the row the panel is in ("" before the first row)
    panel: str  # panel title, variables not substituted
    ref_id: str
    expr: str  # variables substituted
    instant: bool  # an instant query (stat, bar gauge, table); else a range query
    legend: str


def load(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(board: dict) -> list[tuple[str, dict]]:
    """(row title, panel) for every panel that is not a row, in dashboard order; panels of
    collapsed rows included."""
    out: list[tuple[str, dict]] = []
    row = ""
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            row = panel.get("title", "")
            out.extend((row, inner) for inner in panel.get("panels", []))
        else:
            out.append((row, panel))
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def dashboard_queries(
    room_id: str, *, rate_interval: str = "1m", path: Path = DASHBOARD
) -> list[PanelQuery]:
    """Every panel query of the dashboard, with ``$room`` set to ``room_id`` and
    ``$__rate_interval`` to ``rate_interval`` (Grafana uses max(4 × scrape interval,
    step + scrape interval); 1m suits the 5 s scrape of the livepulse job)."""
    values = {
        "room": room_id,
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": rate_interval,
    }
    out = []
    for row, panel in panels(load(path)):
        for target in panel.get("targets", []):
            out.append(
                PanelQuery(
                    row=row,
                    panel=panel.get("title", ""),
                    ref_id=target.get("refId", ""),
                    expr=substitute(target.get("expr", ""), values),
                    instant=bool(target.get("instant")) and not target.get("range"),
                    legend=target.get("legendFormat", ""),
                )
            )
    return out


def room_variable(path: Path = DASHBOARD) -> tuple[str, str]:
    """(metric, label) of the room variable's ``label_values(metric, label)``: Grafana asks
    Prometheus for ``/api/v1/label/<label>/values?match[]=<metric>``."""
    for variable in load(path)["templating"]["list"]:
        if variable["name"] == "room":
            query = variable["query"]
            if isinstance(query, dict):
                query = query.get("query", "")
            match = re.fullmatch(r"label_values\(\s*([^,\s]+)\s*,\s*(\w+)\s*\)", query)
            if not match:
                raise ValueError(f"room variable: unexpected query {query!r}")
            return match.group(1), match.group(2)
    raise KeyError("the dashboard has no variable named room")

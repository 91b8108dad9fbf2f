"""``livepulse evaluate-alerts --sweep``: detection curves on incidents the detector was not
tuned on (:mod:`streams.sim.family`).

Each incident session holds one room per (drop, duration, room size) of one funnel stage;
its records go through the worker's own code without Kafka (:func:`in_stream.replay
<streams.evaluation.in_stream.replay>`: :class:`~streams.core.driver.LocalWorker`), the
detector judges the closed windows as the worker would, and, when asked, the Prometheus rules
judge the same records' scrapes in a real Prometheus
(:func:`~streams.evaluation.prometheus_rules.evaluate_rules_on`). Incident-free sessions
(flash sales, ramp-up, a gradual tail) give the false alerts per room-hour.

Definitions (as in :mod:`streams.evaluation.in_stream`):

* an incident is **found** by a ``firing`` alert of its stage's kind (:data:`STAGE_KINDS`) in
  its room, written no earlier than the close of the incident's first window (its end +
  grace) and no later than two windows after the incident's end;
* **delay** (windows): the windows whose end is after the incident's start and that had
  closed when the alert was written (an alert on the window the incident began in: 1);
* **false alerts**: every ``firing`` alert of an incident-free session, per room-hour;
* **paid per minute** of a room: the median paid orders of its closed windows before the
  incident (the targets' "rooms with >= 8 paid orders a minute").

Seeds: :data:`TUNING_SEEDS` may be looked at while changing the detector;
:data:`HELD_OUT_SEEDS` were fixed before the first run and are reported apart, never tuned on.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from streams.core.detector import DetectorConfig
from streams.evaluation.in_stream import detect_rooms, replay
from streams.sim.family import (
    DROPS,
    DURATIONS,
    SIZES,
    STAGES,
    WINDOW_MS,
    SweepSession,
    generate,
    plan_incidents,
)

#: Seeds the detector may be tuned on.
TUNING_SEEDS = (1,)
#: Seeds fixed before the first sweep ran and reported apart: never looked at for tuning.
HELD_OUT_SEEDS = (7001,)
#: The alert kind that finds each stage's incident.
STAGE_KINDS: dict[str, tuple[str, ...]] = {
    "audience": ("audience_loss",),
    "enter_rate": ("traffic_cut",),
    "click_through": ("click_drop",),
    "click_to_order": ("conversion_drop",),
    "payment": ("payment_trouble",),
}
END_MS = 1_750_000_020_000 - 1_750_000_020_000 % WINDOW_MS
GRACE_MS = 5_000
SLACK_WINDOWS = 2

Detection = tuple[str, str, int]  # (room_id, kind, fired_at_ms)


@dataclass(frozen=True)
class SweepConfig:
    """Which sessions the sweep runs."""

    seeds: tuple[int, ...] = TUNING_SEEDS
    stages: tuple[str, ...] = STAGES
    sizes: tuple[int, ...] = SIZES
    drops: tuple[float, ...] = DROPS
    durations: tuple[int, ...] = DURATIONS
    minutes: int = 26
    #: incident-free sessions per seed, each ``quiet_rooms`` rooms for ``quiet_minutes``
    quiet_sessions: int = 1
    quiet_rooms: int = 18
    quiet_minutes: int = 60
    partitions: int = 4
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    def check(self) -> None:
        if not self.seeds or not self.stages or not self.sizes:
            raise ValueError("the sweep needs seeds, stages and sizes")
        unknown = set(self.stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
        if not all(0 < d <= 1 for d in self.drops) or not all(k >= 1 for k in self.durations):
            raise ValueError("drops in (0, 1], durations >= 1")
        if self.minutes < 26 or self.quiet_minutes < 20:
            raise ValueError("incident sessions need 26 minutes, quiet ones 20")
        self.detector.check()

    def sessions(self, end_ms: int = END_MS) -> list[SweepSession]:
        out = []
        for seed in self.seeds:
            for i, stage in enumerate(self.stages):
                incidents = plan_incidents(
                    seed * 100 + i,
                    stage,
                    end_ms,
                    self.minutes,
                    self.sizes,
                    self.drops,
                    self.durations,
                )
                out.append(SweepSession(seed * 100 + i, self.minutes, end_ms, incidents))
            for q in range(self.quiet_sessions):
                out.append(
                    SweepSession(
                        seed * 100 + 50 + q,
                        self.quiet_minutes,
                        end_ms,
                        quiet_rooms=self.quiet_rooms,
                        rooms_sizes=self.sizes,
                    )
                )
        return out


#: What ``--sweep --rules`` runs: every stage, the two larger room sizes, four drop sizes and
#: three durations, one incident-free session of 12 rooms for 40 minutes (a real Prometheus
#: per session keeps the full grid out of reach in minutes).
RULES_SUBSET = SweepConfig(
    sizes=(200, 1000),
    drops=(0.35, 0.5, 0.75, 1.0),
    durations=(1, 2, 3),
    quiet_rooms=12,
    quiet_minutes=40,
)


@dataclass
class SessionResult:
    """What one session gives the scoring: its incidents, rooms' paid per minute and the
    detections of each alert source."""

    session: SweepSession
    records: int
    paid_per_minute: dict[str, float]
    detections: dict[str, list[Detection]]  # source ("detector", "rules") -> detections


Rules = Callable[[SweepSession], list[Detection]]


def run_session(
    session: SweepSession, detector: DetectorConfig, rules: Rules | None = None
) -> SessionResult:
    """One session through the in-memory worker and the detector (and the rules)."""
    if rules is not None:  # the rules need the session near now (the server's retention)
        now = int(time.time() * 1000)
        session = _moved(session, now - now % WINDOW_MS)
    rooms, n = replay(
        generate(session),
        partitions=session.partitions,
        window_ms=WINDOW_MS,
        grace_ms=session.grace_ms,
    )
    found = {
        "detector": [
            (e.room_id, e.kind, at)
            for e, at in detect_rooms(rooms, WINDOW_MS, detector)
            if e.state == "firing"
        ]
    }
    if rules is not None:
        found["rules"] = rules(session)
    paid = {}
    starts = {inc.room_id: inc.start_ms for inc in session.incidents}
    for room, windows in rooms.items():
        before = [
            w.counts.orders_paid for w in windows if w.start + WINDOW_MS <= starts.get(room, 0)
        ]
        paid[room] = statistics.median(before) * 60_000 / WINDOW_MS if before else 0.0
    # everything in the session's own time: the scoring compares with its incidents
    return SessionResult(session, n, paid, found)


def _moved(session: SweepSession, end_ms: int) -> SweepSession:
    """The same session ending at ``end_ms`` (a whole number of windows later or earlier)."""
    delta = end_ms - session.end_ms
    incidents = tuple(
        type(inc)(**{**asdict(inc), "start_ms": inc.start_ms + delta}) for inc in session.incidents
    )
    return SweepSession(**{**_fields(session), "end_ms": end_ms, "incidents": incidents})


def _fields(session: SweepSession) -> dict:
    return {name: getattr(session, name) for name in session.__dataclass_fields__}


def rules_detections(session: SweepSession) -> list[Detection]:
    """The Prometheus rules on the session's scrapes (a real Prometheus; picklable)."""
    from streams.evaluation.prometheus_rules import evaluate_rules_on, scrapes_of

    return evaluate_rules_on(
        lambda: scrapes_of(
            generate(session),
            session.bounds(),
            partitions=session.partitions,
            window_ms=WINDOW_MS,
            grace_ms=session.grace_ms,
        ),
        session.bounds(),
    )


def _job(args: tuple[SweepSession, DetectorConfig, Rules | None]) -> SessionResult:
    return run_session(*args)


def run(
    config: SweepConfig,
    *,
    rules: Rules | None = None,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[SessionResult]:
    """Every session of ``config``; ``jobs`` processes at once."""
    config.check()
    tasks = [(s, config.detector, rules) for s in config.sessions()]
    if jobs <= 1:
        results = []
        for i, task in enumerate(tasks):
            results.append(_job(task))
            if progress:
                progress(i + 1, len(tasks))
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    results = []
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        for i, result in enumerate(pool.map(_job, tasks)):
            results.append(result)
            if progress:
                progress(i + 1, len(tasks))
    return results


# --- scoring ---------------------------------------------------------------------------------


def score_incidents(results: Iterable[SessionResult], source: str) -> list[dict]:
    """One row per incident: its parameters, found or not, the delay in windows."""
    rows = []
    for r in results:
        detections = r.detections.get(source, [])
        for inc in r.session.incidents:
            kinds = STAGE_KINDS[inc.stage]
            first_closed = inc.start_ms - inc.start_ms % WINDOW_MS + WINDOW_MS + GRACE_MS
            last = inc.end_ms + SLACK_WINDOWS * WINDOW_MS
            hits = sorted(
                at
                for room, kind, at in detections
                if room == inc.room_id and kind in kinds and first_closed <= at <= last
            )
            row = {**inc.as_dict(), "paid_per_minute": r.paid_per_minute.get(inc.room_id, 0.0)}
            row["detected"] = bool(hits)
            if hits:
                first_end = inc.start_ms - inc.start_ms % WINDOW_MS + WINDOW_MS
                row["delay_windows"] = (hits[0] - GRACE_MS - first_end) // WINDOW_MS + 1
            rows.append(row)
    return rows


def false_alerts(results: Iterable[SessionResult], source: str) -> dict:
    """Alerts in the incident-free sessions, per kind and per room-hour."""
    hours = 0.0
    kinds: dict[str, int] = defaultdict(int)
    for r in results:
        if r.session.incidents:
            continue
        hours += r.session.quiet_rooms * r.session.minutes / 60
        for _, kind, _ in r.detections.get(source, []):
            kinds[kind] += 1
    total = sum(kinds.values())
    return {
        "alerts": total,
        "room_hours": hours,
        "per_room_hour": total / hours if hours else None,
        "by_kind": dict(sorted(kinds.items())),
    }


def curve(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Recall and median delay (windows) of the incident rows grouped by ``keys``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    out = []
    for key in sorted(groups):
        group = groups[key]
        delays = [r["delay_windows"] for r in group if r["detected"]]
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": len(group),
                "found": len(delays),
                "recall": len(delays) / len(group),
                "delay_median": statistics.median(delays) if delays else None,
            }
        )
    return out


def targets(rows: list[dict], fa: dict) -> dict:
    """The issue's targets on these rows (met or not, with the numbers)."""
    big = [
        r
        for r in rows
        if r["size"] >= 200
        and r["drop"] >= 0.5
        and r["duration"] >= 2
        and r["stage"] in ("audience", "enter_rate", "click_through", "payment")
    ]
    by_stage = {
        s: curve([r for r in big if r["stage"] == s], ())[0] for s in {r["stage"] for r in big}
    }
    outage = [
        r
        for r in rows
        if r["stage"] == "payment"
        and r["drop"] == 1.0
        and r["duration"] >= 2
        and r["paid_per_minute"] >= 8
    ]
    summary_big = curve(big, ())[0] if big else None
    summary_outage = curve(outage, ())[0] if outage else None
    rate = fa["per_room_hour"]
    return {
        "recall_big_drops": summary_big,
        "recall_big_drops_by_stage": dict(sorted(by_stage.items())),
        "big_drops_met": bool(
            summary_big
            and summary_big["recall"] >= 0.95
            and (summary_big["delay_median"] or 99) <= 2
        ),
        "payment_outage": summary_outage,
        "payment_outage_met": bool(summary_outage and summary_outage["recall"] >= 0.9),
        "false_per_10_room_hours": None if rate is None else 10 * rate,
        "false_met": rate is not None and rate <= 0.1,
    }


def report(results: list[SessionResult], config: SweepConfig) -> dict:
    """Scores of every source: incident rows, curves, false alerts and targets."""
    out: dict = {
        "config": {**asdict(config), "detector": asdict(config.detector)},
        "records": sum(r.records for r in results),
    }
    sources = sorted({s for r in results for s in r.detections})
    for source in sources:
        rows = score_incidents(results, source)
        fa = false_alerts(results, source)
        out[source] = {
            "incidents": rows,
            "curves": curve(rows, ("stage", "drop", "duration", "size")),
            "by_drop_size": curve(rows, ("stage", "drop", "size")),
            "by_onset": curve(rows, ("stage", "onset")),
            "false_alerts": fa,
            "targets": targets(rows, fa),
        }
    return out

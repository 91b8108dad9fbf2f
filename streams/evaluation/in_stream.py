"""``livepulse evaluate-alerts``: how well do the alerts find the simulator's incidents?

How sessions are run
--------------------
Each simulated session (:mod:`streams.sim`) goes through the worker's own code, without
Kafka: every record is decoded with :func:`streams.core.contract.decode` (malformed ones dropped as
the ingest stage would), numbered per topic-partition as offsets, and handed, per partition,
to a :class:`~streams.core.processor.PartitionProcessor` as the worker would see it at real-time
speed: the records that arrive within one second of the simulated wall clock (their
``arrival_ms``) form one batch per partition, an empty batch (the worker's tick) when none
arrive, with the wall clock at the end of that second as ``now`` and the default idle timeout
(30 s). The watermark, the lateness rules and the idle rule therefore close each window when
the real worker would. Each newly closed window is recorded with the simulated wall time at
which it closed; the detector then judges the room's closed windows as :func:`on_close
<streams.core.detector.on_close>` would in the worker (it is invariant to how many windows one
call brings). After the last record the clock runs on for the idle timeout, so the windows
the worker would close then are closed too; a room's last window stays open, as in the
worker until newer events arrive.

Sessions: one with the four incident kinds per seed, and one *incident-free* session per seed
(seed + ``QUIET_SEED_OFFSET``, so a different plan; its flash sales and tails are still
there) for the false-alert rate.

Definitions
-----------
* An alert's time ``fired_at_ms`` is the simulated wall time at which the worker closed the
  window that fired it (for Prometheus rules: when the rule fired).
* The alert kind expected of each incident kind is :data:`streams.core.detector.INCIDENT_KIND`
  (``payment_outage`` -> ``payment_trouble``, ``stockout`` and ``conversion_decay`` ->
  ``conversion_drop``, ``traffic_cut`` -> ``traffic_cut``). A stock-out of the best seller
  removes its orders at creation (clicks on its card go on), so it shows in orders created per
  click, i.e. ``conversion_drop`` (from the room test, or the stock-out test naming the
  product).
* A *detection* (one ``firing`` alert) is a **true positive** when an incident in its room
  expects its kind and it came no earlier than the close of the incident's first window
  (its end + grace) and no later than ``end_ms + slack`` (``slack`` = two windows: the
  incident's last window closes after its end). An alert on a window that ended before the
  incident began is therefore false, even if it is written after the start. Every other
  detection is a **false alert**. Resolve events are not detections.
* **Recall** of an incident kind: the share of its incidents with at least one true positive.
  It is computed over the incidents in rooms with at least ``eligible_enters_per_minute`` (200)
  enters per minute (the target's condition; the room's median enters per closed window over
  the whole session, scaled to a minute) and, separately, over all incidents.
* **Detection delay** of a detected incident, from its first true positive: in seconds,
  ``fired_at_ms - start_ms``; in *closed windows*, the number of windows whose end is after
  the incident start and that had closed by ``fired_at_ms`` (a window is taken as closed
  ``grace`` after its end), so an alert on the window the incident started in has delay 1.
  Median and 90th percentile (nearest rank) over the detected eligible incidents.
* **Precision** of an alert kind: true positives / all its detections in the incident
  sessions (rooms of every size).
* **False alerts per room-hour**: detections in the incident-free sessions divided by their
  room-hours (every room live for the whole session), per alert kind and in total; and, as a
  second sample, every false alert of every session (incident sessions included) per
  room-hour of all sessions.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import msgspec

from streams.core.contract import Source
from streams.core.detector import (
    INCIDENT_KIND,
    KINDS,
    STEPS,
    AlertEvent,
    DetectorConfig,
    DetectorState,
    on_close,
)
from streams.core.driver import LocalWorker
from streams.core.funnel import Counts
from streams.core.processor import ProcessorConfig
from streams.core.rooms import RoomConfig
from streams.sim import Emitted, SimConfig, generate, incidents
from streams.sim.sessions import INCIDENT_KINDS, plan_session

QUIET_SEED_OFFSET = 1_000_000
#: Event time at which every evaluated session ends (any fixed value: sessions are replayed
#: through the pure pipeline, not Kafka, so it need not be near the wall clock).
END_MS = 1_750_000_000_000
_SOURCE = {"views": Source.VIEWS, "clicks": Source.CLICKS, "orders": Source.ORDERS}

#: (room_id, alert kind, fired_at_ms): what any alert source hands to the report.
Detection = tuple[str, str, int]


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: which sessions, which detector, how results are matched."""

    seeds: tuple[int, ...] = tuple(range(1, 13))
    rooms: int = 6
    minutes: float = 30.0
    rate: float = 800.0
    partitions: int = 4
    window_ms: int = 60_000
    grace_ms: int = 5_000
    idle_timeout_s: float = 30.0
    retention: int = 60
    eligible_enters_per_minute: float = 200.0
    slack_windows: int = 2
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    def check(self) -> None:
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.rooms < 1 or self.minutes <= 0 or self.rate <= 0:
            raise ValueError("rooms, minutes and rate must be positive")
        self.detector.check()

    def session(self, seed: int, quiet: bool) -> SimConfig:
        return SimConfig(
            seed=seed + QUIET_SEED_OFFSET if quiet else seed,
            rooms=self.rooms,
            minutes=self.minutes,
            rate=self.rate,
            end_ms=END_MS,
            incidents=() if quiet else INCIDENT_KINDS,
            grace_ms=self.grace_ms,
            window_ms=self.window_ms,
            partitions=self.partitions,
        )


class ClosedWindow(msgspec.Struct, array_like=True):
    """A room window as the worker closed it, and the simulated wall time it closed at."""

    start: int
    counts: Counts
    closed_at_ms: int
    products: dict[str, list[int]] | None = None


@dataclass
class SessionWindows:
    """Every room's closed windows of one session, oldest first, plus its incidents."""

    sim: SimConfig
    incidents: list[dict]
    rooms: dict[str, list[ClosedWindow]]
    records: int = 0


def close_windows(
    sim: SimConfig, *, idle_timeout_s: float = 30.0, retention: int = 60, tick_ms: int = 1000
) -> SessionWindows:
    """Run one session through the worker's rules at real-time pace (see above)."""
    rooms, n = replay(
        generate(sim),
        partitions=sim.partitions,
        window_ms=sim.window_ms,
        grace_ms=sim.grace_ms,
        idle_timeout_s=idle_timeout_s,
        retention=retention,
        tick_ms=tick_ms,
    )
    return SessionWindows(sim, incidents(sim), rooms, n)


def replay(
    records: Iterable[Emitted],
    *,
    partitions: int,
    window_ms: int,
    grace_ms: int,
    idle_timeout_s: float = 30.0,
    retention: int = 60,
    tick_ms: int = 1000,
) -> tuple[dict[str, list[ClosedWindow]], int]:
    """Records (in arrival order) through :class:`LocalWorker`: every room's closed windows,
    oldest first, each with the simulated wall time it closed at; and how many records."""
    worker = LocalWorker(
        partitions,
        ProcessorConfig(room=RoomConfig(size_ms=window_ms, retention=retention), grace_ms=grace_ms),
        idle_timeout_ms=int(idle_timeout_s * 1000),
        tick_ms=tick_ms,
    )
    rooms: dict[str, list[ClosedWindow]] = defaultdict(list)
    last_closed: dict[str, int] = {}

    def record(done: list) -> None:
        for now_ms, p, out in done:
            for room in out.closed:
                state = worker.processors[p].rooms.get(room)
                if state is None or not state.closed:
                    continue
                newest = last_closed.get(room, -1)
                rooms[room].extend(
                    ClosedWindow(w.start, w.counts, now_ms, w.products)
                    for w in state.closed
                    if w.start > newest
                )
                last_closed[room] = state.closed[-1].start

    n = 0
    for rec in records:
        n += 1
        record(worker.run_until(rec.arrival_ms))
        worker.send(_SOURCE[rec.topic], rec.key, rec.value, rec.arrival_ms)
    # the worker's ticks go on: once the idle timeout has passed, the idle rule closes what
    # it can (a timeout longer than ten minutes is taken as "no idle rule": nothing to wait for)
    idle_ticks = int(idle_timeout_s * 1000 / tick_ms) if idle_timeout_s <= 600 else 0
    if worker.now_ms is not None:
        record(worker.run_until(worker.now_ms + (idle_ticks + 2) * tick_ms))
    return dict(rooms), n


def detect(
    session: SessionWindows, config: DetectorConfig, retention: int = 60
) -> list[tuple[AlertEvent, int]]:
    """The detector's events over the session, each with the wall time it was written."""
    return detect_rooms(session.rooms, session.sim.window_ms, config, retention)


def detect_rooms(
    rooms: dict[str, list[ClosedWindow]], size: int, config: DetectorConfig, retention: int = 60
) -> list[tuple[AlertEvent, int]]:
    """The detector's events over rooms' closed windows, each with the wall time it was
    written (as :func:`on_close <streams.core.detector.on_close>` runs in the worker)."""
    out: list[tuple[AlertEvent, int]] = []
    for room in sorted(rooms):
        windows = rooms[room]
        state = DetectorState()
        for i, w in enumerate(windows):
            state, events = on_close(
                config, state, room, windows[max(0, i + 1 - retention) : i + 1], size
            )
            out.extend((e, w.closed_at_ms) for e in events)
    out.sort(key=lambda item: (item[1], item[0].room_id, KINDS.index(item[0].kind)))
    return out


def typical_enters_per_minute(windows: Sequence[ClosedWindow], window_ms: int) -> float:
    if not windows:
        return 0.0
    return statistics.median(w.counts.enters for w in windows) * 60_000 / window_ms


def incident_evidence(
    windows: Sequence[ClosedWindow],
    inc: dict,
    window_ms: int,
    flash_sales: Sequence[tuple[int, int]] = (),
) -> float | None:
    """How much a run of the incident's windows says "this step dropped", in nats.

    The largest Poisson log-likelihood ratio ``x ln(x / m) - (x - m)`` (``x < m``) of the
    successes ``x`` of any run of consecutive windows overlapping the incident, against the
    ``m`` that the room's rate in its other windows predicts for their attempts (its first
    and last windows, those of its flash sales and the window after each left out: the
    simulator's plan says where they are; None when fewer than three windows remain). A CUSUM
    with that baseline gathers no more than this from the incident, so an incident whose
    evidence is below the kind's threshold is out of such a detector's reach: it tells a
    weak detector from a weak signal.

    For a stock-out the step is the orders created per click of the room's best seller (the
    product with the most orders in those other windows), as the detector's stock-out test
    sees it.
    """
    num, den = STEPS[INCIDENT_KIND[inc["kind"]]]
    start, end = inc["start_ms"], inc["end_ms"]
    inside = [w for w in windows if w.start + window_ms > start and w.start < end]

    def touches(w: ClosedWindow, s0: int, s1: int) -> bool:
        return w.start + window_ms > s0 and w.start < s1

    outside = [
        w
        for w in windows[1:-1]
        if not touches(w, start, end)
        and not any(touches(w, s0, s1 + window_ms) for s0, s1 in flash_sales)
    ]

    if inc["kind"] == "stockout":
        sold: dict[str, int] = defaultdict(int)
        for w in outside:
            for product, (_, orders) in (w.products or {}).items():
                sold[product] += orders
        if not sold:
            return None
        best_seller = max(sold, key=lambda p: (sold[p], p))

        def step(w: ClosedWindow) -> tuple[int, int]:
            clicks, orders = (w.products or {}).get(best_seller, (0, 0))
            return orders, clicks
    else:

        def step(w: ClosedWindow) -> tuple[int, int]:
            return getattr(w.counts, num), getattr(w.counts, den)

    attempts = sum(step(w)[1] for w in outside)
    if len(outside) < 3 or not attempts:
        return None
    if not inside:
        return 0.0
    rate = sum(step(w)[0] for w in outside) / attempts
    best = 0.0
    for i in range(len(inside)):
        x, m = 0, 0.0
        for w in inside[i:]:
            successes, tries = step(w)
            x += successes
            m += rate * tries
            if x < m:
                best = max(best, (x * math.log(x / m) if x else 0.0) - (x - m))
    return best


# --- matching and the report ---------------------------------------------------------------


@dataclass
class SessionOutcome:
    """What one session contributes to the report, for one alert source."""

    seed: int
    quiet: bool
    room_hours: float
    room_enters: dict[str, float]  # typical enters per minute
    evidence: list[float | None]  # per incident, see incident_evidence
    incidents: list[dict]
    detections: list[Detection]
    #: audience_loss alerts in a room's end-of-session tail, left out of ``detections``: the
    #: simulator's tail halves the audience within a minute or so, which is an audience loss
    #: by its definition; the worker cannot tell a show that ends from viewers who leave.
    session_end: int = 0


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def _false(o: SessionOutcome, room: str, kind: str, at: int) -> dict:
    """A false alert, with the incidents of its room (if any) for context."""
    return {
        "seed": o.seed,
        "quiet": o.quiet,
        "room_id": room,
        "kind": kind,
        "fired_at_ms": at,
        "enters_per_minute": round(o.room_enters.get(room, 0.0), 1),
        "room_incidents": [i["kind"] for i in o.incidents if i["room_id"] == room],
    }


def _share(rows: list[dict]) -> float | None:
    return sum(r["detected"] for r in rows) / len(rows) if rows else None


def _delays(found: list[dict]) -> dict:
    windows = [r["delay_windows"] for r in found]
    seconds = [r["delay_s"] for r in found]
    return {
        "delay_windows_median": statistics.median(windows) if windows else None,
        "delay_windows_p90": _percentile(windows, 0.9),
        "delay_s_median": statistics.median(seconds) if seconds else None,
        "delay_s_p90": _percentile(seconds, 0.9),
    }


def _matches(inc: dict, det: Detection, size: int, grace: int, slack_ms: int) -> bool:
    room, kind, at = det
    start = inc["start_ms"]
    first_closed = start - start % size + size + grace  # the incident's first window closes
    return (
        room == inc["room_id"]
        and kind == INCIDENT_KIND[inc["kind"]]
        and first_closed <= at <= inc["end_ms"] + slack_ms
    )


def report(outcomes: Iterable[SessionOutcome], config: EvalConfig) -> dict:
    """Per incident kind recall and delays, per alert kind precision and false alerts."""
    size, grace = config.window_ms, config.grace_ms
    slack = config.slack_windows * size
    outcomes = list(outcomes)
    per_incident: list[dict] = []
    tp: dict[str, int] = defaultdict(int)
    fired: dict[str, int] = defaultdict(int)
    quiet_alerts: dict[str, int] = defaultdict(int)
    quiet_alerts_eligible: dict[str, int] = defaultdict(int)
    quiet_hours = quiet_hours_eligible = 0.0
    false: list[dict] = []
    for o in outcomes:
        if o.quiet:
            quiet_hours += o.room_hours
            big = {r for r, e in o.room_enters.items() if e >= config.eligible_enters_per_minute}
            quiet_hours_eligible += o.room_hours * len(big) / max(1, len(o.room_enters))
            for room, kind, at in o.detections:
                quiet_alerts[kind] += 1
                if room in big:
                    quiet_alerts_eligible[kind] += 1
                false.append(_false(o, room, kind, at))
            continue
        for det in o.detections:
            fired[det[1]] += 1
            if any(_matches(inc, det, size, grace, slack) for inc in o.incidents):
                tp[det[1]] += 1
            else:
                false.append(_false(o, *det))
        per_incident += _incident_rows(o, config)
    return {
        "incident_kinds": _incident_kinds(per_incident, config),
        "delays": _delays([r for r in per_incident if r["eligible"] and r["detected"]]),
        "alert_kinds": _alert_kinds(tp, fired, quiet_alerts, quiet_hours),
        "false_alerts": {
            "alerts": sum(quiet_alerts.values()),
            "room_hours": quiet_hours,
            "per_room_hour": sum(quiet_alerts.values()) / quiet_hours if quiet_hours else None,
            "alerts_eligible_rooms": sum(quiet_alerts_eligible.values()),
            "room_hours_eligible_rooms": quiet_hours_eligible,
            "per_room_hour_eligible_rooms": (
                sum(quiet_alerts_eligible.values()) / quiet_hours_eligible
                if quiet_hours_eligible
                else None
            ),
            # every false alert (incident sessions too, outside their incidents) per room-hour
            # of every session: a second, larger sample of the same rate
            "all_sessions_alerts": len(false),
            "all_sessions_room_hours": sum(o.room_hours for o in outcomes),
            "all_sessions_per_room_hour": (
                len(false) / sum(o.room_hours for o in outcomes) if outcomes else None
            ),
            # audience_loss alerts in the session-end tails, not counted above
            "session_end_alerts": sum(o.session_end for o in outcomes),
        },
        "incidents": per_incident,
        "false_alerts_list": false,
    }


def _incident_rows(o: SessionOutcome, config: EvalConfig) -> list[dict]:
    """One row per incident of an incident session: found or not, when, with what delay."""
    size, grace = config.window_ms, config.grace_ms
    slack = config.slack_windows * size
    rows = []
    for inc, evidence in zip(o.incidents, o.evidence, strict=True):
        hits = sorted(d[2] for d in o.detections if _matches(inc, d, size, grace, slack))
        enters = o.room_enters.get(inc["room_id"], 0.0)
        row = {
            "seed": o.seed,
            **inc,
            "alert_kind": INCIDENT_KIND[inc["kind"]],
            "enters_per_minute": round(enters, 1),
            "eligible": enters >= config.eligible_enters_per_minute,
            "evidence": None if evidence is None else round(evidence, 2),
            "detected": bool(hits),
            "fired_at_ms": hits[0] if hits else None,
        }
        if hits:
            at = hits[0]
            first_end = inc["start_ms"] - inc["start_ms"] % size + size
            row["delay_s"] = (at - inc["start_ms"]) / 1000
            row["delay_windows"] = (at - grace - first_end) // size + 1
        rows.append(row)
    return rows


def _incident_kinds(per_incident: list[dict], config: EvalConfig) -> dict[str, dict]:
    """Recall (eligible rooms, all rooms, with enough evidence) and delays per incident kind."""
    kinds: dict[str, dict] = {}
    for kind in INCIDENT_KINDS:
        rows = [r for r in per_incident if r["kind"] == kind]
        alert_kind = INCIDENT_KIND[kind]
        threshold = (
            config.detector.stockout_threshold
            if kind == "stockout" and config.detector.stockout_ratio > 0
            else config.detector.threshold(alert_kind)
        )
        eligible = [r for r in rows if r["eligible"]]
        reachable = [r for r in eligible if (r["evidence"] or 0) >= threshold]
        kinds[kind] = {
            "alert_kind": alert_kind,
            "incidents": len(rows),
            "eligible": len(eligible),
            "recall": _share(eligible),
            "recall_all": _share(rows),
            "with_evidence": len(reachable),
            "recall_with_evidence": _share(reachable),
            **_delays([r for r in eligible if r["detected"]]),
        }
    return kinds


def _alert_kinds(tp: dict, fired: dict, quiet_alerts: dict, quiet_hours: float) -> dict:
    """Per alert kind: detections, true positives, precision, false alerts per room-hour."""
    return {
        kind: {
            "detections": fired[kind],
            "true_positives": tp[kind],
            "precision": tp[kind] / fired[kind] if fired[kind] else None,
            "false_alerts_quiet": quiet_alerts[kind],
            "false_per_room_hour": quiet_alerts[kind] / quiet_hours if quiet_hours else None,
        }
        for kind in KINDS
    }


# --- running it -----------------------------------------------------------------------------


Rules = Callable[[SimConfig], list[Detection]]


@dataclass
class SessionRun:
    """One simulated session: its closed windows, and the rules' detections when asked."""

    seed: int
    quiet: bool
    windows: SessionWindows
    rules: list[Detection] | None = None


def _session_job(args: tuple[EvalConfig, int, bool, Rules | None]) -> SessionRun:
    config, seed, quiet, rules = args
    sim = config.session(seed, quiet)
    windows = close_windows(sim, idle_timeout_s=config.idle_timeout_s, retention=config.retention)
    return SessionRun(seed, quiet, windows, None if rules is None else list(rules(sim)))


def run_sessions(
    config: EvalConfig,
    *,
    rules: Rules | None = None,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[SessionRun]:
    """Every session, in (seed, incident session first) order; ``jobs`` processes at once.

    ``rules`` (a picklable function of the session, e.g.
    :func:`streams.evaluation.prometheus_rules.evaluate_rules`) runs in the same process as the
    session.
    """
    tasks = [(config, seed, quiet, rules) for seed in config.seeds for quiet in (False, True)]
    results: list[SessionRun] = []
    if jobs <= 1:
        for i, task in enumerate(tasks):
            results.append(_session_job(task))
            if progress:
                progress(i + 1, len(tasks))
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: no fork of a process that may run threads (progress bars); a worker that cannot
    # start breaks the pool (BrokenProcessPool) instead of being restarted forever
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        for i, run in enumerate(pool.map(_session_job, tasks)):
            results.append(run)
            if progress:
                progress(i + 1, len(tasks))
    return results


def outcome(
    seed: int, quiet: bool, session: SessionWindows, detections: list[Detection]
) -> SessionOutcome:
    sim = session.sim
    flash = {p.room_id: [(s0, s1) for s0, s1, _ in p.flash_sales] for p in plan_session(sim)}
    detections, in_tail = session_end(sim, detections)
    return SessionOutcome(
        seed=seed,
        quiet=quiet,
        room_hours=sim.rooms * sim.minutes / 60,
        room_enters={
            room: typical_enters_per_minute(ws, sim.window_ms) for room, ws in session.rooms.items()
        },
        incidents=session.incidents,
        evidence=[
            incident_evidence(
                session.rooms.get(inc["room_id"], []), inc, sim.window_ms, flash[inc["room_id"]]
            )
            for inc in session.incidents
        ],
        detections=detections,
        session_end=len(in_tail),
    )


def session_end(
    sim: SimConfig, detections: list[Detection]
) -> tuple[list[Detection], list[Detection]]:
    """``detections`` split into the others and the ``audience_loss`` alerts written in a
    room's end-of-session tail (:attr:`SessionOutcome.session_end`)."""
    end = sim.bounds()[1]
    tail = {p.room_id: end - p.tail_ms for p in plan_session(sim)}
    in_tail = [d for d in detections if d[1] == "audience_loss" and d[2] >= tail.get(d[0], end)]
    return [d for d in detections if d not in in_tail], in_tail


def detector_detections(session: SessionWindows, config: DetectorConfig) -> list[Detection]:
    return [(e.room_id, e.kind, at) for e, at in detect(session, config) if e.state == "firing"]


def evaluate(
    config: EvalConfig,
    *,
    rules: Rules | None = None,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """The whole evaluation: ``{"config", "detector", "rules"?}`` reports (see :func:`report`)."""
    config.check()
    runs = run_sessions(config, rules=rules, jobs=jobs, progress=progress)
    result: dict = {"config": _config_dict(config)}
    result["records"] = sum(r.windows.records for r in runs)
    result["detector"] = report(
        (
            outcome(r.seed, r.quiet, r.windows, detector_detections(r.windows, config.detector))
            for r in runs
        ),
        config,
    )
    if rules is not None:
        result["rules"] = report(
            (outcome(r.seed, r.quiet, r.windows, r.rules or []) for r in runs), config
        )
    return result


def _config_dict(config: EvalConfig) -> dict:
    out = asdict(config)
    out["seeds"] = list(config.seeds)
    return out


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"1-12"``, ``"3"`` or ``"1,2,7"`` (ranges inside lists too); ValueError when not."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ValueError(f"expected seeds like 1-12 or 1,2,7, not {text!r}") from None
        if first < 0 or last < first:
            raise ValueError(f"expected seeds like 1-12 or 1,2,7, not {text!r}")
        seeds.extend(range(first, last + 1))
    return tuple(dict.fromkeys(seeds))

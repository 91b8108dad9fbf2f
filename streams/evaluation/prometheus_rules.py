"""Evaluate the Prometheus room alert rules against a simulated session, through a real
Prometheus server (``livepulse evaluate-alerts --rules``).

For one :class:`~streams.sim.SimConfig`:

1. **The worker's counters.** The session's records are generated and run through the
   worker's own pure code, as :mod:`streams.evaluation.in_stream` does for the in-stream
   detector: each record decoded with :func:`streams.core.contract.decode` (malformed ones
   dropped), numbered per topic-partition, and handed per partition to a
   :class:`~streams.core.processor.PartitionProcessor` in batches of one second of arrival
   time, the arrival time standing in for the wall clock.
   Every ``scrape_ms`` (5 s, the job's scrape interval in prometheus.yml) the room counters are
   rendered as the worker's ``/metrics`` shows them, stamped with that time. Scrapes go on for
   ``tail_ms`` after the session with the counters flat, as a worker keeps serving its rooms.
2. **Backfill.** The scrapes are written as OpenMetrics (only the series the rules read, with
   ``job="livepulse"`` and an ``instance``) and turned into TSDB blocks by
   ``promtool tsdb create-blocks-from openmetrics``.
3. **Rules.** ``prometheus`` is started on loopback on those blocks with the rule files
   loaded, and its ``/api/v1/rules`` says what they are, parsed by Prometheus itself. Every
   alert rule labelled ``scope: room`` is evaluated with ``/api/v1/query_range`` at the rule
   evaluation step (15 s) over the session and the tail. Recording rules are not materialised
   (the server cannot evaluate rules in the past): each recorded series an expression reads is
   replaced by its recording expression, a range over one (``x[30m] offset 5m``) by a subquery
   at the evaluation step (``(expr)[30m:15s] offset 5m``), which is what the recorded series
   holds. ``for:`` is applied as the rule manager does: an alert fires at the first
   evaluation at which its expression has returned the room at every evaluation for ``for``;
   if it stops and comes back, it fires again (another detection).

The data must lie within the server's retention: the session is moved in time to end at the
current minute (by a whole number of windows, so windows, scrapes and evaluations keep their
alignment) and the detections are moved back, so they are in the session's own event time;
the server also runs with a retention of 100 years.

Result: ``[(room_id, kind, fired_at_ms)]``, ``kind`` from :data:`KINDS`, sorted by time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from streams.core.contract import Source
from streams.core.driver import LocalWorker
from streams.core.processor import ProcessorConfig
from streams.core.rooms import RoomConfig, RoomState
from streams.evaluation.prometheus import running_prometheus
from streams.processes import NotReady
from streams.sim import Emitted, SimConfig, generate
from streams.worker.metrics import RoomExposition

#: Alert names of the room rules (``scope: room``) -> the kind of incident each detects.
KINDS = {
    "LivePulseRoomConversionDrop": "conversion_drop",
    "LivePulseRoomPaymentTrouble": "payment_trouble",
    "LivePulseRoomTrafficCut": "traffic_cut",
    "LivePulseRoomAudienceLoss": "audience_loss",
    "LivePulseRoomClickThroughDrop": "click_drop",
}

#: deploy/prometheus/rules of the source checkout (rule files are not installed with the package).
DEFAULT_RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"

SCRAPE_MS = 5_000  # the livepulse job's scrape interval (deploy/prometheus/prometheus.yml)
EVAL_MS = 15_000  # the global evaluation interval
TAIL_MS = 10 * 60_000  # evaluated after the session: the tail must stay quiet too
BATCH_MS = 1_000  # arrival time per processed batch (the worker batches far finer; same counts)
IDLE_TIMEOUT_S = 30.0  # the worker's default

Detection = tuple[str, str, int]
Renderer = Callable[[Iterable[RoomState], int], str]

_SOURCES = {"views": Source.VIEWS, "clicks": Source.CLICKS, "orders": Source.ORDERS}
_SCRAPE_LABELS = 'job="livepulse",instance="rules-eval:6066"'


class EvalError(RuntimeError):
    """A tool is missing or failed, or a rule cannot be evaluated this way."""


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    for_ms: int
    labels: dict[str, str]


# --- 1. the worker's counters ----------------------------------------------------------------


def render_rooms(states: Iterable[RoomState], size_ms: int) -> str:
    """The worker's own per-room exposition (every room with its own series)."""
    return RoomExposition(size_ms, max_rooms=10**9).render(states)


def scrapes(
    config: SimConfig,
    *,
    scrape_ms: int = SCRAPE_MS,
    tail_ms: int = TAIL_MS,
    render: Renderer = render_rooms,
) -> Iterator[tuple[int, str]]:
    """``(time ms, exposition)`` every ``scrape_ms`` from the session start to ``tail_ms``
    after its end, as a worker serving every partition would be scraped."""
    start, end = config.bounds()
    yield from scrapes_of(
        generate(config),
        (start, end),
        partitions=config.partitions,
        window_ms=config.window_ms,
        grace_ms=config.grace_ms,
        scrape_ms=scrape_ms,
        tail_ms=tail_ms,
        render=render,
    )


def scrapes_of(
    records: Iterable[Emitted],
    bounds: tuple[int, int],
    *,
    partitions: int,
    window_ms: int,
    grace_ms: int,
    scrape_ms: int = SCRAPE_MS,
    tail_ms: int = TAIL_MS,
    render: Renderer = render_rooms,
) -> Iterator[tuple[int, str]]:
    """:func:`scrapes` of any records in arrival order, of a session within ``bounds``."""
    if scrape_ms % BATCH_MS:
        raise ValueError(f"scrape_ms must be a multiple of {BATCH_MS}")
    start, end = bounds
    worker = LocalWorker(
        partitions,
        ProcessorConfig(
            # never expire a room: its counters stay through the tail
            room=RoomConfig(size_ms=window_ms, retention=1_000_000),
            grace_ms=grace_ms,
        ),
        idle_timeout_ms=int(IDLE_TIMEOUT_S * 1000),
        tick_ms=BATCH_MS,
    )
    next_scrape = start - start % scrape_ms + scrape_ms

    def advance_to(t_ms: int) -> Iterator[tuple[int, str]]:
        nonlocal next_scrape
        while next_scrape <= t_ms:
            worker.run_until(next_scrape)
            yield next_scrape, render(worker.rooms(), window_ms)
            next_scrape += scrape_ms

    for rec in records:
        if rec.arrival_ms >= next_scrape:
            yield from advance_to(rec.arrival_ms)
        worker.send(_SOURCES[rec.topic], rec.key, rec.value, rec.arrival_ms)
    yield from advance_to(end + tail_ms)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\S+)?\s*$")


def write_openmetrics(
    scraped: Iterable[tuple[int, str]], path: Path, keep: Callable[[str], bool]
) -> int:
    """Write the scrapes' samples of the series ``keep`` accepts as OpenMetrics, stamped
    with their scrape time; returns how many samples were written.

    Families are written one after the other (OpenMetrics does not interleave them), each
    series in time order; ``*_total`` series make counter families, the others gauges.
    """
    families: dict[str, list[str]] = {}
    for t_ms, text in scraped:
        stamp = f"{t_ms // 1000}.{t_ms % 1000:03d}"
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if m is None:
                raise EvalError(f"cannot parse exposition line {line!r}")
            name, labels, value, _ = m.groups()
            if not keep(name):
                continue
            inner = labels[1:-1].rstrip(",") if labels else ""
            merged = f"{inner},{_SCRAPE_LABELS}" if inner else _SCRAPE_LABELS
            families.setdefault(name, []).append(f"{name}{{{merged}}} {value} {stamp}\n")
    written = 0
    with path.open("w") as f:
        for name, lines in families.items():
            if name.endswith("_total"):
                f.write(f"# TYPE {name[: -len('_total')]} counter\n")
            else:
                f.write(f"# TYPE {name} gauge\n")
            f.writelines(lines)
            written += len(lines)
        f.write("# EOF\n")
    return written


# --- 2. and 3. Prometheus --------------------------------------------------------------------


def find_tool(name: str, given: str | None = None) -> str:
    path = given or shutil.which(name)
    if path is None:
        raise EvalError(f"{name} not found (Debian: apt-get install prometheus)")
    return path


def backfill(promtool: str, openmetrics: Path, data_dir: Path) -> None:
    proc = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise EvalError(f"promtool tsdb create-blocks-from failed: {proc.stdout}{proc.stderr}")


@contextlib.contextmanager
def prometheus_server(
    binary: str, workdir: Path, rule_files: list[Path], timeout_s: float = 60.0
) -> Iterator[str]:
    """``prometheus`` on loopback over ``workdir/data``, with ``rule_files`` and no scrape
    targets; yields its URL once ready, and stops it on exit."""
    config = workdir / "prometheus.yml"
    listed = "".join(f"  - {orjson.dumps(str(p)).decode()}\n" for p in rule_files)
    config.write_text(f"global:\n  evaluation_interval: {EVAL_MS // 1000}s\nrule_files:\n{listed}")
    flags = ("--storage.tsdb.retention.time=100y", "--log.level=warn")
    try:
        with running_prometheus(
            binary, config, workdir / "data", workdir / "prometheus.log", flags, timeout_s
        ) as server:
            yield server.url
    except NotReady as exc:
        raise EvalError(f"prometheus: {exc}") from None


def _get(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=300) as r:
            body = orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        body = orjson.loads(exc.read())
    if body.get("status") != "success":
        raise EvalError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]


def query_range(url: str, expr: str, start_ms: int, end_ms: int, step_ms: int) -> list[dict]:
    """``/api/v1/query_range``: a list of ``{"metric": labels, "values": [[t, v], ...]}``."""
    params = urllib.parse.urlencode(
        {"query": expr, "start": start_ms / 1000, "end": end_ms / 1000, "step": step_ms / 1000}
    )
    try:
        return _get(f"{url}/api/v1/query_range?{params}")["result"]
    except EvalError as exc:
        raise EvalError(f"{exc}\nquery: {expr}") from None


def load_rules(url: str) -> tuple[dict[str, str], list[AlertRule]]:
    """The server's rules: recording rules (name -> expression) and alert rules."""
    recordings: dict[str, str] = {}
    alerts: list[AlertRule] = []
    for group in _get(f"{url}/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            if rule["type"] == "recording":
                recordings[rule["name"]] = rule["query"]
            else:
                alerts.append(
                    AlertRule(
                        rule["name"],
                        rule["query"],
                        round(rule.get("duration", 0) * 1000),
                        dict(rule.get("labels", {})),
                    )
                )
    return recordings, alerts


def inline(expr: str, recordings: dict[str, str], step_ms: int) -> str:
    """``expr`` reading no recorded series: each is replaced by its recording expression.

    ``name`` becomes ``(expr)``, ``name[range]`` (offset or not) the subquery
    ``(expr)[range:step]``. A recorded name with label matchers, or with an offset but no
    range, cannot be rewritten so and raises :class:`EvalError`.
    """
    if not recordings:
        return expr
    names = "|".join(re.escape(n) for n in sorted(recordings, key=len, reverse=True))
    pattern = re.compile(
        rf"(?<![\w:])({names})(?![\w:])(\s*\{{)?(\s*\[\s*([0-9a-z]+)\s*\])?(\s+offset\b)?"
    )
    step = f"{step_ms // 1000}s" if step_ms % 1000 == 0 else f"{step_ms}ms"

    def replace(m: re.Match) -> str:
        name, matchers, ranged, duration, offset = m.groups()
        if matchers:
            raise EvalError(f"recorded series {name} read with label matchers: {expr}")
        if ranged:
            return f"({recordings[name]})[{duration}:{step}]" + (offset or "")
        if offset:
            raise EvalError(f"recorded series {name} read with an offset but no range: {expr}")
        return f"({recordings[name]})"

    for _ in range(16):
        new = pattern.sub(replace, expr)
        if new == expr:
            return " ".join(new.split())
        expr = new
    raise EvalError(f"recording rules nest too deeply: {expr}")


def firings(values: Iterable[list], step_ms: int, for_ms: int) -> list[int]:
    """When an alert fires (ms), given the evaluations (``[t_s, value]``) its expression
    returned the series at: at the first evaluation ``for_ms`` after the start of every run
    of consecutive evaluations."""
    out: list[int] = []
    run_start = previous = None
    fired = False
    for ts, _ in values:
        t = round(float(ts) * 1000)
        if previous is None or t - previous != step_ms:
            run_start, fired = t, False
        previous = t
        if not fired and t - run_start >= for_ms:
            out.append(t)
            fired = True
    return out


# --- the whole evaluation ---------------------------------------------------------------------


def shift_to_now(config: SimConfig, now_ms: int | None = None) -> tuple[SimConfig, int]:
    """``config`` ending at the latest whole step before ``now_ms`` (a multiple of the
    window, the scrape and the evaluation interval), and how far it was moved (ms)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    unit = math.lcm(config.window_ms, SCRAPE_MS, EVAL_MS, 60_000)
    target = now_ms - now_ms % unit
    if config.end_ms is None:
        return dataclasses.replace(config, end_ms=target), 0
    delta = (target - config.end_ms) // unit * unit
    return dataclasses.replace(config, end_ms=config.end_ms + delta), delta


def evaluate_rules(
    config: SimConfig,
    *,
    rules_dir: Path | None = None,
    promtool: str | None = None,
    prometheus: str | None = None,
    workdir: Path | None = None,
    render: Renderer | None = None,
    timings: dict[str, float] | None = None,
) -> list[Detection]:
    """Every firing of a room alert over the session: ``(room_id, kind, fired_at_ms)``.

    ``config.end_ms`` unset: the session ends at the current minute. ``rules_dir``: the
    ``*.yml`` rule files (default: deploy/prometheus/rules). ``workdir``: where the
    OpenMetrics file, the TSDB and the server's log go (default: a temporary directory,
    removed). ``timings``, when given, receives the seconds each stage took.
    """
    moved, delta = shift_to_now(config)
    found = evaluate_rules_on(
        lambda: scrapes(moved, render=render or render_rooms),
        moved.bounds(),
        rules_dir=rules_dir,
        promtool=promtool,
        prometheus=prometheus,
        workdir=workdir,
        timings=timings,
    )
    return [(room, kind, t - delta) for room, kind, t in found]


def evaluate_rules_on(
    scraped: Callable[[], Iterable[tuple[int, str]]],
    bounds: tuple[int, int],
    *,
    rules_dir: Path | None = None,
    promtool: str | None = None,
    prometheus: str | None = None,
    workdir: Path | None = None,
    timings: dict[str, float] | None = None,
) -> list[Detection]:
    """Every firing of a room alert over the scrapes of a session within ``bounds``, which
    must lie within the last years (the server's retention); see :func:`evaluate_rules`."""
    rules_dir = rules_dir or DEFAULT_RULES_DIR
    rule_files = sorted(rules_dir.glob("*.yml"))
    if not rule_files:
        raise EvalError(f"no rule files (*.yml) in {rules_dir}")
    promtool = find_tool("promtool", promtool)
    prometheus = find_tool("prometheus", prometheus)
    # only the series the rules read are backfilled
    read = {m for p in rule_files for m in re.findall(r"livepulse_[a-z_]+_total", p.read_text())}
    spent = {} if timings is None else timings
    clock = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        spent[stage] = round(now - clock, 2)
        clock = now

    found: list[Detection] = []
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rules-eval-")))
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(workdir / "data", ignore_errors=True)
        om = workdir / "scrapes.om"
        samples = write_openmetrics(scraped(), om, read.__contains__)
        lap("simulate_s")
        if samples:
            backfill(promtool, om, workdir / "data")
        lap("backfill_s")
        url = stack.enter_context(prometheus_server(prometheus, workdir, rule_files))
        recordings, alerts = load_rules(url)
        room_alerts = [a for a in alerts if a.labels.get("scope") == "room"]
        unknown = sorted(a.name for a in room_alerts if a.name not in KINDS)
        if unknown or not room_alerts:
            raise EvalError(f"room alerts without a kind in KINDS: {unknown or 'none loaded'}")
        lap("start_s")
        start, end = bounds
        first = start - start % EVAL_MS + EVAL_MS
        for rule in room_alerts:
            expr = inline(rule.expr, recordings, EVAL_MS)
            for series in query_range(url, expr, first, end + TAIL_MS, EVAL_MS):
                room = series["metric"].get("room_id")
                if room is None:
                    raise EvalError(f"{rule.name}: a result without room_id")
                for t in firings(series["values"], EVAL_MS, rule.for_ms):
                    found.append((room, KINDS[rule.name], t))
        lap("query_s")
    return sorted(found, key=lambda d: (d[2], d[0], d[1]))

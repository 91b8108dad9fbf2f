"""``python -m bench.run [--quick]``: three contenders side by side, then LivePulse's latency
and memory, on the embedded broker. Prints Markdown tables; writes ``bench/results/<UTC>.json``
and ``.md``.

Each phase gets a fresh embedded broker on a free port, so no topic, group or offset leaks
from one contender to the next. Every process started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import orjson

from bench import load
from bench.procs import (
    BenchError,
    Child,
    child,
    clean_env,
    freeze,
    http_get,
    metric_values,
    peak_rss_mb,
    rss_mb,
    wait_for,
)
from streams.core.partitioner import partition_of
from streams.processes import cpu_seconds
from streams.settings import Settings
from streams.testing import free_port
from streams.worker import broker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PARTITIONS = 4
GRACE_MS = 5_000  # LivePulse's default grace, which the latency phase leaves alone
WINDOW_MS = 60_000
#: The latency phase uses 10 s windows so that a one-minute run sees several window closes
#: (a 60 s window closes once a minute); what is measured, the delay after a close, does not
#: depend on the window size.
LATENCY_WINDOW_MS = 10_000
#: Rooms per partition whose window closes the latency phase watches.
WATCHED_PER_PARTITION = 5
PROGRESS_FAMILIES = (
    "livepulse_events_applied",
    "livepulse_events_late",
    "livepulse_events_invalid",
    "livepulse_events_duplicate",
)
#: Rooms whose events end each topic-partition of the input; see add_sentinels().
SENTINEL_PREFIX = "bench-end-"


def say(message: str) -> None:
    """Progress on stderr, so stdout carries only the result tables."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the full benchmark or the quick one."""

    quick: bool
    events: int
    rooms: int
    textbook_cap_s: float
    latency_s: float
    latency_rate: float
    memory_rooms: tuple[int, ...]
    recovery_rooms: int
    seed: int
    phases: tuple[str, ...]

    @classmethod
    def make(cls, quick: bool, seed: int, phases: tuple[str, ...]) -> Plan:
        return cls(
            quick=quick,
            events=200_000 if quick else 1_000_000,
            rooms=2_000,
            textbook_cap_s=30 if quick else 60,
            latency_s=20 if quick else 60,
            latency_rate=10_000,
            memory_rooms=(10_000, 30_000) if quick else (10_000, 100_000),
            recovery_rooms=20_000 if quick else 100_000,
            seed=seed,
            phases=phases,
        )


PHASES = ("ceiling", "textbook", "livepulse", "latency", "memory", "recovery")
#: Sequence numbers of the sentinels' events, above any the load uses.
SENTINEL_SEQ = 10**12


# -- input ---------------------------------------------------------------------------------
def sentinel_rooms(partitions: int) -> dict[int, str]:
    """One room per partition, used only by the last record of each topic-partition."""
    rooms: dict[int, str] = {}
    i = 0
    while len(rooms) < partitions:
        room = f"{SENTINEL_PREFIX}{i}"
        rooms.setdefault(partition_of(room.encode(), partitions), room)
        i += 1
    return rooms


def add_sentinels(records: load.Partitioned, partitions: int) -> dict[int, str]:
    """End every topic-partition with an event of its partition's sentinel room.

    LivePulse applies each topic-partition in log order, so once a sentinel room shows one
    event of every topic, all input before it is accounted for: finding that out costs one
    small ``/rooms`` page (:func:`sentinels_done`) instead of a multi-megabyte ``/metrics``
    scrape.
    """
    rooms = sentinel_rooms(partitions)
    rng = random.Random(0)
    kind = {load.VIEWS: 0, load.CLICKS: 3, load.ORDERS: 5}
    for p, room in rooms.items():
        # one time for the room's three events (the latest of the three topic-partitions, so
        # none is behind its own topic): the room has one window, which /rooms rows show
        ends = [r[2] for t in load.SOURCE_TOPICS for r in records.get((t, p), [])[-1000:]]
        ts = max(ends, default=int(time.time() * 1000))
        for i, topic in enumerate(load.SOURCE_TOPICS):
            key = room.encode()
            seq = SENTINEL_SEQ + 3 * p + i  # event ids are unique, or a room counts them once
            records.setdefault((topic, p), []).append(
                (key, load.event(rng, seq, key, kind[topic], ts), ts)
            )
    return rooms


def sentinels_done(base_url: str, sentinels: dict[int, str]) -> bool:
    """Whether every sentinel room shows an impression, a product impression and an order,
    in one ``/rooms`` request (as the other contenders answer one ``/progress``): the page
    right after :data:`SENTINEL_PREFIX` lists the sentinel rooms first (only they have the
    prefix), each with its one window as ``last_closed`` or ``open``."""
    wanted = set(sentinels.values())
    query = f"/rooms?after={SENTINEL_PREFIX}&limit={len(wanted)}"
    status, body = http_get(base_url + query, timeout=10)
    if status != 200:
        return False
    done = set()
    for row in orjson.loads(body)["rooms"]:
        windows = [w for w in (row["last_closed"], row["open"]) if w is not None]
        if row["room_id"] in wanted and all(
            room_sum(windows, f) for f in ("impressions", "product_impressions", "orders_created")
        ):
            done.add(row["room_id"])
    return done == wanted


def check_schemas(records: load.Partitioned) -> str:
    """Validate a sample of every topic-partition against ``schemas/*.json`` (the contract)."""
    try:
        import jsonschema
    except ImportError:
        return "not checked (jsonschema not installed)"
    validators = {
        topic: jsonschema.Draft202012Validator(
            orjson.loads((ROOT / "schemas" / f"{topic}.schema.json").read_bytes())
        )
        for topic in load.SOURCE_TOPICS
    }
    checked = 0
    for (topic, _), recs in records.items():
        for key, value, _ts in [*recs[:300], *recs[-3:]]:
            doc = orjson.loads(value)
            errors = list(validators[topic].iter_errors(doc))
            if errors or doc["room_id"].encode() != key:
                raise BenchError(f"generated record breaks the contract: {value!r}: {errors[:1]}")
            checked += 1
    return f"{checked} sampled records valid"


# -- brokers and workers -------------------------------------------------------------------
@contextlib.contextmanager
def fresh_broker(tmp: Path, name: str) -> Iterator[tuple[Settings, subprocess.Popen]]:
    """An embedded broker of its own on a free port, with LivePulse's topics created."""
    settings = Settings(broker=f"kafka://127.0.0.1:{free_port()}", partitions=PARTITIONS)
    with broker.embedded(settings, log=tmp / f"broker-{name}.log") as proc:
        asyncio.run(broker.ensure_topics(settings))
        yield settings, proc


def livepulse_env(
    settings: Settings, port: int, state: Path, window_ms: int = WINDOW_MS, **extra: str
) -> dict[str, str]:
    return clean_env(
        **extra,
        LIVEPULSE_WINDOW_SECONDS=str(window_ms // 1000),
        LIVEPULSE_BROKER=settings.broker,
        LIVEPULSE_PARTITIONS=str(PARTITIONS),
        LIVEPULSE_WEB_PORT=str(port),
        LIVEPULSE_STATE_DIR=str(state),
        LIVEPULSE_REBALANCE_TIMEOUT_SECONDS="3",
        LIVEPULSE_SESSION_TIMEOUT_SECONDS="10",
        LIVEPULSE_HEARTBEAT_INTERVAL_SECONDS="1",
        LIVEPULSE_IDLE_TIMEOUT_SECONDS="3600",
        LIVEPULSE_LOGLEVEL="warning",
    )


@contextlib.contextmanager
def livepulse_worker(
    settings: Settings, tmp: Path, name: str, window_ms: int = WINDOW_MS, **extra: str
) -> Iterator[tuple[Child, str]]:
    """The real worker (``python -m streams.cli worker``); yields it and its base URL.
    Workers of the same ``name`` share a state directory."""
    port = free_port()
    env = livepulse_env(settings, port, tmp / f"state-{name}", window_ms, **extra)
    with child(
        f"livepulse worker ({name})", ["-m", "streams.cli", "worker"], env, tmp / f"{name}.log"
    ) as worker:
        yield worker, f"http://127.0.0.1:{port}"


def processed_total(base_url: str, timeout: float = 60) -> float | None:
    """applied + late + invalid over the source topics, from /metrics (None: no answer)."""
    status, body = http_get(base_url + "/metrics", timeout=timeout)
    if status != 200:
        return None
    values = metric_values(body.decode(), PROGRESS_FAMILIES)
    return sum(v for name, samples in values.items() if name.endswith("_total") for _, v in samples)


def room_windows(base_url: str, room: str) -> list[dict] | None:
    status, body = http_get(f"{base_url}/rooms/{room}", timeout=10)
    return orjson.loads(body)["windows"] if status == 200 else None


def room_sum(windows: list[dict] | None, field: str) -> int:
    return sum(w[field] for w in windows or ())


# -- measuring a backlog -------------------------------------------------------------------
#: The longest a contender may stay frozen while its input is written: below the 10 s session
#: timeout of the contenders' consumer groups, so no frozen member is evicted.
FREEZE_LIMIT_S = 8.0
#: How often the end condition is polled (the same for every contender): the end is known to
#: within this.
POLL_END_S = 0.05


@dataclass
class Sample:
    at: float  # monotonic seconds
    cpu: float
    broker_cpu: float


def _sample(worker: Child, broker_proc: subprocess.Popen) -> Sample:
    return Sample(time.monotonic(), cpu_seconds(worker.pid), cpu_seconds(broker_proc.pid))


def measure_backlog(
    worker: Child,
    broker_proc: subprocess.Popen,
    settings: Settings,
    records: load.Partitioned,
    *,
    ready: Callable[[], bool],
    progress: Callable[[], float | None],
    finished: Callable[[], bool],
    cap_s: float | None = None,
    ready_timeout: float = 180,
) -> dict[str, Any]:
    """The one timing method of every contender: the same preloaded backlog, the same samples.

    1. The contender was started on an empty broker; ``ready`` (polled every 0.25 s) says it
       has joined its group, got its partitions and waits for input. ``progress`` (its count
       of processed events) must be 0 then.
    2. It is frozen (SIGSTOP) and the whole input is written: a backlog in Kafka before the
       contender reads any of it.
    3. Start sample: the time and the contender's and the broker's CPU, then SIGCONT.
    4. End sample: the first poll (every ``POLL_END_S``) at which ``finished`` holds, i.e. every
       event was processed; or the cap, with the events ``progress`` counts then.
    5. ``progress`` is read once more at the end and must account for every event.
    """
    name = worker.name
    total = load.total(records)
    deadline = time.monotonic() + ready_timeout
    while not ready():
        worker.check()
        if time.monotonic() > deadline:
            raise BenchError(f"{name} was not ready in {ready_timeout:.0f} s; log: {worker.log}")
        time.sleep(0.25)
    before = progress()
    if before != 0:
        raise BenchError(f"{name} counts {before} events before any input was written")
    freeze(worker.pid)
    try:
        frozen = time.monotonic()
        written_in = asyncio.run(load.preload(settings.bootstrap_servers, records))
        if time.monotonic() - frozen > FREEZE_LIMIT_S:
            raise BenchError(
                f"writing the input took {written_in:.1f} s, over {FREEZE_LIMIT_S:.0f} s: the "
                f"frozen {name} could lose its group membership"
            )
        first = _sample(worker, broker_proc)
    finally:
        freeze(worker.pid, signal.SIGCONT)
    say(f"{name}: {total:,} records written in {written_in:.1f} s while it was frozen; measuring")
    capped = False
    while True:
        time.sleep(POLL_END_S)
        worker.check()
        if finished():
            last, events = _sample(worker, broker_proc), float(total)
            break
        if cap_s is not None and time.monotonic() - first.at >= cap_s:
            last = _sample(worker, broker_proc)
            events, capped = progress() or 0.0, True
            break
        if time.monotonic() - first.at > 1800:
            raise BenchError(f"{name} did not finish the backlog in 30 minutes")
    done = None
    for _ in range(5):  # one full count: the end condition must have told the truth
        done = progress()
        if done is not None:
            break
        time.sleep(1)
    if not capped and (done or 0) < total:
        raise BenchError(f"{name} looked finished but accounts for {done} of {total} events")
    seconds = last.at - first.at
    return {
        "events_per_s": events / seconds,
        "events": int(events),
        "seconds": seconds,
        "cpu_seconds_per_million_events": (last.cpu - first.cpu) / events * 1e6,
        "peak_rss_mb": peak_rss_mb(worker.pid),
        "cores_used": (last.cpu - first.cpu) / seconds,
        "broker_cpu_seconds_per_million_events": (last.broker_cpu - first.broker_cpu)
        / events
        * 1e6,
        "input_written_s": written_in,
        "end_poll_s": POLL_END_S,
        "processed_total": int(done or 0),
        "capped": capped,
        "cap_seconds": cap_s,
    }


def measure_by_progress_page(
    worker: Child,
    broker_proc: subprocess.Popen,
    settings: Settings,
    records: load.Partitioned,
    port: int,
    cap_s: float | None = None,
) -> dict[str, Any]:
    """:func:`measure_backlog` of a contender that serves ``GET /progress`` on ``port``
    (``{"events": n, "ready": bool}``): done when it counts every record."""
    url = f"http://127.0.0.1:{port}/progress"
    total = load.total(records)

    def page() -> dict | None:
        status, body = http_get(url, timeout=10)
        return orjson.loads(body) if status == 200 else None

    def progress() -> float | None:
        answer = page()
        return None if answer is None else answer["events"]

    return measure_backlog(
        worker,
        broker_proc,
        settings,
        records,
        ready=lambda: (page() or {}).get("ready") is True,
        progress=progress,
        finished=lambda: (progress() or 0) >= total,
        cap_s=cap_s,
    )


# -- the three contenders ------------------------------------------------------------------
def run_ceiling(tmp: Path, records: load.Partitioned) -> dict[str, Any]:
    with fresh_broker(tmp, "ceiling") as (settings, broker_proc):
        port = free_port()
        args = ["-m", "bench.ceiling", "--bootstrap", settings.bootstrap_servers[0]]
        args += ["--port", str(port), "--partitions", str(PARTITIONS)]
        with child("ceiling consumer", args, clean_env(), tmp / "ceiling.log") as consumer:
            return measure_by_progress_page(consumer, broker_proc, settings, records, port)


def run_textbook(tmp: Path, records: load.Partitioned, cap_s: float) -> dict[str, Any]:
    with fresh_broker(tmp, "textbook") as (settings, broker_proc):
        port = free_port()
        env = clean_env(
            BENCH_TEXTBOOK_BROKER=settings.broker,
            BENCH_TEXTBOOK_WEB_PORT=str(port),
            BENCH_TEXTBOOK_DATADIR=str(tmp / "textbook-data"),
            BENCH_TEXTBOOK_APP_ID=f"bench-textbook-{uuid.uuid4().hex[:8]}",
            BENCH_TEXTBOOK_PARTITIONS=str(PARTITIONS),
        )
        # Faust's own CLI spells the warning level "warn".
        args = ["-m", "bench.textbook", "worker", "-l", "warn"]
        with child("textbook worker", args, env, tmp / "textbook.log") as worker:
            return measure_by_progress_page(worker, broker_proc, settings, records, port, cap_s)


def run_livepulse(
    tmp: Path, records: load.Partitioned, sentinels: dict[int, str]
) -> dict[str, Any]:
    with (
        fresh_broker(tmp, "livepulse") as (settings, broker_proc),
        livepulse_worker(settings, tmp, "livepulse") as (worker, base),
    ):
        return measure_backlog(
            worker,
            broker_proc,
            settings,
            records,
            ready=lambda: http_get(base + "/ready", timeout=5)[0] == 200,
            progress=lambda: processed_total(base),
            finished=lambda: sentinels_done(base, sentinels),
        )


# -- latency at a steady load --------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


PROBE_EVERY_S = 0.2
POLL_S = 0.05
PROBE_TIMEOUT_S = 30


async def _first_seen(
    http: aiohttp.ClientSession, url: str, test: Callable[[list[dict]], bool]
) -> float | None:
    """The wall time a GET of ``url`` came back satisfying ``test``, else None."""
    try:
        async with http.get(url) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None
    at = time.time()
    if status != 200:
        return None
    return at if test(orjson.loads(body)["windows"]) else None


async def _probes(
    http: aiohttp.ClientSession, base: str, prod: Any, end: float, seed: int
) -> dict[str, Any]:
    """Every 0.2 s an ``enter`` in a room of its own; latency until /rooms shows it."""
    rng = random.Random(seed)
    pending: dict[str, float] = {}
    latencies: list[float] = []
    lost = 0
    sent = 0
    next_probe = time.time()
    while True:
        now = time.time()
        if now < end and now >= next_probe:
            room = f"probe-{sent:05d}"
            key = room.encode()
            t0 = time.time()
            value = load.event(rng, sent, key, 1, int(t0 * 1000))
            await prod.send(
                load.VIEWS, value, key=key, partition=partition_of(room.encode(), PARTITIONS)
            )
            pending[room] = t0
            sent += 1
            next_probe += PROBE_EVERY_S
        if not pending and now >= end:
            break
        rooms = list(pending)
        seen = await asyncio.gather(
            *(
                _first_seen(http, f"{base}/rooms/{r}", lambda ws: room_sum(ws, "enters") >= 1)
                for r in rooms
            )
        )
        for room, at in zip(rooms, seen, strict=True):
            if at is not None:
                latencies.append(at - pending.pop(room))
            elif time.time() - pending[room] > PROBE_TIMEOUT_S:
                del pending[room]
                lost += 1
        await asyncio.sleep(POLL_S)
    return {**percentiles(latencies), "probes": sent, "lost": lost}


async def _closes(
    http: aiohttp.ClientSession, base: str, rooms: list[str], boundaries: list[int]
) -> dict[str, Any]:
    """For each window end B: from B + grace until the sample rooms show that window closed."""
    delays: list[float] = []
    lost = 0
    for end_ms in boundaries:
        close_at = (end_ms + GRACE_MS) / 1000
        await asyncio.sleep(max(0.0, close_at - 0.5 - time.time()))
        start_ms = end_ms - LATENCY_WINDOW_MS

        def is_closed(windows: list[dict], start_ms: int = start_ms) -> bool:
            return any(w["window_start"] == start_ms and w["closed"] for w in windows)

        pending = set(rooms)
        while pending and time.time() < close_at + PROBE_TIMEOUT_S:
            order = list(pending)
            seen = await asyncio.gather(
                *(_first_seen(http, f"{base}/rooms/{r}", is_closed) for r in order)
            )
            for room, at in zip(order, seen, strict=True):
                if at is not None:
                    delays.append(max(0.0, at - close_at))
                    pending.discard(room)
            await asyncio.sleep(POLL_S)
        lost += len(pending)
    return {
        **percentiles(delays),
        "windows": len(boundaries),
        "rooms_per_window": len(rooms),
        "lost": lost,
    }


async def _latency(plan: Plan, settings: Settings, base: str, worker: Child) -> dict[str, Any]:
    rooms = load.Rooms.make(plan.rooms, PARTITIONS, prefix="live")
    # The busiest rooms of each partition: they have events in every window.
    watched: list[str] = []
    for p in range(PARTITIONS):
        watched += [r for r, rp in zip(rooms.ids, rooms.partitions, strict=True) if rp == p][
            :WATCHED_PER_PARTITION
        ]
    paced = load.PacedLoad(rooms, plan.latency_rate, plan.seed + 1)
    prod = load.producer(settings.bootstrap_servers)
    await prod.start()
    stop = asyncio.Event()
    feeder = asyncio.create_task(paced.run(prod, stop))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await asyncio.sleep(5)  # warm-up: every partition has seen all three topics
            if feeder.done():
                feeder.result()
            start = time.time()
            cpu0, sent0 = cpu_seconds(worker.pid), paced.sent
            end = start + plan.latency_s
            # Window ends whose close (end + grace) falls inside the run; at least one, so a
            # short (quick) run is stretched to the next close when none falls inside it.
            size = LATENCY_WINDOW_MS
            first_end = (math.floor((start * 1000 - GRACE_MS) / size) + 1) * size
            if (first_end + GRACE_MS) / 1000 < start + 1:
                first_end += size
            end = max(end, (first_end + GRACE_MS) / 1000 + 3)
            boundaries = list(range(first_end, int((end - 3) * 1000) - GRACE_MS + 1, size))
            say(
                f"latency: {plan.latency_rate:,.0f} events/s for {end - start:.0f} s, "
                f"{len(boundaries)} window close(s)"
            )
            probes, closes = await asyncio.gather(
                _probes(http, base, prod, end, plan.seed + 2),
                _closes(http, base, watched, boundaries),
            )
            elapsed = time.time() - start
            worker.check()
            cpu = cpu_seconds(worker.pid) - cpu0
            offered = (paced.sent - sent0) / elapsed
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(feeder, 30)
        await prod.stop()
    return {
        "offered_events_per_s": offered,
        "target_events_per_s": plan.latency_rate,
        "seconds": elapsed,
        "rooms": plan.rooms,
        "worker_cores_used": cpu / elapsed,
        "event_to_visible_s": probes,
        "beyond_window_close_s": closes,
        "resolution_s": POLL_S,
        "peak_rss_mb": peak_rss_mb(worker.pid),
    }


def run_latency(tmp: Path, plan: Plan) -> dict[str, Any]:
    with (
        fresh_broker(tmp, "latency") as (settings, _),
        livepulse_worker(settings, tmp, "latency", LATENCY_WINDOW_MS) as (worker, base),
    ):
        wait_for(base + "/ready", worker, 180, "the latency worker to be ready")
        return asyncio.run(_latency(plan, settings, base, worker))


# -- memory per active room ----------------------------------------------------------------
def memory_records(n: int, seed: int) -> tuple[load.Partitioned, dict[int, str]]:
    """impression + enter + product_impression now, for each of ``n`` rooms; last room per
    partition."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    rows = []
    last: dict[int, str] = {}
    for i in range(n):
        room = f"mem-{i:06d}"
        key = room.encode()
        p = partition_of(room.encode(), PARTITIONS)
        for kind in (0, 1, 3):
            topic = load.MIX[kind][0]
            rows.append((topic, p, key, load.event(rng, i * 3 + kind, key, kind, now_ms), now_ms))
        last[p] = room
    return load.group(rows), last


def active_rooms(base: str) -> tuple[float | None, float, int, float | None]:
    """(livepulse_rooms{role="active"}, seconds the scrape took, its size in bytes, rooms
    with their own series)."""
    started = time.perf_counter()
    status, body = http_get(base + "/metrics", timeout=300)
    took = time.perf_counter() - started
    if status != 200:
        return None, took, 0, None
    values = metric_values(body.decode(), ("livepulse_rooms",))
    active = next(
        (v for labels, v in values.get("livepulse_rooms", []) if labels.get("role") == "active"),
        None,
    )
    exported = next((v for _, v in values.get("livepulse_rooms_exported", [])), None)
    return active, took, len(body), exported


def run_memory(tmp: Path, n: int, seed: int) -> dict[str, Any]:
    with (
        fresh_broker(tmp, f"memory-{n}") as (settings, _),
        livepulse_worker(settings, tmp, f"memory-{n}") as (worker, base),
    ):
        wait_for(base + "/ready", worker, 180, "the memory worker to be ready")
        idle = rss_mb(worker.pid)
        records, last = memory_records(n, seed)
        asyncio.run(load.preload(settings.bootstrap_servers, records))
        _wait_rooms(base, worker, last, f"{n} rooms to arrive")
        rss = rss_mb(worker.pid)  # before any large scrape inflates the heap
        active, took, size, exported = active_rooms(base)
        for _ in range(10):
            if active == n:
                break
            time.sleep(1)
            active, took, size, exported = active_rooms(base)
        if active != n:
            raise BenchError(f"livepulse_rooms{{role=active}} is {active}, expected {n}")
        times = [took]
        repeats = 5 if took < 20 else 3
        for _ in range(repeats - 1):
            times.append(active_rooms(base)[1])
        return {
            "active_rooms": n,
            "rss_mb": rss,
            "rss_idle_mb": idle,
            "kb_per_room": (rss - idle) * 1024 / n,
            "rss_after_scrapes_mb": rss_mb(worker.pid),
            "peak_rss_mb": peak_rss_mb(worker.pid),
            "scrape_seconds_median": statistics.median(times),
            "scrape_seconds": times,
            "scrape_bytes": size,
            "scrape_rooms_exported": exported,
        }


def _gauge(base: str, name: str) -> float | None:
    status, body = http_get(base + "/metrics", timeout=300)
    if status != 200:
        return None
    return sum(v for _, v in metric_values(body.decode(), (name,)).get(name, []))


def _wait_rooms(
    base: str, worker: Child, last: dict[int, str], what: str, durable: bool = False
) -> None:
    """Until the last room of every partition (``memory_records``) shows its events, and,
    if ``durable``, the changelog holds every change; at most 900 s."""
    deadline = time.monotonic() + 900
    pending = dict(last)
    while True:
        worker.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after 900 s waiting for {what}; log: {worker.log}")
        for p, room in list(pending.items()):
            ws = room_windows(base, room)
            if room_sum(ws, "enters") and room_sum(ws, "product_impressions"):
                del pending[p]
        if not pending and (not durable or _gauge(base, "livepulse_rooms_unflushed") == 0):
            return
        time.sleep(0.5)


def _restart(settings: Settings, tmp: Path, name: str, n: int, store: str) -> dict[str, Any]:
    """Start a worker on an existing changelog; seconds from its start to /ready, records
    read back from the changelog, and the rooms it then serves."""
    started = time.monotonic()
    with livepulse_worker(settings, tmp, name, LIVEPULSE_STORE=store) as (worker, base):
        wait_for(base + "/ready", worker, 900, f"the {name} worker to be ready")
        ready_s = time.monotonic() - started
        restored = _gauge(base, "livepulse_changelog_records_restored_total")
        active = active_rooms(base)[0]
        if active != n:
            raise BenchError(f"{name}: {active} rooms served after recovery, expected {n}")
        return {"store": store, "seconds_to_ready": ready_s, "records_restored": restored}


def run_recovery(tmp: Path, n: int, seed: int) -> dict[str, Any]:
    """The same changelog of ``n`` rooms recovered three ways: RocksDB with its state
    directory (reads only what the directory lacks), RocksDB without, and memory (both read
    the whole changelog)."""
    with fresh_broker(tmp, f"recovery-{n}") as (settings, _):
        # The embedded broker numbers a group's first generation 0, and aiokafka sends no
        # LeaveGroup from generation 0: whoever follows the group's first member waits out its
        # session timeout. A first member that only starts and stops takes that generation,
        # so that every timed restart below follows a member that left
        # (it has no predecessor, so its start is the fixed cost: start-up and group join).
        started = time.monotonic()
        with livepulse_worker(settings, tmp, "recovery-first") as (worker, base):
            wait_for(base + "/ready", worker, 180, "the first member to be ready")
            empty_s = time.monotonic() - started
        with livepulse_worker(settings, tmp, "recovery-rocksdb", LIVEPULSE_STORE="rocksdb") as (
            worker,
            base,
        ):
            wait_for(base + "/ready", worker, 180, "the recovery worker to be ready")
            records, last = memory_records(n, seed)
            asyncio.run(load.preload(settings.bootstrap_servers, records))
            _wait_rooms(base, worker, last, f"{n} rooms to be durable", durable=True)
            written = _gauge(base, "livepulse_changelog_records_written_total")
        say(f"recovery: {n:,} rooms durable ({written:,.0f} changelog records); restarting")
        runs = {
            "rocksdb_with_state": _restart(settings, tmp, "recovery-rocksdb", n, "rocksdb"),
            "rocksdb_empty_state": _restart(settings, tmp, "recovery-fresh", n, "rocksdb"),
            "memory": _restart(settings, tmp, "recovery-memory", n, "memory"),
        }
        return {
            "rooms": n,
            "changelog_records_written": written,
            "seconds_to_ready_on_empty_changelog": empty_s,
            **runs,
        }


# -- output --------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


#: what each phase sets for itself
PER_PHASE = ("LIVEPULSE_BROKER", "LIVEPULSE_WEB_PORT", "LIVEPULSE_STATE_DIR")


def source() -> dict[str, Any]:
    """The code measured: its commit, whether the tree had uncommitted changes, and the
    settings every LivePulse worker of the run gets (phases add only ports and state dirs)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    settings = livepulse_env(Settings(broker="kafka://127.0.0.1:0"), 0, Path("state"))
    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
        "worker_settings": {
            k: v for k, v in settings.items() if k.startswith("LIVEPULSE_") and k not in PER_PHASE
        },
    }


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _ms(stats: dict[str, Any]) -> str:
    if not stats.get("n"):
        return "no samples"
    return (
        f"{stats['p50'] * 1000:,.0f} / {stats['p95'] * 1000:,.0f} / {stats['p99'] * 1000:,.0f} ms"
        f" (n={stats['n']}{', lost ' + str(stats['lost']) if stats.get('lost') else ''})"
    )


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| contender | events/s | events | seconds | CPU s / M events | peak RSS MB | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    notes = {
        "ceiling": "aiokafka getmany + orjson.loads only",
        "textbook": "Faust, one Record per event, windowed table",
        "livepulse": "the real worker (Faust agent; ingest in its child process)",
    }
    for name in ("ceiling", "textbook", "livepulse"):
        r = results.get(name)
        if r is None:
            continue
        note = notes[name]
        if r.get("capped"):
            note += f"; capped at {r['cap_seconds']:.0f} s"
        if "cores_used" in r:
            note += f"; {r['cores_used']:.2f} cores"
        lines.append(
            f"| {name} | {_num(r['events_per_s'])} | {_num(r['events'])} "
            f"| {_num(r['seconds'], 1)} | {_num(r['cpu_seconds_per_million_events'], 1)} "
            f"| {_num(r['peak_rss_mb'])} | {note} |"
        )
    for key, ratio in results.get("ratios", {}).items():
        lines.append(
            f"| {key.replace('_vs_', ' / ')} | {ratio['events_per_s']:.2f}× | | |"
            f" {_num(ratio.get('cpu_seconds_per_million_events'), 2)}× | | ratio |"
        )
    if len(lines) == 2:
        lines = []  # no contender ran
    lat = results.get("latency")
    mem = results.get("memory") or {}
    rec = results.get("recovery")
    if lat or mem or rec:
        lines += [""] if lines else []
        lines += ["| LivePulse figure | value |", "|---|---|"]
    if lat:
        lines += [
            f"| steady load | {lat['offered_events_per_s']:,.0f} events/s offered "
            f"({lat['rooms']:,} rooms, {lat['seconds']:.0f} s), "
            f"worker {lat['worker_cores_used']:.2f} cores |",
            "| event → visible in /rooms/{id}, p50 / p95 / p99 | "
            f"{_ms(lat['event_to_visible_s'])} |",
            f"| window end + grace → closed in /rooms/{{id}}, p50 / p95 / p99 | "
            f"{_ms(lat['beyond_window_close_s'])}, {lat['beyond_window_close_s']['windows']} "
            f"window(s) × {lat['beyond_window_close_s']['rooms_per_window']} rooms "
            f"({LATENCY_WINDOW_MS // 1000} s windows) |",
        ]
    for n, m in mem.items():
        lines += [
            f"| RSS at {int(n):,} active rooms | {m['rss_mb']:,.0f} MB "
            f"(idle {m['rss_idle_mb']:,.0f} MB, {m['kb_per_room']:.1f} KB/room; "
            f"peak with scrapes {m['peak_rss_mb']:,.0f} MB) |",
            f"| /metrics at {int(n):,} rooms | {m['scrape_seconds_median']:.2f} s median of "
            f"{len(m['scrape_seconds'])}, {m['scrape_bytes'] / 1e6:,.1f} MB, "
            f"{_num(m.get('scrape_rooms_exported'))} rooms with own series (cap "
            f'LIVEPULSE_METRICS_MAX_ROOMS), the rest in room_id="__other__" |',
        ]
    if rec:
        lines.append(
            f"| first start to /ready, empty changelog (start-up and group join) | "
            f"{rec['seconds_to_ready_on_empty_changelog']:.1f} s |"
        )
        for key, label in (
            ("rocksdb_with_state", "RocksDB, with its state directory"),
            ("rocksdb_empty_state", "RocksDB, empty state directory"),
            ("memory", "memory store"),
        ):
            r = rec[key]
            lines.append(
                f"| restart to /ready on a changelog of {rec['rooms']:,} rooms, {label} | "
                f"{r['seconds_to_ready']:.1f} s, {_num(r['records_restored'])} changelog "
                f"records read back |"
            )
    return "\n".join(lines) + "\n"


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    lp = results.get("livepulse")
    for other in ("textbook", "ceiling"):
        if lp and results.get(other):
            o = results[other]
            out[f"livepulse_vs_{other}"] = {
                "events_per_s": lp["events_per_s"] / o["events_per_s"],
                "cpu_seconds_per_million_events": lp["cpu_seconds_per_million_events"]
                / o["cpu_seconds_per_million_events"],
            }
    return out


# -- the command ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see python -m bench.run --help)\n")


def parse(argv: list[str] | None) -> Plan:
    parser = _Parser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under 5 minutes")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated input")
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma list of phases to run (default: all of {','.join(PHASES)})",
    )
    args = parser.parse_args(argv)
    phases = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = sorted(set(phases) - set(PHASES))
    if unknown or not phases:
        parser.error(
            f"--only: unknown phase(s) {', '.join(unknown) or '(none)'}; known: {', '.join(PHASES)}"
        )
    return Plan.make(args.quick, args.seed, phases)


def run(plan: Plan, tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "quick": plan.quick,
        "plan": asdict(plan),
        "machine": machine(),
        "source": source(),
    }
    if {"ceiling", "textbook", "livepulse"} & set(plan.phases):
        started = time.perf_counter()
        rooms = load.Rooms.make(plan.rooms, PARTITIONS)
        records = load.generate(plan.events, rooms, plan.seed, int(time.time() * 1000) - 1_000)
        sentinels = add_sentinels(records, PARTITIONS)
        expected = load.total(records)
        results["input"] = {
            "events": expected,
            "rooms": plan.rooms,
            "sentinel_events": expected - plan.events,
            "generated_in_s": time.perf_counter() - started,
            "schema_check": check_schemas(records),
        }
        check = results["input"]["schema_check"]
        say(f"input: {expected:,} records over {plan.rooms:,} rooms ({check})")
        if "ceiling" in plan.phases:
            results["ceiling"] = run_ceiling(tmp, records)
            say(f"ceiling: {results['ceiling']['events_per_s']:,.0f} events/s")
        if "textbook" in plan.phases:
            results["textbook"] = run_textbook(tmp, records, plan.textbook_cap_s)
            say(f"textbook: {results['textbook']['events_per_s']:,.0f} events/s")
        if "livepulse" in plan.phases:
            results["livepulse"] = run_livepulse(tmp, records, sentinels)
            say(f"livepulse: {results['livepulse']['events_per_s']:,.0f} events/s")
        del records
        results["ratios"] = ratios(results)
    if "latency" in plan.phases:
        results["latency"] = run_latency(tmp, plan)
    if "memory" in plan.phases:
        results["memory"] = {}
        for n in plan.memory_rooms:
            say(f"memory: {n:,} rooms")
            results["memory"][str(n)] = run_memory(tmp, n, plan.seed)
    if "recovery" in plan.phases:
        say(f"recovery: {plan.recovery_rooms:,} rooms")
        results["recovery"] = run_recovery(tmp, plan.recovery_rooms, plan.seed)
    return results


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C or SIGTERM: unwind (stopping every child); a second signal cannot cut that short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    plan = parse(argv)
    for name in [k for k in os.environ if k.startswith("LIVEPULSE_")]:
        del os.environ[name]  # the benchmark sets every LivePulse setting it relies on
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="livepulse-bench-"))
    started = time.monotonic()
    say(f"{'quick' if plan.quick else 'full'} run; logs in {tmp}")
    try:
        results = run(plan, tmp)
    except KeyboardInterrupt:
        print(f"interrupted; every process started was stopped; logs in {tmp}", file=sys.stderr)
        return 130
    except (BenchError, broker.BrokerError) as exc:
        print(f"error: {exc}\nlogs in {tmp}", file=sys.stderr)
        return 1
    results["started_utc"] = stamp
    results["wall_seconds"] = time.monotonic() - started
    table = markdown(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stamp}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    code, box = results["source"], results["machine"]
    header = (
        f"LivePulse benchmark {stamp} ({'quick' if plan.quick else 'full'}, "
        f"{results['wall_seconds']:.0f} s wall clock)\n\n"
        f"Commit {code['commit'][:12]}"
        f"{' with uncommitted changes' if code['uncommitted_changes'] else ''}; "
        f"{box['cores']} cores ({box['cpu_model']}), Python {box['python']}, "
        f"load average at start {box['loadavg_at_start'][0]:.2f}. Settings, plan and raw "
        "figures in the JSON beside this file.\n\n"
    )
    (RESULTS / f"{stamp}.md").write_text(header + table)
    print(table)
    say(f"wrote {RESULTS / stamp}.json and .md in {results['wall_seconds']:.0f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

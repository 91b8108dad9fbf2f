"""Rebalances mid-stream: 2 → 3 → 2 workers with thousands of rooms not yet in the changelog.

While the group rebalances, every worker's ``/rooms`` is scraped in turn (A, B, C, A, …): a
room that one worker lists in a scrape while another lists it both in its scrape before and
in its scrape after was served by two workers at once. There must be none, no worker may
crash, and at the end every closed window equals the truth.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from streams.testing import Pipeline, free_port, running_pipeline, wait_until
from tests.support.faults import recorded, session, write_recording
from tests.support.truth import assert_matches_truth, close_and_wait

PARTITIONS = 6
SEED = 20261203
ROOMS = 7_000
#: rooms changed in memory and not yet in the changelog when each rebalance starts
DIRTY = 5_000


@dataclass
class Scrape:
    worker: int
    started: float
    ended: float
    rooms: frozenset[str]


class Cluster:
    """The workers of one group, read as one: each room from the worker that serves it."""

    def __init__(self, workers: list[Pipeline]) -> None:
        self.workers = workers
        self.log = workers[0].log

    def up(self) -> list[Pipeline]:
        return [w for w in self.workers if w.worker is not None and w.worker.poll() is None]

    def room(self, room_id: str) -> dict | None:
        found = [d for w in self.up() if (d := w.room(room_id, here_only=True)) is not None]
        assert len(found) <= 1, (room_id, "served by", len(found), "workers")
        return found[0] if found else None

    def rooms(self) -> list[dict]:
        """Every running worker's own /rooms rows."""
        return [row for w in self.up() for row in w.rooms()]

    def close_windows(self, after_ms: int) -> None:
        self.workers[0].close_windows(after_ms)

    def unflushed(self) -> float:
        total = 0.0
        for w in self.up():
            with contextlib.suppress(OSError, AssertionError):  # not listening yet, or busy
                total += w.metrics().get(("livepulse_rooms_unflushed", ()), 0.0)
        return total

    def processed(self) -> float:
        return sum(sum(w.processed().values()) for w in self.up())

    def owned(self) -> list[list[int]] | None:
        """Each running worker's partitions once they cover all partitions, each ready."""
        owned = []
        for w in self.up():
            try:
                status, body = w.get("/ready")
            except OSError:
                return None
            if status != 200:
                return None
            owned.append(orjson.loads(body)["partitions"])
        flat = sorted(p for ps in owned for p in ps)
        return owned if flat == list(range(PARTITIONS)) else None


def _first_worker(tmp: Path) -> contextlib.AbstractContextManager[Pipeline]:
    """The group's first worker (and broker). No flush but at revocation: a worker that gives
    its partitions up holds thousands of rooms not yet in the changelog."""
    return running_pipeline(
        tmp, partitions=str(PARTITIONS), changelog_flush_seconds="300", commit_interval_seconds="5"
    )


def _another(first: Pipeline, tmp: Path, name: str) -> Pipeline:
    port = free_port()
    env = {**first.env, "LIVEPULSE_WEB_PORT": str(port), "LIVEPULSE_STATE_DIR": str(tmp / name)}
    settings = first.settings.model_copy(update={"web_port": port})
    return Pipeline(settings, env, tmp / f"worker-{name}.log")


def _scrape(cluster: Cluster, n: int) -> Scrape | None:
    worker = cluster.workers[n]
    if worker.worker is None or worker.worker.poll() is not None:
        return None
    started = time.monotonic()
    try:
        rooms = frozenset(r["room_id"] for r in worker.rooms())
    except (OSError, AssertionError):  # starting, stopping or busy rebalancing: no answer
        return None
    return Scrape(n, started, time.monotonic(), rooms)


def _double_served(scrapes: list[Scrape]) -> set[str]:
    """Rooms a worker listed between two scrapes of another worker that both listed them."""
    by_worker: dict[int, list[Scrape]] = {}
    for s in scrapes:
        by_worker.setdefault(s.worker, []).append(s)
    double: set[str] = set()
    for s in scrapes:
        for other, theirs in by_worker.items():
            if other == s.worker:
                continue
            before = [t for t in theirs if t.ended <= s.started]
            after = [t for t in theirs if t.started >= s.ended]
            if before and after:
                double |= s.rooms & before[-1].rooms & after[0].rooms
    return double


@contextlib.contextmanager
def scraping(cluster: Cluster) -> Iterator[list[Scrape]]:
    """Scrape the workers' /rooms in turn, in a thread, until the block ends."""
    scrapes: list[Scrape] = []
    done = threading.Event()

    def loop() -> None:
        n = 0
        while not done.is_set():
            scrape = _scrape(cluster, n % len(cluster.workers))
            if scrape is not None:
                scrapes.append(scrape)
            n += 1
            done.wait(0.02)  # leave the workers some CPU between scrapes

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield scrapes
    finally:
        done.set()
        thread.join(60)


def _replaying(pipeline: Pipeline, path: Path) -> threading.Thread:
    thread = threading.Thread(target=pipeline.replay, args=(path,), daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_two_three_two_workers_serve_each_room_once_and_keep_every_window_exact(
    tmp_path: Path,
) -> None:
    with _first_worker(tmp_path) as a:
        b, c = _another(a, tmp_path, "b"), _another(a, tmp_path, "c")
        cluster = Cluster([a, b, c])
        try:
            b.start_worker()
            wait_until(lambda: len(cluster.owned() or ()) == 2, 120, "two workers", a.log)
            end = a.slot() + 3_600_000
            _, records, truth = session(
                end, PARTITIONS, seed=SEED, rooms=ROOMS, minutes=3, rate=500
            )
            topics = dict(zip(("views", "clicks", "orders"), a.settings.source_topics, strict=True))
            every = recorded(records, topics, PARTITIONS)
            cut = random.Random(SEED).sample(range(len(every) // 4, 3 * len(every) // 4), 2)
            first, second = sorted(cut)
            parts = [
                write_recording(tmp_path / f"part-{n}.jsonl", part)
                for n, part in enumerate((every[:first], every[first:second], every[second:]))
            ]
            dirty_at = []
            with scraping(cluster) as scrapes:
                a.replay(parts[0])
                dirty_at.append(
                    wait_until(
                        lambda: (d := cluster.unflushed()) > DIRTY and d,
                        180,
                        f"{DIRTY} rooms dirty",
                        a.log,
                    )
                )
                feeding = _replaying(a, parts[1])
                c.start_worker()  # 2 -> 3
                wait_until(lambda: len(cluster.owned() or ()) == 3, 120, "three workers", a.log)
                feeding.join(120)
                feeding = _replaying(a, parts[2])
                dirty_at.append(
                    wait_until(
                        lambda: (d := cluster.unflushed()) > DIRTY and d,
                        180,
                        f"{DIRTY} rooms dirty",
                        a.log,
                    )
                )
                c.stop_worker()  # 3 -> 2
                assert c.worker is not None and c.worker.returncode == 0, c.tail()
                wait_until(lambda: len(cluster.owned() or ()) == 2, 120, "two workers", a.log)
                feeding.join(120)
                close_and_wait(cluster, truth)  # type: ignore[arg-type]
            for w in (a, b):
                assert w.worker is not None and w.worker.poll() is None, w.tail()
            double = _double_served(scrapes)
            assert not double, sorted(double)[:20]
            try:
                compared = assert_matches_truth(cluster, truth)  # type: ignore[arg-type]
            except AssertionError as error:
                raise AssertionError(f"{error}\n{_evidence(cluster, error, truth)}") from None
            assert compared == len(truth["windows"]) > 10_000
            per_worker = {n: sum(1 for s in scrapes if s.worker == n) for n in range(3)}
            looks = [w.metrics() for w in (a, b)]
            revoked = sum(
                m.get(("livepulse_envelopes_skipped_total", (("reason", "revoked"),)), 0)
                for m in looks
            )
            read_back = sum(m.get(("livepulse_envelopes_read_back_total", ()), 0) for m in looks)
            print(
                f"\n2 -> 3 -> 2 workers, {ROOMS} rooms; rooms not yet in the changelog when "
                f"the rebalances started: {', '.join(f'{d:.0f}' for d in dirty_at)}; "
                f"/rooms scrapes per worker {per_worker}; rooms served by two workers at "
                f"once: {len(double)}; {compared} room windows equal to the truth; envelopes "
                f"handed over after their partition was revoked (A and B): {revoked:.0f}, "
                f"read back past a gap: {read_back:.0f}"
            )
        finally:
            for w in (b, c):
                w.stop_worker()


#: counters that tell where a count went (printed when a window differs from the truth)
_EVIDENCE = (
    "livepulse_events_applied_total",
    "livepulse_events_late_total",
    "livepulse_events_duplicate_total",
    "livepulse_envelopes_skipped_total",
    "livepulse_envelopes_read_back_total",
    "livepulse_changelog_records_fenced_total",
)


def _evidence(cluster: Cluster, error: AssertionError, truth: dict) -> str:
    """What the workers say about the room a failed comparison names: who serves it, its
    late events against the truth's, and each worker's counters of where events went."""
    lines = []
    where = error.args[0] if error.args and isinstance(error.args[0], tuple) else ()
    room = where[0] if where and isinstance(where[0], str) else None
    if room is not None:
        lines.append(f"truth: {room} late {truth['late_by_room'].get(room, 0)}")
        for n, w in enumerate(cluster.workers):
            try:
                detail = w.room(room, here_only=True) if w in cluster.up() else None
            except (OSError, AssertionError) as exc:
                detail = {"error": str(exc)}
            if detail is not None:
                summary = {k: detail.get(k) for k in ("late_events", "error")}
                lines.append(f"worker {n} serves {room}: {summary}")
    for n, w in enumerate(cluster.up()):
        try:
            m = w.metrics()
        except (OSError, AssertionError) as exc:
            lines.append(f"worker {n}: no metrics ({exc})")
            continue
        found = {
            f"{name}{dict(labels) if labels else ''}": v
            for (name, labels), v in sorted(m.items())
            if name in _EVIDENCE and v
        }
        lines.append(f"worker {n}: {found}")
    return "\n".join(lines)


def _owns_all(pipeline: Pipeline) -> bool:
    try:
        status, body = pipeline.get("/ready")
    except OSError:
        return False
    return status == 200 and len(orjson.loads(body)["partitions"]) == PARTITIONS


def _lost_lines(pipeline: Pipeline) -> list[str]:
    text = pipeline.log.read_text(errors="replace") if pipeline.log.exists() else ""
    return [line for line in text.splitlines() if "this worker was removed from the group" in line]


@pytest.mark.slow
def test_a_worker_stalled_past_the_session_timeout_leaves_its_partitions_alone(
    tmp_path: Path,
) -> None:
    """Worker A stops (SIGSTOP) with hundreds of rooms not yet in the changelog; the group
    drops it after the session timeout and B takes every partition. When A comes back, its
    revocation must drop those changes rather than flush them into changelogs B owns now:
    B replays the envelopes. Every closed window equals the truth."""
    with _first_worker(tmp_path) as a:
        b = _another(a, tmp_path, "b")
        cluster = Cluster([a, b])
        try:
            b.start_worker()
            wait_until(lambda: len(cluster.owned() or ()) == 2, 120, "two workers", a.log)
            _, records, truth = session(
                a.slot() + 3_600_000, PARTITIONS, seed=SEED + 1, rooms=2_000, minutes=3, rate=300
            )
            topics = dict(zip(("views", "clicks", "orders"), a.settings.source_topics, strict=True))
            every = recorded(records, topics, PARTITIONS)
            half = len(every) // 2
            first, second = (
                write_recording(tmp_path / f"part-{n}.jsonl", part)
                for n, part in enumerate((every[:half], every[half:]))
            )
            a.replay(first)
            dirty = wait_until(
                lambda: (d := a.metrics().get(("livepulse_rooms_unflushed", ()), 0)) > 500 and d,
                120,
                "rooms of A not yet in the changelog",
                a.log,
            )
            written = ("livepulse_changelog_records_written_total", ())
            written_before = a.metrics()[written]
            assert a.worker is not None
            os.kill(a.worker.pid, signal.SIGSTOP)
            try:
                wait_until(lambda: _owns_all(b), 120, "B to own every partition", b.log)
            finally:
                os.kill(a.worker.pid, signal.SIGCONT)
            wait_until(lambda: _lost_lines(a), 60, "A to learn it was removed", a.log)
            wait_until(lambda: len(cluster.owned() or ()) == 2, 120, "two workers again", a.log)
            assert a.metrics()[written] == written_before  # nothing flushed into B's partitions
            a.replay(second)
            close_and_wait(cluster, truth)  # type: ignore[arg-type]
            for w in (a, b):
                assert w.worker is not None and w.worker.poll() is None, w.tail()
            compared = assert_matches_truth(cluster, truth)  # type: ignore[arg-type]
            assert compared == len(truth["windows"]) > 1_000
            assert len(_lost_lines(a)) == 1, _lost_lines(a)
            print(
                f"\nA stopped with {dirty:.0f} rooms not yet in the changelog; B took every "
                f"partition; A wrote no changelog record on its return and logged: "
                f"{_lost_lines(a)[0].split('[WARNING] ')[-1]}; {compared} room windows equal "
                "to the truth"
            )
        finally:
            b.stop_worker()

"""One embedded broker and one real worker process for the whole session.

A worker needs several seconds to join its consumer groups, so tests share it. They stay
apart by event time: each test takes its own hour of event time (a "slot"), later than every
earlier test's, and closes its windows by sending flush events to every topic-partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from streams import broker
from streams.settings import Settings

WINDOW_MS = 60_000
SLOT_MS = 3600_000
PARTITIONS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def partition_of(key: str) -> int:
    return DefaultPartitioner()(key.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    log: Path
    base_url: str
    first_slot: int
    slots_taken: int = 0
    worker: subprocess.Popen | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        assert status == 200, (path, status, body)
        return orjson.loads(body)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = self.get("/metrics")
        assert status == 200
        out = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def slot(self) -> int:
        """A window-aligned base time, one hour later than the previous test's."""
        self.slots_taken += 1
        return self.first_slot + (self.slots_taken - 1) * SLOT_MS

    def start_worker(self) -> None:
        with open(self.log, "ab") as out:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.worker.poll() is None, f"worker exited\n{self.tail()}"
            try:
                return self.get("/ready")[0] == 200
            except OSError:
                return False

        wait_until(ready, 120, "the worker to be ready", self)

    def stop_worker(self, sig: int = signal.SIGTERM) -> None:
        if self.worker is None or self.worker.poll() is not None:
            return
        self.worker.send_signal(sig)
        try:
            self.worker.wait(20)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, stack: Stack | None = None
):
    """Poll a condition; fail with the worker log when it never holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}" + (f"\n{stack.tail()}" if stack else "")
            )
        time.sleep(0.1)


@contextlib.contextmanager
def running_stack(tmp: Path, app_id: str, **overrides: str) -> Iterator[Stack]:
    """An embedded broker with its topics, and one worker process, ready."""
    web_port = free_port()
    values = {
        "broker": f"kafka://127.0.0.1:{free_port()}",
        "partitions": str(PARTITIONS),
        "web_port": str(web_port),
        "app_id": app_id,
        "state_dir": str(tmp / "state"),
        "idle_timeout_seconds": "3600",  # no wall-clock rule in tests: windows depend on logs only
        "rebalance_timeout_seconds": "3",
        "session_timeout_seconds": "10",
        "heartbeat_interval_seconds": "1",
        **overrides,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPULSE_")}
    env.update({f"LIVEPULSE_{k.upper()}": v for k, v in values.items()})
    settings = Settings(**values)  # type: ignore[arg-type]
    started = time.monotonic()
    with broker.embedded(settings, log=tmp / "broker.log"):
        asyncio.run(broker.ensure_topics(settings))
        twenty_days_ago = int(time.time() * 1000) - 20 * 24 * SLOT_MS
        s = Stack(
            settings,
            env,
            tmp / "worker.log",
            f"http://127.0.0.1:{web_port}",
            first_slot=twenty_days_ago - twenty_days_ago % SLOT_MS,
        )
        try:
            s.start_worker()
            print(f"\nworker ready {time.monotonic() - started:.1f} s after the broker started")
            yield s
        finally:
            s.stop_worker()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack"), "livepulse-test") as s:
        yield s


@pytest.fixture(scope="session")
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers, acks="all")
    await prod.start()
    yield prod
    await prod.stop()


TOPIC_KIND = {"views": 0, "clicks": 1, "orders": 2}


def flush_records(stack: Stack, at_ms: int) -> list[tuple[str, bytes, bytes]]:
    """One event per topic and partition at ``at_ms``: moves every partition's watermark there."""
    rooms: dict[int, str] = {}
    n = 0
    while len(rooms) < PARTITIONS:
        rooms.setdefault(partition_of(f"flush-{n}"), f"flush-{n}")
        n += 1
    out = []
    for room in rooms.values():
        for kind, body in (
            ("views", {"type": "impression"}),
            ("clicks", {"type": "product_impression", "product_id": "p"}),
            (
                "orders",
                {
                    "type": "created",
                    "order_id": "o",
                    "product_id": "p",
                    "quantity": 1,
                    "amount_cents": 0,
                    "currency": "CNY",
                },
            ),
        ):
            event = {
                "event_id": f"{room}-{at_ms}-{kind}",
                "room_id": room,
                "user_id": "f",
                "ts": at_ms,
                **body,
            }
            out.append(
                (stack.settings.source_topics[TOPIC_KIND[kind]], room.encode(), orjson.dumps(event))
            )
    return out


async def send_all(
    producer: AIOKafkaProducer, records: list[tuple[str, bytes | None, bytes]]
) -> None:
    futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
    await asyncio.gather(*futures)


def closed_windows(stack: Stack, room: str) -> list[dict]:
    status, body = stack.get(f"/rooms/{room}")
    if status != 200:
        return []
    return [w for w in orjson.loads(body)["windows"] if w["closed"]]


def wait_closed(stack: Stack, room: str, count: int, timeout: float = 30) -> list[dict]:
    """The room's closed windows, once there are ``count`` of them."""

    def ready() -> list[dict] | None:
        windows = closed_windows(stack, room)
        return windows if len(windows) == count else None

    return wait_until(ready, timeout, f"{count} closed windows of {room}", stack)

"""pytest fixtures: replay recorded topics through a real LivePulse worker and read the result.

Installed as a pytest plugin (entry point ``pytest11``), so a project that depends on
LivePulse gets the fixtures without a conftest::

    def test_friday_sale(livepulse_pipeline):
        pipeline = livepulse_pipeline(partitions=4)      # fresh topics, its own worker
        pipeline.replay("tests/data/friday.jsonl")       # written by `livepulse record`
        pipeline.wait_processed()
        pipeline.close_windows(after_ms=1_764_000_000_000)
        assert pipeline.room("room-0001")["windows"][0]["orders_paid"] == 42

Everything runs for real: the embedded broker (one per test session) and a worker process
per pipeline. No mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.core.partitioner import partition_of
from streams.processes import free_port, stop, tree
from streams.settings import Settings
from streams.worker import broker
from streams.worker.screen.peers import FORWARDED

if TYPE_CHECKING:
    import ssl

T = TypeVar("T")

SLOT_MS = 3_600_000


def _aligned(ms: float) -> int:
    return int(ms) - int(ms) % SLOT_MS


#: Rooms the flush events of close_windows() use; ``rooms()`` leaves them out.
FLUSH_ROOM_PREFIX = "~flush-"

#: Settings that make a worker ready in seconds on the embedded broker, and windows that
#: depend on the input alone (no wall-clock idle rule).
TEST_SETTINGS = {
    "idle_timeout_seconds": "3600",
    "rebalance_timeout_seconds": "3",
    "session_timeout_seconds": "10",
    "heartbeat_interval_seconds": "1",
}


def poll(condition: Callable[[], T], timeout: float) -> T | None:
    """``condition``'s first truthy value, asked every 0.1 s for ``timeout`` s; else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def wait_until(condition: Callable[[], T], timeout: float, what: str, log: Path | None = None) -> T:
    """Poll ``condition`` until it returns something truthy; fail with the worker log tail."""
    value = poll(condition, timeout)
    if value:
        return value
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


@dataclass
class Pipeline:
    """A worker process and its topics on a broker, driven over Kafka and HTTP."""

    settings: Settings
    env: dict[str, str]
    log: Path
    worker: subprocess.Popen | None = None
    replayed: dict[str, int] = field(default_factory=dict)
    first_slot: int = field(default_factory=lambda: _aligned(time.time() * 1000 - 20 * 86_400_000))
    slots_taken: int = 0

    def slot(self) -> int:
        """An hour of event time, later than every earlier slot (window-aligned start).

        Tests that share one worker stay apart this way: the partition watermark only moves
        forward, so each test's events must be newer than the previous test's flush.
        """
        self.slots_taken += 1
        return self.first_slot + (self.slots_taken - 1) * SLOT_MS

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls() is not None else "http"
        return f"{scheme}://127.0.0.1:{self.settings.web_port}"

    def _tls(self) -> ssl.SSLContext | None:
        """A worker with ``tls_server_config`` is asked over https, trusting its certificate
        (its other pages want credentials too, but /ready and /health stay open)."""
        config = self.settings.web_config
        return None if config is None else config.client_context

    # -- the worker ------------------------------------------------------------------------
    def start_worker(self, timeout: float = 120, wait: bool = True) -> None:
        """Start the worker process; unless ``wait`` is false, until ``/ready`` says 200."""
        with open(self.log, "ab") as out:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.worker is not None
            assert self.worker.poll() is None, f"worker exited\n{self.tail()}"
            try:
                return self.get("/ready")[0] == 200
            except OSError:
                return False

        if wait:
            wait_until(ready, timeout, "the worker to be ready", self.log)

    def stop_worker(self, sig: int = signal.SIGTERM) -> None:
        if self.worker is not None:
            stop(self.worker, 20, sig)

    def kill_worker(self) -> None:
        """SIGKILL the worker and its ingest process together (a container killed, a node
        lost): neither gets to finish anything."""
        if self.worker is None:
            return
        for pid in reversed(tree(self.worker.pid)):  # descendants first
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.worker.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    # -- HTTP ------------------------------------------------------------------------------
    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5, context=self._tls()) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body)
        return orjson.loads(body)

    def room(self, room_id: str, here_only: bool = False) -> dict | None:
        """The room as ``/rooms/{room_id}`` shows it; ``here_only``: only if this worker serves
        it itself (the request is marked as a forward, so it is not forwarded to the owner)."""
        headers = {FORWARDED: "test"} if here_only else None
        status, body = self.get(f"/rooms/{urllib.parse.quote(room_id, safe='')}", headers)
        return orjson.loads(body) if status == 200 else None

    def rooms(self) -> list[dict]:
        """Every room of /rooms (all its pages), but the flush events' rooms."""
        rooms, after = [], None
        while True:
            query = "/rooms?limit=5000" + (f"&after={urllib.parse.quote(after)}" if after else "")
            page = self.json(query)
            rooms += page["rooms"]
            after = page["next"]
            if after is None:
                return [r for r in rooms if not r["room_id"].startswith(FLUSH_ROOM_PREFIX)]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        status, body = self.get("/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }

    # -- input -----------------------------------------------------------------------------
    def replay(self, path: str | Path, mapping: dict[str, str] | None = None) -> dict[str, int]:
        """Replay a recording into this pipeline's topics (recorded ones are mapped by role).

        A recording of the default topics (live.views, live.clicks, live.orders) lands in this
        pipeline's own ones; ``mapping`` renames any others.
        """
        from streams.commands.recording import replay

        defaults = Settings.model_fields
        roles = {
            defaults["topic_views"].default: self.settings.topic_views,
            defaults["topic_clicks"].default: self.settings.topic_clicks,
            defaults["topic_orders"].default: self.settings.topic_orders,
        }
        counts = asyncio.run(
            replay(self.settings, Path(path), mapping={**roles, **(mapping or {})})
        )
        for topic, n in counts.items():
            self.replayed[topic] = self.replayed.get(topic, 0) + n
        return counts

    def processed(self) -> dict[str, float]:
        """Per source topic: records the worker has applied, judged late or duplicate, or
        dead-lettered."""
        m = self.metrics()
        done: dict[str, float] = {}
        for (name, labels), value in m.items():
            if name in (
                "livepulse_events_applied_total",
                "livepulse_events_late_total",
                "livepulse_events_invalid_total",
                "livepulse_events_duplicate_total",
            ):
                topic = dict(labels)["topic"]
                done[topic] = done.get(topic, 0) + value
        return done

    def wait_processed(self, timeout: float = 120) -> None:
        """Until every replayed record is accounted for by the worker."""

        def caught_up() -> bool:
            done = self.processed()
            return all(done.get(t, 0) >= n for t, n in self.replayed.items())

        wait_until(caught_up, timeout, f"the worker to process {self.replayed}", self.log)

    def close_windows(self, after_ms: int) -> None:
        """Move every partition's watermark to ``after_ms``: one event per topic-partition.

        The events belong to rooms named ``~flush-<n>``; their own windows stay open.
        """
        asyncio.run(self._send_flush(after_ms))

    def flush_records(self, at_ms: int) -> list[tuple[str, bytes, bytes]]:
        """(topic, key, value): an event at ``at_ms`` for every topic-partition."""
        n = self.settings.partitions
        rooms: dict[int, str] = {}
        i = 0
        while len(rooms) < n:
            rooms.setdefault(
                partition_of(f"{FLUSH_ROOM_PREFIX}{i}".encode(), n), f"{FLUSH_ROOM_PREFIX}{i}"
            )
            i += 1
        bodies = {
            self.settings.topic_views: {"type": "impression"},
            self.settings.topic_clicks: {"type": "product_impression", "product_id": "-"},
            self.settings.topic_orders: {
                "type": "created",
                "order_id": "-",
                "product_id": "-",
                "quantity": 1,
                "amount_cents": 0,
                "currency": "CNY",
            },
        }
        return [
            (
                topic,
                room.encode(),
                orjson.dumps(
                    {
                        "event_id": f"{room}-{topic}-{at_ms}",
                        "room_id": room,
                        "user_id": "-",
                        "ts": at_ms,
                        **body,
                    }
                ),
            )
            for room in rooms.values()
            for topic, body in bodies.items()
        ]

    async def _send_flush(self, at_ms: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            sent = [
                await producer.send(topic, value, key=key)
                for topic, key, value in self.flush_records(at_ms)
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    def closed_windows(self, room_id: str) -> list[dict]:
        detail = self.room(room_id)
        return [w for w in detail["windows"] if w["closed"]] if detail else []


@contextlib.contextmanager
def running_pipeline(
    tmp: Path, broker_url: str | None = None, **overrides: str
) -> Iterator[Pipeline]:
    """A worker (and, without ``broker_url``, its own embedded broker), topics created, ready."""
    values = {
        "broker": broker_url or f"kafka://127.0.0.1:{free_port()}",
        "web_port": str(free_port()),
        "state_dir": str(tmp / "state"),
        **TEST_SETTINGS,
        **overrides,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPULSE_")}
    env.update({f"LIVEPULSE_{k.upper()}": str(v) for k, v in values.items()})
    settings = Settings(**values)  # type: ignore[arg-type]
    with contextlib.ExitStack() as stack:
        if broker_url is None:
            stack.enter_context(broker.embedded(settings, log=tmp / "broker.log"))
        asyncio.run(broker.ensure_topics(settings))
        pipeline = Pipeline(settings, env, tmp / "worker.log")
        stack.callback(pipeline.stop_worker)
        pipeline.start_worker()
        yield pipeline


@pytest.fixture(scope="session")
def livepulse_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An embedded broker for the test session; yields its ``kafka://`` URL."""
    settings = Settings(broker=f"kafka://127.0.0.1:{free_port()}")
    with broker.embedded(settings, log=tmp_path_factory.mktemp("livepulse-broker") / "broker.log"):
        yield settings.broker


def fresh_names(app: str = "livepulse") -> tuple[str, dict[str, str]]:
    """A run id and settings that give a worker its own group and topics on a shared broker."""
    run = uuid.uuid4().hex[:8]
    return run, {
        "app_id": f"{app}-{run}",
        "topic_views": f"{run}.live.views",
        "topic_clicks": f"{run}.live.clicks",
        "topic_orders": f"{run}.live.orders",
        "topic_deadletter": f"{run}.live.deadletter",
        "topic_batches": f"{run}.livepulse.batches",
        "topic_alerts": f"{run}.live.alerts",
    }


@pytest.fixture
def livepulse_pipeline(
    livepulse_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Pipeline]]:
    """Factory: ``livepulse_pipeline(**settings)`` starts a worker on fresh topics."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> Pipeline:
            run, names = fresh_names()
            tmp = tmp_path_factory.mktemp(f"pipeline-{run}")
            values = {k: str(v) for k, v in {**names, **overrides}.items()}
            return stack.enter_context(running_pipeline(tmp, livepulse_broker, **values))

        yield start

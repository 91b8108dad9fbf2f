"""The idle rule and the clock end to end, on the default idle timeout (30 s): a topic that
really goes quiet stops holding windows back (and what comes for a window it let close is late
``closed``); a worker that stalls longer than the timeout (SIGSTOP) is not fooled into calling
the others idle; and a producer whose clock runs 10 s fast, plus events at the future bound,
make no on-time event late."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.core.partitioner import partition_of
from streams.testing import Pipeline, running_pipeline, wait_until

PARTITIONS = 2
WINDOW_S = 10


def _rooms(prefix: str) -> tuple[str, str, str]:
    """Three rooms: a and b on one partition, c on the other."""
    names = [f"{prefix}-{n}" for n in range(200)]
    by = {p: [r for r in names if partition_of(r.encode(), PARTITIONS) == p] for p in (0, 1)}
    return by[0][0], by[0][1], by[1][0]


def _event(room: str, n: int, type_: str, ts: int, **extra: object) -> dict:
    return {"event_id": f"{room}-{type_}-{n}", "room_id": room, "user_id": f"u{n}", "ts": ts,
            "type": type_, **extra}  # fmt: skip


ORDER = {"order_id": "o", "product_id": "p", "quantity": 1, "amount_cents": 100, "currency": "CNY"}


class Traffic:
    """Events at the wall clock's time, sent from a thread of its own."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.topics = dict(zip(("views", "clicks", "orders"), pipeline.settings.source_topics,
                               strict=True))  # fmt: skip
        self.sent: Counter[tuple[str, int, str]] = Counter()  # (room, window start, type)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._n = 0

    def send(self, records: list[tuple[str, dict]]) -> None:
        asyncio.run(self._send(records))

    async def _send(self, records: list[tuple[str, dict]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.pipeline.settings.bootstrap_servers)
        await producer.start()
        try:
            futures = []
            for topic, body in records:
                key = body["room_id"].encode()
                futures.append(await producer.send(self.topics[topic], orjson.dumps(body), key=key))
                ts = body["ts"]
                self.sent[(body["room_id"], ts - ts % (WINDOW_S * 1000), body["type"])] += 1
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    def start(self, make: object, every_s: float = 0.2) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self._n += 1
                self.send(make(self._n, int(time.time() * 1000)))  # type: ignore[operator]
                self._stop.wait(every_s)

        self._stop.clear()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def _late(pipeline: Pipeline, reason: str) -> float:
    return sum(
        v
        for (name, labels), v in pipeline.metrics().items()
        if name == "livepulse_events_late_total" and ("reason", reason) in labels
    )


def _closed(pipeline: Pipeline, room: str, start: int) -> dict | None:
    return next((w for w in pipeline.closed_windows(room) if w["window_start"] == start), None)


@pytest.mark.slow
def test_quiet_topic_stalled_worker_and_fast_clock(tmp_path: Path) -> None:
    with running_pipeline(
        tmp_path,
        partitions=str(PARTITIONS),
        window_seconds=str(WINDOW_S),
        idle_timeout_seconds="30",  # the default
    ) as pipeline:
        traffic = Traffic(pipeline)
        a, b, c = _rooms(f"idle{os.getpid()}")

        # 1. orders speak once, then go quiet; views and clicks go on
        now = int(time.time() * 1000)
        window = now - now % (WINDOW_S * 1000)
        traffic.send([("orders", _event(a, 0, "created", now, **ORDER))])
        quiet_from = time.monotonic()
        traffic.start(lambda n, ts: [("views", _event(r, n, "impression", ts)) for r in (a, c)]
                      + [("clicks", _event(r, n, "product_impression", ts, product_id="p"))
                         for r in (a, c)])  # fmt: skip
        # while orders are not yet idle, they hold the watermark: the window stays open
        time.sleep(max(0.0, 20 - (time.monotonic() - quiet_from)))
        assert _closed(pipeline, a, window) is None, "closed before orders were idle"
        # once they have been quiet for 30 s, the window closes without them
        wait_until(lambda: _closed(pipeline, a, window), 40, "the idle rule to close it",
                   pipeline.log)  # fmt: skip
        waited = time.monotonic() - quiet_from
        assert waited >= 30, waited
        # an order for that window now is late, reason closed: not added, not lost silently
        # (at the first order's time: within grace of its topic, so closed is the only reason)
        traffic.send([("orders", _event(a, 1, "created", now, **ORDER))])
        wait_until(lambda: _late(pipeline, "closed") == 1, 20, "late closed", pipeline.log)
        traffic.stop()
        print(f"\nquiet orders: window closed {waited:.1f} s after they went quiet")

        # 2. every topic flows, one producer's clock 10 s fast (room b shares a's partition),
        # events at the future bound (LIVEPULSE_MAX_SKEW_SECONDS = 60): nothing is late
        def skewed(n: int, ts: int) -> list[tuple[str, dict]]:
            out = []
            for room, skew in ((a, 0), (b, 10_000), (c, 0)):
                out += [
                    ("views", _event(room, n, "enter", ts + skew)),
                    ("clicks", _event(room, n, "product_click", ts + skew, product_id="p")),
                    ("orders", _event(room, n, "created", ts + skew, **ORDER)),
                ]
            if n % 25 == 0:
                out.append(("views", _event(c, 10_000 + n, "enter", ts + 55_000)))
            return out

        late_before = _late(pipeline, "grace") + _late(pipeline, "closed")
        traffic.start(skewed)
        time.sleep(20)
        traffic.stop()

        # 3. all three topics flow at the right time; the worker stalls for 40 s (SIGSTOP:
        # ingest, agent and all), longer than the idle timeout, and reads the backlog after
        def flowing(n: int, ts: int) -> list[tuple[str, dict]]:
            return [
                record
                for room in (a, b, c)
                for record in (
                    ("views", _event(room, 20_000 + n, "enter", ts)),
                    ("clicks", _event(room, 20_000 + n, "product_click", ts, product_id="p")),
                    ("orders", _event(room, 20_000 + n, "created", ts, **ORDER)),
                )
            ]

        traffic.start(flowing)
        time.sleep(8)
        assert pipeline.worker is not None
        worker = pipeline.worker
        os.kill(worker.pid, signal.SIGSTOP)  # ingest, agent and all: a 40 s stall
        time.sleep(40)
        os.kill(worker.pid, signal.SIGCONT)
        time.sleep(10)
        traffic.stop()
        pipeline.replayed = {}  # the counts below are checked window by window
        # the last window closes once the watermark passes its end plus grace (5 s); the
        # watermark never runs ahead of the wall clock, so the flush events wait for it
        stopped = int(time.time() * 1000)
        close_at = stopped - stopped % (WINDOW_S * 1000) + WINDOW_S * 1000 + 5_000
        time.sleep(max(0, close_at - int(time.time() * 1000)) / 1000 + 0.5)
        pipeline.close_windows(after_ms=int(time.time() * 1000))
        expected = {k: v for k, v in traffic.sent.items() if k[2] in ("enter", "product_click")}
        rooms = {room for room, _, _ in expected}

        def all_closed() -> bool:
            return all(
                (w := _closed(pipeline, room, start)) is not None
                and w["enters" if type_ == "enter" else "product_clicks"] == count
                for (room, start, type_), count in expected.items()
            )

        def mismatches() -> list:
            out = []
            for (room, start, type_), count in sorted(expected.items()):
                w = _closed(pipeline, room, start)
                have = None if w is None else w["enters" if type_ == "enter" else "product_clicks"]
                if have != count:
                    out.append((room[-1], (start - window) // 1000, type_, count, have))
            return out

        try:
            wait_until(all_closed, 90, "every window closed with what was sent", pipeline.log)
        except AssertionError as error:
            raise AssertionError(
                f"(room, s after start, type, sent, counted): {mismatches()}"
            ) from error
        assert _late(pipeline, "grace") + _late(pipeline, "closed") == late_before
        created = Counter()
        for (room, start, type_), count in traffic.sent.items():
            if type_ == "created" and room in rooms and start >= window + WINDOW_S * 1000:
                created[(room, start)] += count
        for (room, start), count in created.items():
            assert _closed(pipeline, room, start)["orders_created"] == count, (room, start)
        assert worker.poll() is None
        print(f"stall: {len(expected)} room windows exact, no event late; "
              f"{sum(traffic.sent.values())} events sent")  # fmt: skip

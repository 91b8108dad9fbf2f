"""``livepulse record`` and ``livepulse replay``: topics to JSON lines and back.

One line per record: ``topic``, ``partition``, ``offset``, ``timestamp`` (ms), ``key``, ``value``
and ``headers`` (a list of ``[name, value]``). Bytes are written as a JSON string when they
are UTF-8 and as ``{"base64": "..."}`` when they are not; ``null`` stays ``null``. Replaying
keeps keys, headers, timestamps and partitions, so a recording of a replay equals the
original recording apart from offsets.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams.settings import Settings
from streams.worker.broker import BrokerError
from streams.worker.security import client_options

Progress = Callable[[int], None]


class RecordingError(ValueError):
    """A bad recording file or topic list, reported in one line."""


def encode_bytes(data: bytes | None) -> str | dict | None:
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def decode_bytes(field: Any, where: str) -> bytes | None:
    if field is None:
        return None
    if isinstance(field, str):
        return field.encode()
    if isinstance(field, dict) and isinstance(field.get("base64"), str):
        return base64.b64decode(field["base64"])
    raise RecordingError(f"{where}: expected a string, {{'base64': ...}} or null")


@dataclass(frozen=True)
class Recorded:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "timestamp": self.timestamp,
                "key": encode_bytes(self.key),
                "value": encode_bytes(self.value),
                "headers": [[k, encode_bytes(v)] for k, v in self.headers],
            }
        )


def read_recording(path: Path) -> Iterator[Recorded]:
    """Parse a recording lazily; a bad line stops with ``file:line: reason``."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = orjson.loads(line)
                yield Recorded(
                    topic=str(obj["topic"]),
                    partition=int(obj["partition"]),
                    offset=int(obj.get("offset", -1)),
                    timestamp=int(obj["timestamp"]),
                    key=decode_bytes(obj.get("key"), where),
                    value=decode_bytes(obj.get("value"), where),
                    headers=tuple(
                        (str(k), decode_bytes(v, where) or b"") for k, v in obj.get("headers", [])
                    ),
                )
            except orjson.JSONDecodeError as exc:
                raise RecordingError(f"{where}: not JSON ({exc})") from None
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, RecordingError):
                    raise
                raise RecordingError(f"{where}: not a recorded record ({exc!r})") from None


async def _start(client: AIOKafkaConsumer | AIOKafkaProducer, settings: Settings) -> None:
    try:
        await client.start()
    except KafkaError as exc:
        await client.stop()
        raise BrokerError(f"cannot reach Kafka at {settings.broker}: {exc}") from None


async def record(
    settings: Settings,
    topics: list[str],
    out: Path,
    *,
    since_ms: int | None = None,
    follow: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Dump ``topics`` to ``out``; returns the number of records written.

    Without ``follow`` it stops at the end offsets seen at start. The embedded broker reports
    an end offset that can lag the last batch (see tests/integration/test_embedded_broker.py),
    so a fetch that reaches the end offset is kept whole: records beyond it in the same fetch
    belong to that last batch.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        **client_options(settings),
    )
    await _start(consumer, settings)
    try:
        known = await consumer.topics()
        missing = [t for t in topics if t not in known]
        if missing:
            raise RecordingError(f"unknown topic(s): {', '.join(missing)}")
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            ends_now = await consumer.end_offsets(tps)
            starts = {tp: (found[tp].offset if found[tp] else ends_now[tp]) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if follow or starts[tp] < ends[tp]}
        total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
        written = 0
        with out.open("wb") as sink:
            while pending and not (stop and stop.is_set()):
                fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
                for tp, records in fetched.items():
                    for r in records:
                        sink.write(
                            Recorded(
                                r.topic,
                                r.partition,
                                r.offset,
                                r.timestamp,
                                r.key,
                                r.value,
                                tuple((k, v) for k, v in r.headers),
                            ).to_json()
                        )
                        sink.write(b"\n")
                    written += len(records)
                    if not follow and records and records[-1].offset >= ends[tp] - 1:
                        pending.discard(tp)
                if progress:
                    progress(written, total)
        return written
    finally:
        await consumer.stop()


def _target(topic: str, prefix: str, mapping: dict[str, str]) -> str:
    return mapping.get(topic, prefix + topic)


async def replay(
    settings: Settings,
    path: Path,
    *,
    prefix: str = "",
    mapping: dict[str, str] | None = None,
    speed: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Send a recording back; returns records sent per target topic.

    ``speed`` None sends as fast as possible; N paces by the recorded timestamps at N× real
    time. Partitions are kept, so per-partition order is exactly the recorded one.
    """
    mapping = mapping or {}
    # a first pass checks the whole file (and counts it) before anything is sent
    needed: dict[str, set[int]] = {}
    total = 0
    first_ts = None
    for r in read_recording(path):
        needed.setdefault(_target(r.topic, prefix, mapping), set()).add(r.partition)
        total += 1
        first_ts = r.timestamp if first_ts is None else first_ts
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        acks="all",
        linger_ms=5,
        max_request_size=4 * 1024 * 1024,
    )
    await _start(producer, settings)
    counts: dict[str, int] = {}
    try:
        known = await producer.client.fetch_all_metadata()
        missing = sorted(t for t in needed if t not in known.topics())
        if missing:
            raise RecordingError(f"unknown topic(s): {', '.join(missing)}")
        for target, partitions in needed.items():
            absent = partitions - set(known.partitions_for_topic(target) or ())
            if absent:
                raise RecordingError(f"topic {target} has no partition {min(absent)}")
        started = time.monotonic()
        futures = []
        for n, r in enumerate(read_recording(path), 1):
            if speed is not None and first_ts is not None:
                due = started + (r.timestamp - first_ts) / 1000 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            target = _target(r.topic, prefix, mapping)
            futures.append(
                await producer.send(
                    target,
                    r.value,
                    key=r.key,
                    partition=r.partition,
                    timestamp_ms=r.timestamp,
                    headers=list(r.headers),
                )
            )
            counts[target] = counts.get(target, 0) + 1
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
                if progress:
                    progress(n, total)
        await asyncio.gather(*futures)
        if progress:
            progress(total, total)
    finally:
        await producer.stop()
    return counts

"""Send a JSON-lines file of contract-v1 events to their topics, keyed by ``room_id``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.core.contract import SOURCE_OF_TYPE
from streams.settings import Settings
from streams.worker.broker import BrokerError, ensure_topics
from streams.worker.security import client_options


class InputError(ValueError):
    """A bad input file, reported as ``file:line: reason``."""


@dataclass(frozen=True)
class Routed:
    topic: str
    key: bytes
    value: bytes


def route_lines(path: Path, settings: Settings) -> list[Routed]:
    """Read and route the whole file first, so a bad line stops the run before anything is sent.

    The broker is not the judge of the contract here: a line only needs ``type`` (which picks
    the topic) and ``room_id`` (the key). The worker validates the rest and dead-letters it.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    out = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where}: expected a JSON object")
        source = SOURCE_OF_TYPE.get(obj.get("type"))  # type: ignore[arg-type]
        if source is None:
            raise InputError(f"{where}: unknown event type {obj.get('type')!r}")
        room = obj.get("room_id")
        if not isinstance(room, str) or not room:
            raise InputError(f"{where}: room_id must be a non-empty string")
        out.append(Routed(settings.source_topics[source], room.encode(), line))
    return out


async def send(records: list[Routed], settings: Settings) -> dict[str, int]:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        **client_options(settings),
    )
    try:
        await producer.start()
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.broker}: {exc}") from None
    counts: dict[str, int] = {}
    try:
        futures = []
        for rec in records:
            futures.append(await producer.send(rec.topic, rec.value, key=rec.key))
            counts[rec.topic] = counts.get(rec.topic, 0) + 1
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return counts


async def produce_file(path: Path, settings: Settings) -> str:
    started = time.perf_counter()
    records = route_lines(path, settings)
    counts = await send(records, settings)
    took = time.perf_counter() - started
    per_topic = ", ".join(f"{topic} {n}" for topic, n in sorted(counts.items()))
    return f"sent {len(records)} events ({per_topic}) in {took:.2f} s"

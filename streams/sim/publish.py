"""``livepulse simulate``: the simulator's records to a file or to Kafka, paced or flat out.

The session model lives in :mod:`streams.sim`; this module only places it in time,
writes its records (in the ``livepulse record`` format, so ``livepulse replay`` sends them
back exactly, malformed ones and missing keys included), measures the rate, and computes the
truth beside them in a process of its own (``TruthInBackground``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import signal
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.commands.recording import encode_bytes
from streams.core.partitioner import partition_of
from streams.settings import Settings
from streams.sim import Emitted, SimConfig, compute_truth, generate
from streams.worker.broker import BrokerError, ensure_topics
from streams.worker.security import client_options

#: Records handed to Kafka or the file at a time.
CHUNK = 5000


@dataclass(frozen=True)
class Placement:
    """Where the session sits in event time, and how fast its records are released."""

    end_ms: int
    speed: float | None  # None: as fast as possible

    @classmethod
    def for_speed(cls, minutes: float, speed: float | None, now_ms: int) -> Placement:
        """Real time ends the session ``minutes`` from now; N× ends it when generation ends;
        ``max`` puts it wholly in the past. No event time is ever ahead of the wall clock."""
        if speed is None:
            return cls(now_ms, None)
        return cls(now_ms + int(minutes * 60_000 / speed), speed)


def partition_for(emitted: Emitted, partitions: int) -> int:
    if emitted.key is not None:
        return partition_of(emitted.key, partitions)
    return zlib.crc32(emitted.event_id.encode()) % partitions  # keyless: stable, any partition


def _topics(settings: Settings) -> dict[str, str]:
    return {
        "views": settings.topic_views,
        "clicks": settings.topic_clicks,
        "orders": settings.topic_orders,
    }


def _paced(
    records: Iterable[Emitted], placement: Placement, minutes: float
) -> Iterator[list[Emitted]]:
    """Chunks of records, each released once the simulated clock has reached it."""
    start_ms = placement.end_ms - int(minutes * 60_000)
    wall0 = time.monotonic()
    chunk: list[Emitted] = []
    for rec in records:
        if placement.speed is not None:
            due = wall0 + (rec.arrival_ms - start_ms) / 1000 / placement.speed
            if time.monotonic() < due:
                if chunk:
                    yield chunk
                    chunk = []
                time.sleep(max(0.0, due - time.monotonic()))
        chunk.append(rec)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _recorded_line(topic: str, partition: int, rec: Emitted) -> bytes:
    """The record as one line of the ``livepulse record`` format."""
    return orjson.dumps(
        {
            "topic": topic,
            "partition": partition,
            "offset": -1,
            "timestamp": rec.arrival_ms,
            "key": encode_bytes(rec.key),
            "value": encode_bytes(rec.value),
            "headers": [],
        }
    )


def _line_parts(topic: str, partition: int, key: bytes) -> tuple[bytes, bytes] | None:
    """What ``_recorded_line`` writes before and after the timestamp for a UTF-8 ``key``
    (``None`` for another key)."""
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    head = orjson.dumps({"topic": topic, "partition": partition, "offset": -1})
    return head[:-1] + b',"timestamp":', b',"key":' + orjson.dumps(text) + b',"value":'


def write_file(
    config: SimConfig,
    placement: Placement,
    settings: Settings,
    out: Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the session's records to ``out``; returns how many.

    Each line has the bytes ``_recorded_line`` gives, put together from parts kept per topic
    and key rather than from a dict per record (records whose key or value is not UTF-8 take
    ``_recorded_line`` itself)."""
    topics = _topics(settings)
    parts: dict[tuple[str, bytes | None], tuple[bytes, bytes] | None] = {}
    dumps = orjson.dumps
    n = 0
    with out.open("wb") as sink:
        for chunk in _paced(generate(config), placement, config.minutes):
            lines = []
            for rec in chunk:
                where = (rec.topic, rec.key)
                if where not in parts:
                    parts[where] = (
                        _line_parts(
                            topics[rec.topic], partition_for(rec, config.partitions), rec.key
                        )
                        if rec.key is not None
                        else None
                    )
                known = parts[where]
                try:
                    value = rec.value.decode() if known is not None else None
                except UnicodeDecodeError:
                    value = None
                if known is None or value is None:
                    topic, partition = topics[rec.topic], partition_for(rec, config.partitions)
                    lines.append(_recorded_line(topic, partition, rec))
                else:
                    head, middle = known
                    lines.append(
                        b"%s%d%s%s%s"
                        % (head, rec.arrival_ms, middle, dumps(value), b',"headers":[]}')
                    )
            sink.write(b"\n".join(lines) + b"\n")
            n += len(chunk)
            if progress:
                progress(n)
    return n


async def send_to_kafka(
    config: SimConfig,
    placement: Placement,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Batches built per partition (aiokafka ``create_batch``) keep up with tens of thousands
    of records per second from one process."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks=1,
        linger_ms=5,
        max_batch_size=512 * 1024,
        **client_options(settings),
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise BrokerError(f"cannot reach Kafka at {settings.broker}: {exc}") from None
    topics = _topics(settings)
    n = 0
    loop = asyncio.get_running_loop()
    chunks = _paced(generate(config), placement, config.minutes)
    try:
        while True:
            chunk = await loop.run_in_executor(None, next, chunks, None)
            if chunk is None:
                break
            batches: dict[tuple[str, int], object] = {}
            pending = []
            for rec in chunk:
                tp = (topics[rec.topic], partition_for(rec, config.partitions))
                batch = batches.get(tp) or batches.setdefault(tp, producer.create_batch())
                if batch.append(key=rec.key, value=rec.value, timestamp=rec.arrival_ms) is None:
                    pending.append(await producer.send_batch(batch, tp[0], partition=tp[1]))
                    batch = batches[tp] = producer.create_batch()
                    batch.append(key=rec.key, value=rec.value, timestamp=rec.arrival_ms)
            for (topic, partition), batch in batches.items():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*pending)
            n += len(chunk)
            if progress:
                progress(n)
    finally:
        await producer.stop()
    return n


def write_truth(config: SimConfig, out: Path) -> dict:
    """The ground truth, from a run of the generator of its own."""
    truth = compute_truth(config, generate(config))
    out.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return truth


def _truth_process(config: SimConfig, out: Path, send: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    try:
        truth = write_truth(config, out)
    except OSError as exc:
        send.send({"error": f"{out}: cannot write: {exc.strerror}"})
        return
    send.send({name: len(truth[name]) for name in ("windows", "late", "malformed", "incidents")})


class TruthInBackground:
    """``write_truth`` in a process of its own, from its own (identical, deterministic) run of
    the generator, while this process sends the records: with a second core the truth adds no
    time (and with one, the cost of a second generator run)."""

    def __init__(self, config: SimConfig, out: Path) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._answer, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_truth_process, args=(config, out, send), name="livepulse-truth", daemon=True
        )
        self._process.start()
        send.close()

    def result(self) -> dict[str, int]:
        """How many windows, late, malformed records and incidents it wrote; ``OSError``
        when it could not."""
        try:
            answer = self._answer.recv()
        except EOFError:
            answer = {"error": f"the truth process ended with code {self._process.exitcode}"}
        self._process.join()
        if "error" in answer:
            raise OSError(answer["error"])
        return answer

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()


def configure(placement: Placement, **fields: object) -> SimConfig:
    return dataclasses.replace(SimConfig(), end_ms=placement.end_ms, **fields)

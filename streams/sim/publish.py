"""``livepulse simulate``: the simulator's records to a file or to Kafka, paced or flat out.

The session model lives in :mod:`streams.sim`; this module only places it in time,
writes its records (in the ``livepulse record`` format, so ``livepulse replay`` sends them
back exactly, malformed ones and missing keys included), measures the rate, and computes the
truth beside them in a process of its own (``TruthInBackground``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import multiprocessing
import queue
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.commands.recording import encode_bytes
from streams.core.partitioner import partition_of
from streams.settings import Settings
from streams.sim import SimConfig
from streams.sim.generate import Fields, generate_slices
from streams.sim.truth import Truth
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


def partition_for(key: bytes | None, event_id: str, partitions: int) -> int:
    if key is not None:
        return partition_of(key, partitions)
    return zlib.crc32(event_id.encode()) % partitions  # keyless: stable, any partition


def _topics(settings: Settings) -> dict[str, str]:
    return {
        "views": settings.topic_views,
        "clicks": settings.topic_clicks,
        "orders": settings.topic_orders,
    }


def _paced(
    slices: Iterable[list[Fields]], placement: Placement, minutes: float
) -> Iterator[list[Fields]]:
    """Chunks of records (``Emitted``'s fields), each released once the simulated clock has
    reached it."""
    if placement.speed is None:
        for batch in slices:
            for i in range(0, len(batch), CHUNK):
                yield batch[i : i + CHUNK]
        return
    start_ms = placement.end_ms - int(minutes * 60_000)
    wall0 = time.monotonic()
    chunk: list[Fields] = []
    for batch in slices:
        for rec in batch:
            due = wall0 + (rec[3] - start_ms) / 1000 / placement.speed
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


def _records(
    config: SimConfig, placement: Placement, also: Callable[[list[Fields]], None] | None
) -> Iterator[list[Fields]]:
    """The session's records in paced chunks, each given to ``also`` first."""
    for chunk in _paced(generate_slices(config), placement, config.minutes):
        if also is not None:
            also(chunk)
        yield chunk


def _recorded_line(topic: str, partition: int, key: bytes | None, value: bytes, ts: int) -> bytes:
    """The record as one line of the ``livepulse record`` format."""
    return orjson.dumps(
        {
            "topic": topic,
            "partition": partition,
            "offset": -1,
            "timestamp": ts,
            "key": encode_bytes(key),
            "value": encode_bytes(value),
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
    also: Callable[[list[Fields]], None] | None = None,
) -> int:
    """Write the session's records to ``out`` (each chunk also given to ``also`` first);
    returns how many.

    Each line has the bytes ``_recorded_line`` gives, put together from parts kept per topic
    and key rather than from a dict per record (records whose key or value is not UTF-8 take
    ``_recorded_line`` itself)."""
    topics = _topics(settings)
    partitions = config.partitions
    # topic -> key -> the line's parts, None for a key that is not UTF-8
    parts: dict[str, dict[bytes | None, tuple[bytes, bytes] | None]] = {t: {} for t in topics}
    dumps = orjson.dumps
    tail = b',"headers":[]}\n'
    n = 0
    with out.open("wb") as sink:
        for chunk in _records(config, placement, also):
            lines = []
            for topic, key, value, arrival, _, event_id in chunk:
                of_topic = parts[topic]
                known = of_topic.get(key)
                if known is None and key not in of_topic:
                    known = of_topic[key] = (
                        _line_parts(topics[topic], partition_for(key, "", partitions), key)
                        if key is not None
                        else None
                    )
                try:
                    text = value.decode() if known is not None else None
                except UnicodeDecodeError:
                    text = None
                if known is None or text is None:
                    partition = partition_for(key, event_id, partitions)
                    lines.append(_recorded_line(topics[topic], partition, key, value, arrival))
                    lines.append(b"\n")
                else:
                    head, middle = known
                    lines.append(b"%s%d%s%s%s" % (head, arrival, middle, dumps(text), tail))
            sink.write(b"".join(lines))
            n += len(chunk)
            if progress:
                progress(n)
    return n


async def send_to_kafka(
    config: SimConfig,
    placement: Placement,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    also: Callable[[list[Fields]], None] | None = None,
) -> int:
    """Batches built per partition (aiokafka ``create_batch``) keep up with tens of thousands
    of records per second from one process. Each chunk is also given to ``also`` first."""
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
    chunks = _records(config, placement, also)
    try:
        while True:
            chunk = await loop.run_in_executor(None, next, chunks, None)
            if chunk is None:
                break
            batches: dict[tuple[str, int], object] = {}
            pending = []
            for topic, key, value, arrival, _, event_id in chunk:
                tp = (topics[topic], partition_for(key, event_id, config.partitions))
                batch = batches.get(tp) or batches.setdefault(tp, producer.create_batch())
                if batch.append(key=key, value=value, timestamp=arrival) is None:
                    pending.append(await producer.send_batch(batch, tp[0], partition=tp[1]))
                    batch = batches[tp] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=arrival)
            for (topic, partition), batch in batches.items():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*pending)
            n += len(chunk)
            if progress:
                progress(n)
    finally:
        await producer.stop()
    return n


_encode_records = msgspec.msgpack.Encoder().encode
_decode_records = msgspec.msgpack.Decoder(list[Fields]).decode


def _truth_of_chunks(config: SimConfig, chunks: Iterable[bytes]) -> dict:
    """The truth of the records in ``chunks`` (msgpack), with the garbage collector paused:
    the truth makes no reference cycles, and the collector would only walk its growing state
    again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        truth = Truth(config)
        for data in chunks:
            truth.add(_decode_records(data))
        return truth.result()
    finally:
        if enabled:
            gc.enable()


def _truth_process(config: SimConfig, out: Path, records: Connection, send: Connection) -> None:
    """The truth of the chunks received (until an empty message), written to ``out``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    result = _truth_of_chunks(config, iter(records.recv_bytes, b""))
    try:
        out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    except OSError as exc:
        send.send({"error": f"{out}: cannot write: {exc.strerror}"})
        return
    send.send({name: len(result[name]) for name in ("windows", "late", "malformed", "incidents")})


class TruthInBackground:
    """The truth of the records this process writes or sends, computed in a process of its own
    from the chunks given to ``feed``: with a second core it adds little time. A thread hands
    the chunks over, so that this process goes on while the other one reads a chunk."""

    def __init__(self, config: SimConfig, out: Path) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._answer, send = context.Pipe(duplex=False)
        receive, self._records = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_truth_process,
            args=(config, out, receive, send),
            name="livepulse-truth",
            daemon=True,
        )
        self._process.start()
        send.close()
        receive.close()
        # room for about a second of records: the other process starts up meanwhile
        self._outbox: queue.Queue[bytes] = queue.Queue(maxsize=32)
        self._sender = threading.Thread(target=self._send, name="livepulse-truth-feed", daemon=True)
        self._sender.start()

    def _send(self) -> None:
        broken = False
        while True:
            data = self._outbox.get()
            if not broken:
                try:
                    self._records.send_bytes(data)
                except OSError:  # the process is gone (result() says so): drain the rest
                    broken = True
            if not data:
                self._records.close()
                return

    def feed(self, chunk: list[Fields]) -> None:
        """Records for the truth, in order (it blocks while many chunks wait already)."""
        if chunk:
            self._outbox.put(_encode_records(chunk))

    def result(self) -> dict[str, int]:
        """How many windows, late, malformed records and incidents it wrote; ``OSError``
        when it could not."""
        self._outbox.put(b"")
        try:
            answer = self._answer.recv()
        except EOFError:
            answer = {"error": f"the truth process ended with code {self._process.exitcode}"}
        self._process.join()
        self._sender.join()
        if "error" in answer:
            raise OSError(answer["error"])
        return answer

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()


def configure(placement: Placement, **fields: object) -> SimConfig:
    return dataclasses.replace(SimConfig(), end_ms=placement.end_ms, **fields)

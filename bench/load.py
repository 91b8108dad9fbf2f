"""Deterministic benchmark input and fast producers.

The benchmark needs the same million records for three contenders, written in seconds, so
this does not use ``streams.sim``: one seeded ``random.Random``, JSON from bytes
templates, and whole record batches per (topic, partition) through
``AIOKafkaProducer.send_batch``. ``bench.run`` checks a sample against ``schemas/*.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from streams.core.partitioner import partition_of

VIEWS, CLICKS, ORDERS = "live.views", "live.clicks", "live.orders"
SOURCE_TOPICS = (VIEWS, CLICKS, ORDERS)

#: (topic, type, weight): a funnel — many impressions, fewer enters, few paid orders.
MIX: tuple[tuple[str, str, int], ...] = (
    (VIEWS, "impression", 40),
    (VIEWS, "enter", 15),
    (VIEWS, "leave", 12),
    (CLICKS, "product_impression", 18),
    (CLICKS, "product_click", 8),
    (ORDERS, "created", 4),
    (ORDERS, "paid", 3),
)
_CUM_MIX = list(itertools.accumulate(w for _, _, w in MIX))

#: Largest producer batch; Kafka's default message limit is 1 MB.
BATCH_BYTES = 512 * 1024

#: (key, value, timestamp_ms) per (topic, partition), in log order.
Partitioned = dict[tuple[str, int], list[tuple[bytes, bytes, int]]]


@dataclass(frozen=True)
class Rooms:
    """Room ids, their partitions, and Zipf-like weights (a few rooms carry most traffic)."""

    ids: list[str]
    partitions: list[int]
    cum_weights: list[float]

    @classmethod
    def make(cls, count: int, partitions: int, prefix: str = "room") -> Rooms:
        ids = [f"{prefix}-{i:06d}" for i in range(count)]
        weights = [1.0 / (i + 1) ** 0.8 for i in range(count)]
        return cls(
            ids,
            [partition_of(r.encode(), partitions) for r in ids],
            list(itertools.accumulate(weights)),
        )


#: One bytes template per MIX entry (all values are ASCII, so %-formatting is valid JSON and
#: several times faster than building a dict for orjson): seq, room, user, ts, then extras.
_HEAD = b'{"event_id":"e%d","room_id":"%s","user_id":"u%d","ts":%d,"type":"'
_TEMPLATES: tuple[bytes, ...] = (
    _HEAD + b'impression"}',
    _HEAD + b'enter"}',
    _HEAD + b'leave","watch_ms":%d}',
    _HEAD + b'product_impression","product_id":"p%d"}',
    _HEAD + b'product_click","product_id":"p%d"}',
    _HEAD + b'created","order_id":"o%d","product_id":"p%d","quantity":%d,'
    b'"amount_cents":%d,"currency":"CNY"}',
    _HEAD + b'paid","order_id":"o%d","product_id":"p%d","quantity":%d,'
    b'"amount_cents":%d,"currency":"CNY"}',
)
_TOPIC_OF_KIND = tuple(topic for topic, _, _ in MIX)
USERS = 500_000


def event(rng: random.Random, seq: int, room: bytes, kind: int, ts: int) -> bytes:
    """The JSON value of one contract-v1 event of type ``MIX[kind]``."""
    rnd = rng.random
    head = (seq, room, int(rnd() * USERS), ts)
    if kind < 2:
        return _TEMPLATES[kind] % head
    if kind == 2:
        return _TEMPLATES[2] % (*head, 1_000 + int(rnd() * 900_000))
    if kind < 5:
        return _TEMPLATES[kind] % (*head, int(rnd() * 30))
    return _TEMPLATES[kind] % (
        *head,
        seq,
        int(rnd() * 30),
        1 + int(rnd() * 3),
        990 + int(rnd() * 59_000),
    )


def generate(
    count: int, rooms: Rooms, seed: int, end_ms: int, span_ms: int = 30 * 60_000
) -> Partitioned:
    """``count`` events over ``span_ms`` before ``end_ms``, in time order per topic-partition.

    Each event is up to 2 s earlier than its slot (out of order, but well within the 5 s
    grace), never later than ``end_ms``, so every contender sees only on-time events.
    """
    rng = random.Random(seed)
    rnd = rng.random
    room_idx = rng.choices(range(len(rooms.ids)), cum_weights=rooms.cum_weights, k=count)
    kinds = rng.choices(range(len(MIX)), cum_weights=_CUM_MIX, k=count)
    keys = [r.encode() for r in rooms.ids]
    parts = rooms.partitions
    start = end_ms - span_ms
    step = span_ms / count
    out: Partitioned = {}
    lists = {(t, p): out.setdefault((t, p), []) for t in SOURCE_TOPICS for p in set(parts)}
    for seq in range(count):
        r = room_idx[seq]
        kind = kinds[seq]
        ts = min(end_ms, int(start + seq * step - rnd() * 2_000))
        key = keys[r]
        lists[_TOPIC_OF_KIND[kind], parts[r]].append((key, event(rng, seq, key, kind, ts), ts))
    return out


def total(records: Partitioned) -> int:
    return sum(len(v) for v in records.values())


def producer(bootstrap: list[str]) -> AIOKafkaProducer:
    """A producer for whole batches: large batches and requests, no compression."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=5,
        max_batch_size=BATCH_BYTES,
        max_request_size=4 * BATCH_BYTES,
        request_timeout_ms=30_000,
    )


async def send_records(
    prod: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: Iterable[tuple[bytes, bytes, int]],
) -> list[asyncio.Future]:
    """Queue ``records`` as full batches for one topic-partition; returns delivery futures."""
    futures = []
    batch = prod.create_batch()
    for key, value, ts in records:
        if batch.append(key=key, value=value, timestamp=ts) is None:
            futures.append(await prod.send_batch(batch, topic, partition=partition))
            batch = prod.create_batch()
            batch.append(key=key, value=value, timestamp=ts)
    if batch.record_count():
        futures.append(await prod.send_batch(batch, topic, partition=partition))
    return futures


async def preload(bootstrap: list[str], records: Partitioned) -> float:
    """Write every record; returns the seconds it took (all acknowledged)."""
    started = time.perf_counter()
    prod = producer(bootstrap)
    await prod.start()
    try:
        futures: list[asyncio.Future] = []
        for (topic, partition), recs in sorted(records.items()):
            futures += await send_records(prod, topic, partition, recs)
        await asyncio.gather(*futures)
    finally:
        await prod.stop()
    return time.perf_counter() - started


def group(
    events: Iterable[tuple[str, int, bytes, bytes, int]],
) -> Partitioned:
    """(topic, partition, key, value, ts) rows -> records per topic-partition, order kept."""
    out: Partitioned = {}
    for topic, partition, key, value, ts in events:
        out.setdefault((topic, partition), []).append((key, value, ts))
    return out


class PacedLoad:
    """Events with event time = now at a steady rate, sent in 50 ms ticks of whole batches."""

    TICK_S = 0.05

    def __init__(self, rooms: Rooms, rate: float, seed: int) -> None:
        self.rooms = rooms
        self.rate = rate
        self.rng = random.Random(seed)
        self.seq = 0
        self.sent = 0

    def tick_events(self, count: int, now_ms: int) -> Partitioned:
        rng, rooms = self.rng, self.rooms
        idx = rng.choices(range(len(rooms.ids)), cum_weights=rooms.cum_weights, k=count)
        kinds = rng.choices(range(len(MIX)), cum_weights=_CUM_MIX, k=count)
        rows = []
        for r, kind in zip(idx, kinds, strict=True):
            self.seq += 1
            key = rooms.ids[r].encode()
            value = event(rng, self.seq, key, kind, now_ms)
            rows.append((_TOPIC_OF_KIND[kind], rooms.partitions[r], key, value, now_ms))
        return group(rows)

    async def run(
        self,
        prod: AIOKafkaProducer,
        stop: asyncio.Event,
        on_tick: Callable[[], None] = lambda: None,
    ) -> None:
        """Send until ``stop`` is set, keeping the long-run average at ``rate``."""
        started = time.monotonic()
        pending: list[asyncio.Future] = []
        while not stop.is_set():
            due = int((time.monotonic() - started) * self.rate) - self.sent
            if due > 0:
                now_ms = int(time.time() * 1000)
                for (topic, partition), recs in self.tick_events(due, now_ms).items():
                    pending += await send_records(prod, topic, partition, recs)
                self.sent += due
                on_tick()
            pending = [f for f in pending if not f.done()]
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.TICK_S)
        if pending:
            await asyncio.gather(*pending)

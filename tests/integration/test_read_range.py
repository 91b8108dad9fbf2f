"""Reading back envelopes the agent's consumer skipped (``transport.read_range``), on the
embedded broker: the records between two offsets, in order, whatever batches they came in and
whatever end offset the broker reports."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.worker import broker
from streams.worker.transport import read_range
from tests.support.stack import Stack


async def test_read_range_returns_the_records_between_two_offsets(stack: Stack) -> None:
    settings = stack.settings
    topic = "probe.read-range"
    await broker.ensure_topics(settings, {topic: 2})
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20)
    await producer.start()
    try:
        # one record at a time, then a batch of many: the broker's end offset lags the latter
        for n in range(5):
            await (await producer.send(topic, f"single {n}".encode(), partition=1))
        batch = [
            await producer.send(topic, f"batched {n}".encode(), partition=1) for n in range(20)
        ]
        offsets = [m.offset for m in await asyncio.gather(*batch)]
    finally:
        await producer.stop()
    assert offsets == list(range(5, 25))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 1)
        middle = [(r.offset, r.value) for r in await read_range(consumer, tp, 3, 9)]
        tail = [(r.offset, r.value) for r in await read_range(consumer, tp, 20, 24)]
        first = [(r.offset, r.value) for r in await read_range(consumer, tp, 0, 1)]
    finally:
        await consumer.stop()
    assert middle == [
        (3, b"single 3"),
        (4, b"single 4"),
        *((o, f"batched {o - 5}".encode()) for o in range(5, 9)),
    ]
    assert tail == [(o, f"batched {o - 5}".encode()) for o in range(20, 24)]
    assert first == [(0, b"single 0")]

"""What the embedded broker does that a real Kafka would not, pinned so a fix shows up.

``LivePulse.flush`` ends each changelog flush with a one-record batch because of this; when
the broker gets it right, this test fails and that workaround can go.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.worker import broker
from tests.support.stack import Stack


async def test_end_offset_is_last_batch_base_plus_one(stack: Stack) -> None:
    settings = stack.settings
    await broker.ensure_topics(settings, {"probe.end-offsets": 1})
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=50)
    await producer.start()
    try:
        sent = [await producer.send("probe.end-offsets", b"x", partition=0) for _ in range(5)]
        offsets = [m.offset for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()
    assert offsets == [0, 1, 2, 3, 4]  # one batch of five records
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tp = TopicPartition("probe.end-offsets", 0)
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    assert end == 1, "the embedded broker now reports end offsets right: drop the flush marker"

"""A changelog that ends in a flush cut short is read to its end by the next owner.

A worker killed while it writes a flush leaves a batch of several records with no end-of-flush
marker after it. The embedded broker reports such a partition's end offset as the base offset
of its last batch + 1, so a recovery that trusted it would stop at the batch's first record:
this worker would serve rooms without what the batch holds, while the next one (reading past
it, once something follows) would see it; the two would then disagree about which record a
key means, and windows would lose counts. The new owner ends the log with a marker of its own
before it reads it back.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.core.changelog import FENCE_HEADER, epoch_headers
from streams.core.contract import Ev, Kind
from streams.core.processor import PartitionProcessor, ProcessorConfig
from streams.testing import Pipeline
from streams.worker.transport import read_range


async def _append_one_batch(pipeline: Pipeline, records: list[tuple[str, bytes | None]]) -> int:
    """The records as one produce batch (as a flush's batch is), no marker after it, with the
    epoch of the last owner (the offset of its fence), as its flush would carry them."""
    topic = f"{pipeline.settings.app_id}-rooms-changelog"
    tp = TopicPartition(topic, 0)
    servers = pipeline.settings.bootstrap_servers
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        # the log ends with a one-record batch (a fence or an end-of-flush marker), so the
        # end offset the broker reports is right here
        end = (await consumer.end_offsets([tp]))[tp]
        log = await read_range(consumer, tp, 0, end)
        fences = [r.offset for r in log if (FENCE_HEADER, b"") in r.headers]
    finally:
        await consumer.stop()
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        batch = producer.create_batch()
        for key, value in records:
            appended = batch.append(
                key=key.encode(), value=value, timestamp=None, headers=epoch_headers(max(fences))
            )
            assert appended is not None
        meta = await (await producer.send_batch(batch, topic, partition=0))
        return meta.offset
    finally:
        await producer.stop()


def test_a_flush_cut_short_is_read_back_whole(
    livepulse_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = livepulse_pipeline(partitions="1")
    start = pipeline.slot()
    proc = PartitionProcessor(0, ProcessorConfig())
    enters = [Ev(0, n, start + n * 1_000, "tail-room", Kind.ENTER, f"u{n}") for n in range(5)]
    proc.process(enters, None, 0)
    records = proc.changes()
    # window, room, clock: the room record is not the batch's first
    assert [key.split("\x1f")[0] for key, _ in records][1] == "tail-room", records
    pipeline.stop_worker(signal.SIGKILL)
    base = asyncio.run(_append_one_batch(pipeline, records))
    pipeline.start_worker()
    # ready: every partition is recovered and its processor restored from the store
    room = pipeline.room("tail-room")
    assert room is not None, f"the cut flush at offset {base} was not read back\n{pipeline.tail()}"
    assert [w["enters"] for w in room["windows"]] == [5], room

"""A changelog that ends in a flush cut short is read to its end by the next owner.

A worker killed while it writes a flush leaves a batch of several records with no end-of-flush
marker after it. The embedded broker reports such a partition's end offset as the base offset
of its last batch + 1, so a recovery that trusted it would stop at the batch's first record:
this worker would serve rooms without what the batch holds, while the next one (reading past
it, once something follows) would see it; the two would then disagree about which record a
key means, and windows would lose counts. The new owner ends the log with a marker of its own
before it reads it back.

That marker is also a fence: records an owner sends after it lost the partition (a flush
that lands late) are ignored by every reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.core.changelog import CLOCK, EPOCH_HEADER, FENCE_HEADER, MARKER, epoch_headers
from streams.core.contract import Ev, Kind
from streams.core.processor import PartitionProcessor, ProcessorConfig
from streams.testing import Pipeline, wait_until
from streams.worker.transport import read_range
from tests.support.faults import replayable, write_recording
from tests.support.truth import assert_matches_truth, close_and_wait


async def _changelog(pipeline: Pipeline) -> list[Any]:
    """Every record of the (one-partition) changelog, as aiokafka's ConsumerRecords."""
    tp = TopicPartition(f"{pipeline.settings.app_id}-rooms-changelog", 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        # the log ends with a one-record batch (a fence or an end-of-flush marker), so the
        # end offset the broker reports is right here
        end = (await consumer.end_offsets([tp]))[tp]
        return await read_range(consumer, tp, 0, end)
    finally:
        await consumer.stop()


async def _append_one_batch(
    pipeline: Pipeline, records: list[tuple[str, bytes | None, list[tuple[str, bytes]]]]
) -> int:
    """The records (key, value, headers) in produce batches, as a flush writes them; the offset
    of the first."""
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.settings.bootstrap_servers, acks="all")
    topic = f"{pipeline.settings.app_id}-rooms-changelog"
    await producer.start()
    try:
        sent = []
        batch = producer.create_batch()
        for key, value, headers in records:
            raw = key.encode()
            if batch.append(key=raw, value=value, timestamp=None, headers=headers) is None:
                sent.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                assert batch.append(key=raw, value=value, timestamp=None, headers=headers)
        sent.append(await producer.send_batch(batch, topic, partition=0))
        return (await sent[0]).offset
    finally:
        await producer.stop()


def _last_fence(log: list[Any]) -> int:
    return max(r.offset for r in log if any(key == FENCE_HEADER for key, _ in r.headers))


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
    pipeline.kill_worker()
    # as the killed worker's flush carries them: the epoch of its fence
    epoch = epoch_headers(_last_fence(asyncio.run(_changelog(pipeline))))
    base = asyncio.run(_append_one_batch(pipeline, [(key, value, epoch) for key, value in records]))
    pipeline.start_worker()
    # ready: every partition is recovered and its processor restored from the store
    room = pipeline.room("tail-room")
    assert room is not None, f"the cut flush at offset {base} was not read back\n{pipeline.tail()}"
    assert [w["enters"] for w in room["windows"]] == [5], room


async def _uncommitted(pipeline: Pipeline) -> int:
    """Envelopes of the (one) internal partition after the group's committed offset."""
    tp = TopicPartition(pipeline.settings.topic_batches, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.settings.bootstrap_servers,
        group_id=pipeline.settings.app_id,
        enable_auto_commit=False,
    )
    await consumer.start()  # no subscription: it does not join the group
    try:
        committed = await consumer.committed(tp) or 0
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    return end - committed


def _flushed(pipeline: Pipeline) -> bool:
    """Every room change in the changelog (envelopes keep coming: the ingest stage's ticks)."""
    return pipeline.metrics().get(("livepulse_rooms_unflushed", ()), 1) == 0


def test_a_flush_that_lands_after_its_writer_was_fenced_counts_for_no_reader(
    livepulse_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    """Worker 1 applies half a session and is killed; worker 2 fences the changelog, reads it
    back, applies the rest and commits. Then worker 1's records land again, as a flush sent
    before it lost the partition would: stale room and window records under worker 1's epoch,
    after everything worker 2 wrote. Worker 3 reads the log back: it must ignore them (a
    reader without the fence serves those rooms as worker 1 left them)."""
    pipeline = livepulse_pipeline(partitions="1")
    every, truth, _ = replayable(pipeline, 1, seed=7, rooms=40, minutes=4, rate=3)
    half = len(every) // 2
    for n, part in enumerate((every[:half], every[half:])):
        pipeline.replay(write_recording(tmp_path / f"part-{n}.jsonl", part))
        pipeline.wait_processed()
        wait_until(lambda: _flushed(pipeline), 60, "everything flushed", pipeline.log)
        if n == 0:
            first = asyncio.run(_changelog(pipeline))
            epoch = _last_fence(first)
            # its rooms, windows and chunks: a late flush cut short before its clock record
            # (with the clock, a reader would see the partition as worker 1 left it and read
            # the envelopes after it again)
            late = [
                (r.key.decode(), r.value, list(r.headers))
                for r in first
                if (EPOCH_HEADER, str(epoch).encode()) in r.headers
                and r.key.decode() not in (CLOCK, MARKER)
            ]
            pipeline.kill_worker()
            pipeline.start_worker()
            pipeline.replayed = {}  # a new process counts from zero (and from its commit)
    assert len(late) > 40, "worker 1 wrote its rooms"
    # worker 2 has committed what it applied, so no replay would repair stale rooms (ticks
    # keep coming: a few envelopes may be newer than the commit)
    wait_until(lambda: asyncio.run(_uncommitted(pipeline)) <= 3, 60, "a commit", pipeline.log)
    asyncio.run(_append_one_batch(pipeline, late))
    pipeline.kill_worker()
    pipeline.start_worker()
    close_and_wait(pipeline, truth)
    compared = assert_matches_truth(pipeline, truth)
    assert compared == len(truth["windows"]) > 100
    fenced = pipeline.metrics()[("livepulse_changelog_records_fenced_total", ())]
    assert fenced == len(late)
    print(
        f"\n{len(late)} records of worker 1 appended after worker 2's; worker 3 ignored "
        f"{fenced:.0f}; {compared} room windows equal to the truth"
    )

"""The ingest stage: single-event records in, validated batches (envelopes) out.

A plain aiokafka consumer reads the three source topics (~270 000 records/s are possible here;
Faust alone manages ~5 000 messages/s). Every record is validated against contract v1;
bad ones go unchanged to the dead-letter topic with their reason. Good ones leave as one
envelope per partition, in log order per source topic-partition, for the Faust agent.
Source offsets are committed only after the envelopes and dead letters are acknowledged, so
a crash replays records (the stateful stage skips what it already applied) and loses none.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError

from streams import envelope
from streams.contract import Ev, InvalidRecord, Source, decode
from streams.metrics import PipelineMetrics
from streams.security import client_options
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Keeps an envelope well under Kafka's default 1 MB message limit.
MAX_EVENTS_PER_ENVELOPE = 4000


class _Assignment(ConsumerRebalanceListener):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked) -> None:  # type: ignore[no-untyped-def]
        self.ingest.partitions = set()
        self.ingest.lag.clear()

    async def on_partitions_assigned(self, assigned) -> None:  # type: ignore[no-untyped-def]
        self.ingest.partitions = {tp.partition for tp in assigned}
        self.ingest.ready.set()


class Ingest:
    def __init__(self, settings: Settings, metrics: PipelineMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.ready = asyncio.Event()
        self.partitions: set[int] = set()
        self._source = {name: Source(i) for i, name in enumerate(settings.source_topics)}
        self._last_sent: dict[int, float] = {}
        #: Records behind the end of each source topic-partition, as of the last fetch.
        self.lag: dict[tuple[str, int], int] = {}

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        return dict(self.lag)

    async def run(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=f"{s.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            rebalance_timeout_ms=int(s.rebalance_timeout_seconds * 1000),
            session_timeout_ms=int(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_seconds * 1000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=s.ingest_fetch_ms,  # aiokafka's 500 ms default is pure latency
            **client_options(s),
        )
        consumer.subscribe(list(s.source_topics), listener=_Assignment(self))
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            acks="all",
            linger_ms=2,
            max_request_size=4 * 1024 * 1024,
            **client_options(s),
        )
        await producer.start()
        try:
            await consumer.start()
            try:
                while True:
                    await self._step(consumer, producer)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    async def _step(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        s = self.settings
        fetched = await consumer.getmany(
            timeout_ms=s.ingest_fetch_ms, max_records=s.ingest_max_records
        )
        now = time.time()
        now_ms = int(now * 1000)
        max_skew_ms = s.max_skew_ms
        per_partition: dict[int, list[Ev]] = {}
        pending = []
        for tp, records in fetched.items():
            src = self._source[tp.topic]
            bucket = per_partition.setdefault(tp.partition, [])
            self.metrics.consumed.labels(tp.topic).inc(len(records))
            highwater = consumer.highwater(tp)
            if highwater is not None and records:
                self.lag[(tp.topic, tp.partition)] = max(0, highwater - records[-1].offset - 1)
            for rec in records:
                try:
                    bucket.append(decode(src, rec.offset, rec.key, rec.value, now_ms, max_skew_ms))
                except InvalidRecord as bad:
                    self.metrics.invalid.labels(tp.topic, bad.category).inc()
                    headers = [
                        *rec.headers,
                        ("source_topic", tp.topic.encode()),
                        ("source_partition", str(tp.partition).encode()),
                        ("source_offset", str(rec.offset).encode()),
                        ("reason", bad.reason.encode()),
                    ]
                    pending.append(
                        await producer.send(
                            s.topic_deadletter,
                            rec.value,
                            key=rec.key,
                            headers=headers,
                            partition=tp.partition,
                        )
                    )
        for partition in self.partitions:
            if (
                partition not in per_partition
                and now - self._last_sent.get(partition, 0) >= s.tick_seconds
            ):
                per_partition[partition] = []  # a tick
        for partition, events in per_partition.items():
            chunks = [
                events[i : i + MAX_EVENTS_PER_ENVELOPE]
                for i in range(0, len(events), MAX_EVENTS_PER_ENVELOPE)
            ] or [[]]
            for chunk in chunks:
                data = envelope.encode(envelope.Envelope(partition, now_ms, chunk))
                pending.append(await producer.send(s.topic_batches, data, partition=partition))
            self._last_sent[partition] = now
        if pending:
            await asyncio.gather(*pending)
        if fetched:
            try:
                await consumer.commit()
            except CommitFailedError:
                # A rebalance took the partitions away mid-batch: their next owner reads these
                # records again, and the stateful stage skips the offsets it already applied.
                log.warning("ingest commit failed after a rebalance; records will be replayed")

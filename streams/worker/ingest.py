"""The ingest stage: single-event records in, validated batches (envelopes) out.

A plain aiokafka consumer reads the three source topics (Faust alone manages a few thousand
messages a second; a plain consumer, a hundred times that). Every record is checked against
contract v1 (:func:`streams.core.contract.decode`); bad ones go unchanged to the dead-letter topic
with their reason. Good ones leave, in log order per source topic-partition, as envelopes
on the same partition of ``livepulse.batches``, each with the ingest stage's wall clock and
its idle verdict per source (:class:`streams.core.windows.IdleTracker`).

Source offsets are committed only after the envelopes and dead letters are acknowledged, so
a crash replays records (the stateful stage skips what it already applied) and loses none.
Total: no record and no broker failure ends the loop. A step that cannot finish (the broker
went away mid-step) is undone by seeking back to its first records, which are then read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    KafkaError,
    RecordTooLargeError,
)

from streams.core import envelope
from streams.core.contract import Ev, InvalidRecord, Source, decode
from streams.core.windows import IdleTracker
from streams.settings import Settings
from streams.worker.deadletters import DeadLetters
from streams.worker.security import client_options

log = logging.getLogger(__name__)


class _Assignment(ConsumerRebalanceListener):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked) -> None:  # type: ignore[no-untyped-def]
        self.ingest.partitions = set()
        self.ingest.lag.clear()

    async def on_partitions_assigned(self, assigned) -> None:  # type: ignore[no-untyped-def]
        self.ingest.partitions = {tp.partition for tp in assigned}
        self.ingest._next = {}
        self.ingest.idle.assigned(set(assigned), _now_ms())
        self.ingest.ready.set()


class Counters(Protocol):
    """Where the stage counts what it read: the worker's metrics, or (in a process of its
    own) what it reports to the worker."""

    def read(self, topic: str, records: int, invalid: Mapping[str, int]) -> None: ...

    def retried(self, steps: int = 1) -> None: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


class Ingest:
    def __init__(
        self,
        settings: Settings,
        metrics: Counters,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.ready = asyncio.Event()
        self.partitions: set[int] = set()
        self._source = {name: Source(i) for i, name in enumerate(settings.source_topics)}
        self._last_sent: dict[int, float] = {}
        self._warned_partition: set[tuple[str, int]] = set()
        #: Per source topic-partition, the offset after the last record forwarded.
        self._next: dict[TopicPartition, int] = {}
        self.idle = IdleTracker(
            int(settings.idle_timeout_seconds * 1000),
            fresh_ms=max(2_000, 5 * settings.ingest_fetch_ms),
        )
        #: Records behind the end of each source topic-partition, as of the last fetch.
        self.lag: dict[tuple[str, int], int] = {}
        #: False while no fetch of the assigned partitions has been answered for
        #: ``broker_timeout_ms`` (logged once when lost and once when back).
        self.broker_up = True
        self._lost_at = 0.0
        self.broker_timeout_ms = max(5_000, 20 * settings.ingest_fetch_ms)

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
        producer = new_producer(s)
        await producer.start()
        letters = DeadLetters(producer, s.topic_deadletter)
        await consumer.start()
        watchdog = asyncio.create_task(self._watch(consumer))
        try:
            while True:
                try:
                    await self._step(consumer, producer, letters)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never end the loop: the step is read again
                    name = type(exc).__name__
                    log.warning("ingest step failed (%s: %s); reading again", name, exc)
                    self.metrics.retried()
                    await self._rewind(consumer)
                    await asyncio.sleep(1.0)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # aiokafka#974
                await consumer.stop()
            await producer.stop()

    async def _watch(self, consumer: AIOKafkaConsumer) -> None:
        """Once a second, whatever the ingest loop is waiting for (a send to a lost broker
        can take the request timeout): is the broker still answering?"""
        while True:
            await asyncio.sleep(1.0)
            self._watch_broker(consumer, _now_ms())

    async def _step(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, letters: DeadLetters
    ) -> None:
        s = self.settings
        unreadable: list[tuple[TopicPartition, int, str]] = []
        try:
            fetched = await consumer.getmany(
                timeout_ms=s.ingest_fetch_ms, max_records=s.ingest_max_records
            )
        except (asyncio.CancelledError, ConsumerStoppedError):
            raise
        except Exception as exc:  # data aiokafka cannot read (corrupt, unknown codec, ...)
            log.warning(
                "source data that cannot be read (%s: %s); reading record by record",
                type(exc).__name__,
                exc,
            )
            await self._rewind(consumer)
            fetched, unreadable = await self._step_through(consumer, exc)
        now = time.time()
        now_ms = int(now * 1000)
        await self._forward(consumer, producer, letters, fetched, unreadable, now, now_ms)
        for tp, records in fetched.items():
            if records:
                self._next[tp] = records[-1].offset + 1
        for tp, offset, _ in unreadable:
            self._next[tp] = max(self._next.get(tp, 0), offset + 1)
        if fetched or unreadable:
            try:
                await consumer.commit()
            except CommitFailedError:
                # A rebalance took the partitions away mid-batch: their next owner reads these
                # records again, and the stateful stage skips the offsets it already applied.
                log.warning("ingest commit failed after a rebalance; records will be replayed")

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        """Every partition back to the first record not yet forwarded: aiokafka may have
        moved the positions of partitions whose records a failed call never returned."""
        for tp in consumer.assignment():
            offset = self._next.get(tp)
            try:
                if offset is None:
                    offset = await consumer.committed(tp)
                if offset is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, offset)
            except (KafkaError, AssertionError, ValueError) as exc:
                log.warning("could not rewind %s: %s", tp, exc)

    async def _step_through(
        self, consumer: AIOKafkaConsumer, error: Exception
    ) -> tuple[dict, list[tuple[TopicPartition, int, str]]]:
        """Read each partition a record at a time until it yields (or is empty). A record
        that fails twice at the same offset is skipped: it becomes a dead letter without
        value, naming its offset (the record cannot be read, so it cannot be copied)."""
        fetched: dict = {}
        unreadable: list[tuple[TopicPartition, int, str]] = []
        if isinstance(error, RecordTooLargeError) and len(error.args) >= 3:
            tp, offset = error.args[1], error.args[2]  # aiokafka skipped it itself
            unreadable.append((tp, offset, f"unreadable: {error.args[0]}"))
        for tp in consumer.assignment():
            failed_at: int | None = None
            for _ in range(10_000):  # a bad batch costs two reads per record
                try:
                    got = await consumer.getmany(tp, timeout_ms=200, max_records=1)
                except (asyncio.CancelledError, ConsumerStoppedError):
                    raise
                except Exception as exc:
                    position = await consumer.position(tp)
                    if failed_at != position:  # once more, from a fresh fetch
                        failed_at = position
                        consumer.seek(tp, position)
                        continue
                    reason = f"unreadable: {type(exc).__name__}: {exc}"
                    unreadable.append((tp, position, reason[:500]))
                    consumer.seek(tp, position + 1)
                    failed_at = None
                    continue
                fetched.update(got)
                break
        return fetched, unreadable

    async def _forward(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        letters: DeadLetters,
        fetched: dict,
        unreadable: list[tuple[TopicPartition, int, str]],
        now: float,
        now_ms: int,
    ) -> None:
        s = self.settings
        for tp, offset, reason in unreadable:
            self.metrics.read(tp.topic, 0, {"unreadable": 1})
            await letters.send(tp.topic, tp.partition, offset, None, b"", [], reason)
        max_skew_ms = s.max_skew_ms
        partitions = s.partitions
        per_partition: dict[int, list[Ev]] = {}
        for tp, records in fetched.items():
            src = self._source[tp.topic]
            bucket = per_partition.setdefault(tp.partition, [])
            invalid: dict[str, int] = {}
            if records:
                self.idle.read(tp, now_ms)
            try:
                for rec in records:
                    try:
                        bucket.append(
                            decode(
                                src,
                                rec.offset,
                                rec.key,
                                rec.value,
                                now_ms,
                                max_skew_ms,
                                tp.partition,
                                partitions,
                            )
                        )
                    except InvalidRecord as bad:
                        invalid[bad.category] = invalid.get(bad.category, 0) + 1
                        if bad.category == "partition":
                            self._warn_partitioner(tp.topic, tp.partition, bad.reason)
                        await letters.send(
                            tp.topic,
                            tp.partition,
                            rec.offset,
                            rec.key,
                            rec.value,
                            list(rec.headers),
                            bad.reason,
                        )
            finally:
                self.metrics.read(tp.topic, len(records), invalid)
        idle = self._idle_masks(consumer, now_ms)
        pending = []
        for partition in self.partitions:
            if (
                partition not in per_partition
                and now - self._last_sent.get(partition, 0) >= s.tick_seconds
            ):
                per_partition[partition] = []  # a tick
        for partition, events in per_partition.items():
            for data in envelope.encode_bounded(
                now_ms, idle.get(partition, 0), events, s.envelope_max_bytes
            ):
                pending.append(await producer.send(s.topic_batches, data, partition=partition))
            self._last_sent[partition] = now
        if pending:
            await asyncio.gather(*pending)
        await letters.flush()

    def _idle_masks(self, consumer: AIOKafkaConsumer, now_ms: int) -> dict[int, int]:
        """Per partition, the sources read to their end and quiet for the idle timeout."""
        masks: dict[int, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            answered = consumer.last_poll_timestamp(tp)
            position = _position(consumer, tp)
            if highwater is not None and position is not None:
                self.lag[(tp.topic, tp.partition)] = max(0, highwater - position)
                if answered is not None:
                    self.idle.answered(tp, position >= highwater, answered)
            if self.idle.idle(tp, now_ms):
                masks[tp.partition] = masks.get(tp.partition, 0) | 1 << self._source[tp.topic]
        return masks

    def _watch_broker(self, consumer: AIOKafkaConsumer, now_ms: int) -> None:
        """Is the broker answering? The newest fetch answer of any assigned partition says."""
        try:
            answers = [consumer.last_poll_timestamp(tp) for tp in consumer.assignment()]
        except (AssertionError, KafkaError):  # the assignment changed meanwhile
            return
        newest = max((a for a in answers if a is not None), default=None)
        if newest is None:
            return  # nothing assigned or nothing fetched yet: no evidence either way
        silent = now_ms - newest
        if self.broker_up and silent > self.broker_timeout_ms:
            self.broker_up = False
            self._lost_at = now_ms / 1000 - silent / 1000
            log.error(
                "broker unreachable: no fetch answered for %.1f s (%s); waiting for it, "
                "nothing is counted as idle meanwhile",
                silent / 1000,
                ", ".join(self.settings.bootstrap_servers),
            )
        elif not self.broker_up and silent <= self.broker_timeout_ms:
            self.broker_up = True
            log.warning("broker reachable again after %.1f s", now_ms / 1000 - self._lost_at)

    def _warn_partitioner(self, topic: str, partition: int, reason: str) -> None:
        if (topic, partition) in self._warned_partition:
            return
        self._warned_partition.add((topic, partition))
        log.warning(
            "%s[%d]: records on the wrong partition (%s); the producer does not use Kafka's "
            "default murmur2 partitioner: with librdkafka (confluent-kafka, kcat) set "
            "partitioner=murmur2_random; these records go to %s",
            topic,
            partition,
            reason,
            self.settings.topic_deadletter,
        )


def new_producer(settings: Settings, **options: object) -> AIOKafkaProducer:
    """A producer whose "sent" means acknowledged by every in-sync replica."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=2,
        max_request_size=4 * 1024 * 1024,
        **options,  # type: ignore[arg-type]
        **client_options(settings),
    )


def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's position without a round trip (None while it has none)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
    except AttributeError:  # not assigned (a rebalance is under way)
        return None
    return state.position if state is not None and state.has_valid_position else None

"""The dead-letter topic: bad records, unchanged, with why and where they came from.

Both stages write here. The ingest stage has the record in hand; the stateful stage only
learns that a record is bad after it was forwarded (an order in another currency than its
room's), so it names the record by topic, partition and offset and the original is read back
from its topic (:meth:`DeadLetters.by_reference`). Every record becomes one dead letter with
headers ``source_topic``, ``source_partition``, ``source_offset`` and ``reason`` (plus the
record's own headers). A record too large for the dead-letter topic keeps its key and headers
and loses its value (header ``value_dropped_bytes``): the topic is never left without a trace
of it. Sends are awaited in :meth:`DeadLetters.flush`, before the source offsets they cover
are committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

log = logging.getLogger(__name__)

#: Broker answers that say the record itself cannot be stored as it is.
_TOO_LARGE = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
)


@dataclass(frozen=True)
class Reference:
    """A forwarded record found bad later: where it is, and why."""

    topic: str
    partition: int
    offset: int
    reason: str


@dataclass
class _Letter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int
    future: object = None  # the send's future, None before it is sent, _DONE once acked

    def strip(self) -> None:
        size = 0 if self.value is None else len(self.value)
        log.warning(
            "a dead letter of %d bytes is too large for its topic: sent without value", size
        )
        self.value = None
        self.headers = [*self.headers, ("value_dropped_bytes", str(size).encode())]
        self.future = None


class DeadLetters:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._letters: list[_Letter] = []  # sent, not yet acknowledged
        self._references: list[Reference] = []  # not yet read back

    async def send(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        reason: str,
    ) -> None:
        """Queue one dead letter (on the source's partition number)."""
        letter = _Letter(
            key,
            value,
            [
                *headers,
                ("source_topic", topic.encode()),
                ("source_partition", str(partition).encode()),
                ("source_offset", str(offset).encode()),
                ("reason", reason.encode()),
            ],
            partition,
        )
        self._letters.append(letter)
        await self._start(letter)

    async def _start(self, letter: _Letter) -> None:
        try:
            letter.future = await self.producer.send(
                self.topic,
                letter.value,
                key=letter.key,
                headers=letter.headers,
                partition=letter.partition,
            )
        except MessageSizeTooLargeError:
            letter.strip()
            await self._start(letter)

    def by_reference(self, references: Iterable[Reference]) -> None:
        """Records to read back from their topic and dead-letter (in :meth:`flush`)."""
        self._references.extend(references)

    async def flush(self, consumer: AIOKafkaConsumer | None = None) -> None:
        """Send the referenced records, then wait until the broker has every dead letter.

        Raises KafkaError when one could not be written; it stays queued and the next flush
        sends it again (at least once: a dead letter may be written twice).
        """
        if self._references:
            await self._read_back(consumer)
        error: KafkaError | None = None
        for _ in range(2):  # a second round for letters that lost their value
            for letter in self._letters:
                if letter.future is None:
                    await self._start(letter)
            for letter in self._letters:
                try:
                    await letter.future  # type: ignore[misc]
                except _TOO_LARGE:
                    letter.strip()
                except KafkaError as exc:
                    error, letter.future = exc, None
                else:
                    letter.future = _DONE
            self._letters = [letter for letter in self._letters if letter.future is not _DONE]
            if error is not None:
                raise error
            if not self._letters:
                return

    async def _read_back(self, consumer: AIOKafkaConsumer | None) -> None:
        """Read the referenced records (each partition from its lowest offset on)."""
        if consumer is None:
            raise RuntimeError("dead letters by reference need a consumer to read them back")
        wanted: dict[TopicPartition, dict[int, str]] = {}
        for ref in self._references:
            wanted.setdefault(TopicPartition(ref.topic, ref.partition), {})[ref.offset] = ref.reason
        consumer.assign(list(wanted))
        for tp, offsets in wanted.items():
            consumer.seek(tp, min(offsets))
        left = {tp: set(offsets) for tp, offsets in wanted.items()}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while any(left.values()):
            if loop.time() > deadline:
                raise KafkaError("could not read back records to dead-letter")
            batch = await consumer.getmany(
                *[tp for tp, todo in left.items() if todo], timeout_ms=500
            )
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset in left[tp]:
                        left[tp].discard(rec.offset)
                        await self.send(
                            tp.topic,
                            tp.partition,
                            rec.offset,
                            rec.key,
                            rec.value,
                            list(rec.headers),
                            wanted[tp][rec.offset],
                        )
                if records and records[-1].offset >= max(wanted[tp]):
                    left[tp].clear()  # offsets skipped by the log (compaction) are gone
        self._references = []


#: The future of an acknowledged letter.
_DONE = object()

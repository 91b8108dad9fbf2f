"""Faust's Kafka transport, mended in two places for the agent's consumer.

**Fetch wait.** Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` hard-coded
(``faust/transport/drivers/aiokafka.py``, ``_create_worker_consumer``), and no setting
reaches it. A broker may hold a fetch that long when a partition has nothing new; the
embedded broker holds it even when records arrive meanwhile, which put up to 1.5 s between
an envelope and the agent. The ingest stage already bounds its own fetches
(``LIVEPULSE_INGEST_FETCH_MS``); this bounds the agent's with ``LIVEPULSE_AGENT_FETCH_MS``.

**Lost envelopes at the end of recovery.** Faust hands aiokafka its *live* set of active
partitions (``Consumer._wait_next_records``) and pauses and resumes partitions by mutating
that same set. aiokafka's ``fetched_records(partitions)`` reads an empty set as "every
partition". When recovery ends, Faust pauses the changelog partitions before it resumes the
stream partitions, so for a moment the set is empty. A fetch that wakes up in that moment
drains the records aiokafka has prefetched for the paused envelope partitions. Faust then
drops them because they are not active, and the consumer position has already moved past
them. With a committed offset, the seek that follows puts the position back. Without one (a
new group, or a crash before the first commit), nothing does, and those envelopes are never
applied. The restart test caught this about once in ten runs on a loaded machine. Giving
aiokafka a snapshot of the set, and filtering with the same snapshot, closes the gap.

**Envelopes skipped all the same.** Faust drops fetched records in other races too (a fetch
cut short when a rebalance starts, or a partition paused meanwhile), and it counts a gap in
the offsets it hands over as done. The agent therefore checks each envelope's offset against
the last one its partition's state applied, and :func:`read_range` reads what is missing
straight from the topic (``LivePulse._apply_missing``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiokafka
import faust
from aiokafka.errors import KafkaTimeoutError
from faust.transport.drivers import aiokafka as driver

#: How long :func:`read_range` waits for the records it wants.
READ_RANGE_TIMEOUT_S = 30.0


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher, which comes next.
        consumer._fetch_max_wait_ms = self.app.livepulse_fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, set[Any] | None]:
        """Faust's own, except that the fetch and the filter share one snapshot of the set."""
        if self.app.client_only:
            return await super()._wait_next_records(timeout)
        if not self.flow_active:
            await self.wait(self.can_resume_flow)
        try:
            self.not_waiting_next_records.set()
            active = set(self._get_active_partitions())
            if not active:
                await self.sleep(1)  # as Faust does: nothing to fetch, yield to the loop
                return {}, active
            return await self._getmany(active_partitions=active, timeout=timeout), active
        finally:
            self.not_waiting_next_records.set()


class _Transport(driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    """A Faust app whose agent consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.livepulse_fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)


async def read_range(
    consumer: aiokafka.AIOKafkaConsumer,
    tp: aiokafka.TopicPartition,
    start: int,
    end: int,
    timeout: float = READ_RANGE_TIMEOUT_S,
) -> list[Any]:
    """The records (aiokafka's ``ConsumerRecord``) at offsets ``[start, end)`` of ``tp``, in
    order, read with
    a group-less ``consumer`` (``auto_offset_reset="earliest"``). Offsets the log no longer
    holds are left out. Raises :class:`KafkaTimeoutError` if the broker does not deliver
    them within ``timeout`` seconds. The caller knows a record at ``end`` exists, so reading
    stops there, whatever end offset the broker reports."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    found: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if loop.time() > deadline:
            raise KafkaTimeoutError(f"{tp.topic}[{tp.partition}] {start}..{end - 1} not read")
        batch = await consumer.getmany(tp, timeout_ms=500)
        for record in batch.get(tp, ()):
            if record.offset >= end:
                return found
            if record.offset >= start:
                found.append(record)
        if found and found[-1].offset == end - 1:
            return found

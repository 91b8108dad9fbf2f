"""Wiring: the Faust app, its table, the stateful agent, the web pages and the ingest task.

Nothing here decides a number: the rules live in :mod:`streams.core.processor` and below. Nothing
happens at import time either; :func:`create_app` builds everything from a Settings object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import faust
import mode
import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from faust.serializers import codecs
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams.core import envelope
from streams.core.changelog import MARKER, Fence, coalesce, epoch_headers, fence_headers
from streams.core.processor import Outcome, PartitionProcessor, ProcessorConfig
from streams.core.rooms import RoomConfig, RoomState, Tally
from streams.settings import Settings
from streams.worker import rooms_api, screen, store
from streams.worker.broker import Replication
from streams.worker.deadletters import DeadLetters, Reference
from streams.worker.ingest import Ingest, new_producer
from streams.worker.ingest_process import IngestProcess
from streams.worker.logs import thin_repeats
from streams.worker.metrics import PipelineCollector, PipelineMetrics, RoomExposition
from streams.worker.security import client_options, faust_credentials
from streams.worker.transport import App, read_range

log = logging.getLogger(__name__)

#: How long a new assignment waits for the broker to take its fences (see _fence).
_FENCE_TIMEOUT_S = 30.0
#: Envelopes read back (and held in memory) at a time when the agent's consumer skipped some.
_READ_BACK_AT_ONCE = 200


class _Utf8(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> str:
        return s.decode(errors="surrogateescape")


codecs.register("livepulse-utf8", _Utf8())


class LivePulse:
    """The running pipeline: the Faust app plus what the agent keeps between envelopes."""

    def __init__(self, settings: Settings, replication: Replication | None = None) -> None:
        self.settings = s = settings
        replication = replication or Replication(1, 1)
        self.registry = CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.metrics.start(s.source_topics)
        self.config = ProcessorConfig(
            room=RoomConfig(
                size_ms=s.window_ms,
                retention=s.retention_windows,
                products_per_window=s.products_per_window,
                max_ids_per_window=s.dedup_max_ids_per_window,
                rolling=s.rolling_windows,
            ),
            grace_ms=s.grace_ms,
            detector=s.detector,
        )
        #: The stateful stage's producer (changelog, alerts, its dead letters); the ingest
        #: stage has its own, so neither waits behind the other's requests. Both acks=all.
        self.producer: AIOKafkaProducer | None = None
        self.dead_letters: DeadLetters | None = None
        self.ingest: Ingest | IngestProcess = (
            IngestProcess(settings, self.metrics)
            if s.ingest_process
            else Ingest(settings, self.metrics)
        )
        self.processors: dict[int, PartitionProcessor] = {}
        # what the next flush covers (see flush()): envelopes applied and not yet acked, the
        # changelog records and alert sends not yet acknowledged
        self._unacked: list[faust.EventT] = []
        self._pending: dict[int, list[tuple[str, bytes | None]]] = {}
        self._alerts: list[asyncio.Future] = []
        self._flush_lock: asyncio.Lock | None = None
        #: partitions of the internal topic assigned here, recovered, and not revoked since:
        #: only their envelopes are applied; ``_revocations`` counts the revocations
        self._owned: set[int] = set()
        self._revocations = 0
        #: per owned partition, the fence this worker wrote to its changelog when it took the
        #: partition over: its records name it (see streams.core.changelog.admit)
        self._fences: dict[int, Fence] = {}
        self._unfenced: set[int] = set()  # assigned, recovered, not fenced: not served
        self._acking = 0  # envelopes the running flush covers
        self._flushed_at = time.monotonic()
        self._lookup: AIOKafkaConsumer | None = None
        self.peers: screen.Peers  # set by screen.web_options: the other workers' URLs
        #: the room_id="__other__" counts of processors this worker no longer has
        self._retired_others = Tally()
        self.app = app = App(
            s.app_id,
            fetch_max_wait_ms=s.agent_fetch_ms,
            broker=s.broker,
            datadir=str(s.state_dir),
            web_host=s.advertised_host,
            web_bind=s.web_host,
            web_port=s.web_port,
            topic_partitions=s.partitions,
            table_standby_replicas=s.standby_replicas,
            broker_rebalance_timeout=s.rebalance_timeout_seconds,
            broker_commit_interval=s.commit_interval_seconds,
            broker_session_timeout=s.session_timeout_seconds,
            broker_heartbeat_interval=s.heartbeat_interval_seconds,
            consumer_auto_offset_reset="earliest",
            broker_credentials=faust_credentials(s),
            # Envelopes are acked by flush(), not one by one: on shutdown the unflushed ones
            # stay uncommitted and are replayed (harmlessly) by the next owner.
            stream_wait_empty=False,
            # the changelog and Faust's own topics, replicated as the worker's other topics
            topic_replication_factor=replication.factor,
            # Faust's /table/{name}/... and /router/ pages would serve raw table content
            web_tables_enabled=False,
            # Faust refuses to start when a store's offset is past the changelog's end offset
            # (a deleted topic with a stale state directory). Our store records only offsets
            # the broker acknowledged, and the embedded broker reports an end offset at the
            # start of the last batch when that batch holds many records (a killed flush
            # leaves one, with no end-of-flush marker after it): the check would crash-loop
            # the worker there. A recreated changelog needs its state directory removed.
            recovery_consistency_check=False,
            web_router_enabled=False,
            autodiscover=False,
            key_serializer="raw",
            value_serializer="raw",
            **screen.web_options(self, s),  # TLS, credentials, forwards to the rooms' owners
        )
        self.table = app.Table("rooms", partitions=s.partitions, store=f"livepulse://{s.store}")
        # Faust derives a table's codecs from key_type/value_type (Records) and has already
        # built the changelog topic with JSON; ours are plain codecs, so build it again.
        self.table.key_serializer, self.table.value_serializer = "livepulse-utf8", "raw"
        self.table.changelog_topic = self.table._new_changelog_topic()
        self.store.before_recovery = self._assigned
        self.store.after_recovery = self._recovered
        self.batches = app.topic(s.topic_batches, partitions=s.partitions)
        self.registry.register(
            PipelineCollector(
                lambda: sum(len(p.rooms) for p in self._served().values()),
                self.standby_rooms,
                self.watermarks,
                self.ingest.consumer_lag,
                lambda: self.ingest.broker_up,
                lambda: self.store.restored,
                self._recovery,
                lambda: len(self._unacked) + self._acking,
                self._unflushed,
                lambda: self.store.fenced,
            )
        )
        self.exposition = RoomExposition(s.window_ms, s.metrics_max_rooms, s.metrics_products)
        self._wire()
        screen.install(self)  # the live screen: / and /screen/{room_id}

    # -- the worker's own producer -----------------------------------------------------------
    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            self.producer = new_producer(self.settings, max_batch_size=256 * 1024)
            await self.producer.start()
        return self.producer

    async def _dead_letters(self) -> DeadLetters:
        if self.dead_letters is None:
            self.dead_letters = DeadLetters(await self._producer(), self.settings.topic_deadletter)
        return self.dead_letters

    def _unflushed(self) -> int:
        """Rooms changed since the last flush, and room records a running or failed flush
        has taken but the broker has not acknowledged."""
        pending = sum(len(records) for records in self._pending.values())
        return sum(proc.dirty for proc in self.processors.values()) + pending

    def _recovery(self) -> tuple[bool, int]:
        """(recovering, changelog records still to read), from Faust's table recovery."""
        recovery = self.app.tables.recovery
        return bool(recovery.in_recovery), recovery.active_remaining_total()

    @property
    def store(self) -> store.PartitionStore:
        return self.table.data  # type: ignore[return-value]

    # -- the stateful agent ----------------------------------------------------------------
    def _wire(self) -> None:
        app = self.app
        every_s = self.settings.changelog_flush_seconds

        @app.agent(self.batches, name="funnel")
        async def funnel(stream: faust.StreamT) -> None:
            every = self.settings.changelog_flush_seconds
            async for event in stream.noack().events():
                partition, offset = event.message.partition, event.message.offset
                if partition not in self._owned:
                    # fetched before a rebalance took the partition away (or before this
                    # worker recovered it) and handed over after: not applied, not acked; the
                    # owner, once recovered, reads on from the committed offset
                    reason = "unfenced" if partition in self._unfenced else "revoked"
                    self.metrics.envelopes_skipped.labels(reason).inc()
                    continue
                revocations = self._revocations
                missing = self.processor(partition).missing(offset)
                if missing and not await self._apply_missing(partition, offset - missing, offset):
                    continue  # the partition was revoked meanwhile
                await self._apply(partition, offset, event.value)
                if self._revocations == revocations:  # else the revocation's flush decided
                    self._unacked.append(event)
                if time.monotonic() - self._flushed_at >= every:
                    await self.flush()

        @app.timer(interval=self.settings.changelog_flush_seconds)
        async def flush_when_quiet() -> None:
            """The agent flushes when an envelope comes; when none comes, this does, so the
            last envelopes before a quiet spell become durable (and committed) too."""
            behind = self._unacked or any(self._pending.values())
            if behind and time.monotonic() - self._flushed_at >= every_s:
                await self.flush()

        @app.on_partitions_revoked.connect
        async def forget(sender: Any, revoked: Any, **kwargs: Any) -> None:
            topic = self.settings.topic_batches
            gone = {tp.partition for tp in revoked if tp.topic == topic}
            self._owned -= gone  # nothing more is applied to them here
            self._revocations += 1
            if gone and self._membership_lost():
                # Removed from the group (a pause longer than the session timeout): the
                # partitions have new owners already, whose changelogs this worker must not
                # write; its changes were not acked, and the new owners replay them. A flush
                # sent before the pause may still land there: the new owners' fences make
                # every reader ignore it, and this worker's own copy is dropped once it ends.
                log.warning(
                    "this worker was removed from the group (no heartbeat for the session "
                    "timeout, %.0f s): partitions %s already have new owners; their changes "
                    "here are dropped, not flushed, and replayed there",
                    self.settings.session_timeout_seconds,
                    sorted(gone),
                )
                async with self._lock():
                    self.store.forget(gone)
            else:
                await self.flush()
            for partition in gone:
                self._fences.pop(partition, None)
                # rebuilt from the store when the partition comes back; what a failed flush
                # left pending is the next owner's to replay (the envelopes were not acked)
                proc = self.processors.pop(partition, None)
                if proc is not None:  # room_id="__other__" keeps what its rooms counted
                    self._retired_others.merge(proc.others)
                self._pending.pop(partition, None)
            self._unacked = [e for e in self._unacked if e.message.partition not in gone]

        @app.page("/metrics")
        async def metrics(web: faust.web.View, request: faust.web.Request) -> Any:
            others = Tally()
            others.merge(self._retired_others)
            for proc in self._served().values():
                others.merge(proc.others)
            rooms = await self.exposition.render_async(self.active_rooms(), others)
            for proc in self.processors.values():
                proc.over_cap = self.exposition.over_cap
            return web.bytes(
                generate_latest(self.registry) + rooms.encode(),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

        @app.page("/rooms")
        async def rooms_index(web: faust.web.View, request: faust.web.Request) -> Any:
            """A page of rooms by room id: ``?limit=`` (default 500, at most 5 000) and
            ``?after=<room id>``; ``next`` is the ``after`` of the following page."""
            try:
                limit, after = rooms_api.parse_page(request.query)
            except ValueError as exc:
                return _json(web, {"error": str(exc)}, 400)
            return _json(web, await self.rooms_page(limit, after))

        @app.page("/rooms/{room_id}")
        async def room_detail(web: faust.web.View, request: faust.web.Request, room_id: str) -> Any:
            state = self.room(room_id)
            size = self.settings.window_ms
            if state is None:
                return _json(web, {"error": f"no room {room_id!r}"}, 404)
            return _json(
                web,
                {
                    "room_id": room_id,
                    "currency": state.currency_code,
                    "late_events": state.late_events,
                    "alerts": [] if state.detector is None else state.detector.describe(size),
                    "windows": state.describe_all(size),
                    "rolling": state.rolling(self.config.room),
                    "session": state.session(),
                },
            )

        @app.page("/health")
        async def health(web: faust.web.View, request: faust.web.Request) -> Any:
            """Alive: the process answers (the orchestrator restarts it when not)."""
            return _json(web, {"alive": True, "broker_up": self.ingest.broker_up})

        @app.page("/ready")
        async def ready(web: faust.web.View, request: faust.web.Request) -> Any:
            """Ready: the broker answers, the ingest stage is assigned, and every partition
            this worker owns is recovered and served (its processor restored)."""
            active = self.active_partitions()
            ok = (
                self.ingest.broker_up
                and self.ingest.ready.is_set()
                and bool(active)
                and active <= set(self.processors)
            )
            body = {"ready": ok, "partitions": sorted(active), "broker_up": self.ingest.broker_up}
            return _json(web, body, 200 if ok else 503)

    def worker(self, loop: Any = None) -> faust.Worker:
        """A Faust worker that runs the app and the ingest stage together."""
        worker = _Worker(self.app, IngestService(self), loop=loop, loglevel=self.settings.loglevel)
        # Faust's terminal spinner sets the root logger to DEBUG at log levels from warning
        # up, so that every debug call of every library builds a log record (a third of the
        # worker's time in the benchmark), and writes terminal codes into log files.
        worker.spinner = None
        return worker

    # -- applying envelopes ------------------------------------------------------------------
    def processor(self, partition: int) -> PartitionProcessor:
        """The partition's processor, restored from the store on first use (by the agent:
        Faust hands it envelopes only once the partition's recovery is complete)."""
        proc = self.processors.get(partition)
        if proc is None:
            records = dict(self.store.partition(partition).items())
            proc = PartitionProcessor.restore(partition, self.config, records)
            self.processors[partition] = proc
        return proc

    def apply(self, partition: int, offset: int, data: bytes | None) -> Outcome | None:
        """Apply the envelope at ``offset`` in memory (visible at once); the changelog
        follows in ``flush``.

        Total: an envelope that is not one (someone else wrote to the topic) is skipped with
        one log line, so is one whose processing fails; neither stops the agent.
        """
        proc = self.processor(partition)
        try:
            batch = envelope.decode(data)  # type: ignore[arg-type]
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            proc.passed(offset)
            self.metrics.envelopes_skipped.labels("malformed").inc()
            log.error("skipped a record of %s that is not an envelope: %s", self.batches, exc)
            return None
        try:
            out = proc.process(batch.events, batch.read_ms, batch.idle, offset)
        except Exception:
            self.metrics.envelopes_skipped.labels("failed").inc()
            log.exception("an envelope of partition %d could not be applied; skipped", partition)
            return None
        self.metrics.record(out, self.settings.source_topics)
        return out

    async def _apply(self, partition: int, offset: int, data: bytes | None) -> None:
        out = self.apply(partition, offset, data)
        if out is not None and (out.alerts or out.rejected):
            await self._send_side_effects(partition, out)

    async def _apply_missing(self, partition: int, start: int, end: int) -> bool:
        """Read the envelopes at offsets ``[start, end)`` of a partition straight from the
        topic and apply them: the agent's consumer skipped them (Faust drops records it
        fetched in some rebalance and recovery races), and a later envelope must not be
        applied before them. Read a bounded stretch at a time, retried while the partition
        stays here; False if it was revoked meanwhile. Offsets no longer in the log
        (retention) are counted and logged."""
        tp = TopicPartition(self.settings.topic_batches, partition)
        log.warning(
            "envelopes %d..%d of partition %d did not reach the agent; reading them back",
            start,
            end - 1,
            partition,
        )
        while start < end:
            stop = min(end, start + _READ_BACK_AT_ONCE)
            try:
                async with self._lock():
                    found = await read_range(await self._lookup_consumer(), tp, start, stop)
            except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                log.warning(
                    "could not read back envelopes %d..%d of partition %d (%s); retrying",
                    start,
                    stop - 1,
                    partition,
                    exc or type(exc).__name__,
                )
                await asyncio.sleep(1.0)
                found = None
            if partition not in self._owned:
                return False
            if found is None:
                continue
            gone = stop - start - len(found)
            if gone:
                self.metrics.envelopes_skipped.labels("gone").inc(gone)
                log.error(
                    "%d envelopes of partition %d between %d and %d are no longer in %s "
                    "(retention): their events are lost",
                    gone,
                    partition,
                    start,
                    stop - 1,
                    tp.topic,
                )
            self.metrics.envelopes_read_back.inc(len(found))
            for record in found:
                await self._apply(partition, record.offset, record.value)
            start = stop
        return True

    async def _send_side_effects(self, partition: int, out: Outcome) -> None:
        producer = await self._producer()
        for alert in out.alerts:
            # At least once: a crash before the next flush re-judges those windows.
            self._alerts.append(
                await producer.send(
                    self.settings.topic_alerts,
                    alert.encode(),
                    key=alert.key(),
                    partition=partition,
                )
            )
        if out.rejected:
            topics = self.settings.source_topics
            letters = await self._dead_letters()
            letters.by_reference(
                Reference(topics[ev.src], partition, ev.offset, reason)
                for ev, reason in out.rejected
            )

    # -- the durability rule -----------------------------------------------------------------
    async def flush(self) -> None:
        """Group commit: make what the applied envelopes changed durable, then ack them.

        The one place of LivePulse's durability rule. Under a lock (one flush at a time, the
        rebalance handler's included), in this order:

        1. Take what this flush covers: the envelopes applied so far and every processor's
           changelog records since the last flush (kept from a failed flush, too).
        2. Send each partition's records to its changelog partition, in the order of
           :mod:`streams.core.changelog` (windows and chunks, rooms, deletions, the clock last),
           and wait for every acknowledgement (acks=all).
        3. Send each partition's end-of-flush marker (the embedded broker's end offsets need a
           one-record batch last) and wait for it.
        4. Wait for the alerts and the dead letters these envelopes produced.
        5. Apply the records to the local store (it holds what the changelog holds), then ack
           the envelopes: Faust commits acked offsets only, on its own interval.

        If any step fails, nothing is acked: the records stay pending for the next flush, and
        a crash replays the envelopes, which the rooms' applied offsets make harmless.
        """
        async with self._lock():
            self.metrics.flushing.set(1)
            try:
                await self._flush()
            finally:
                self.metrics.flushing.set(0)

    def _lock(self) -> asyncio.Lock:
        """One flush at a time (the lookup consumer is used under it too)."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        return self._flush_lock

    async def _flush(self) -> None:
        """Steps 1 to 5 of :meth:`flush`, under its lock."""
        started = time.monotonic()
        # Step 1
        unacked, self._unacked = self._unacked, []
        self._acking = len(unacked)
        for partition, proc in self.processors.items():
            records = proc.changes()
            if records:
                held = self._pending.get(partition)
                # a failed flush's records, sent again with these: one record per key
                self._pending[partition] = coalesce(held + records) if held else records
        # records are written only behind this worker's fence (an owned partition has one)
        pending = {p: r for p, r in self._pending.items() if r and p in self._fences}
        alerts, self._alerts = self._alerts, []
        try:
            producer = await self._producer()
            topic = self.table.changelog_topic_name
            # Step 2
            epochs = {p: epoch_headers(self._fences[p].offset) for p in pending}
            await asyncio.gather(
                *[
                    future
                    for p, records in pending.items()
                    for future in await _send_in_batches(producer, topic, p, records, epochs[p])
                ]
            )
            # Step 3
            markers = {
                p: await producer.send(
                    topic, None, key=MARKER.encode(), partition=p, headers=epochs[p]
                )
                for p in pending
            }
            offsets = {p: (await fut).offset for p, fut in markers.items()}
            # Step 4
            await asyncio.gather(*alerts)
            if self.dead_letters is not None:
                await self.dead_letters.flush(await self._lookup_consumer())
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            self._unacked = unacked + self._unacked
            self._acking = 0
            self._alerts = alerts + self._alerts
            self.metrics.flush_failures.inc()
            log.warning("changelog flush failed (%s); will retry, nothing acked", exc)
            return
        # Step 5
        for p, records in pending.items():
            self.store.write(p, records, offsets[p], self._fences[p])
            self._pending[p] = self._pending[p][len(records) :]
            self.metrics.changelog_written.inc(len(records))
        for event in unacked:
            event.ack()
        self._acking = 0
        self._flushed_at = time.monotonic()
        if pending or unacked:
            self.metrics.flush_seconds.observe(self._flushed_at - started)

    def _membership_lost(self) -> bool:
        """Whether the group coordinator no longer knows this worker's consumer: aiokafka
        resets the generation before it calls the revocation handler when the coordinator
        answered "unknown member" or "illegal generation" (Java's ``onPartitionsLost``); in a
        rebalance the generation is still the one the partitions were assigned in."""
        try:
            consumer = self.app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
            return bool(consumer._coordinator.generation < 0)
        except (AttributeError, TypeError):
            return False

    async def _assigned(self, assigned: set[TP]) -> None:
        """A new assignment, before Faust's recovery reads the changelog: nothing is applied
        until the recovery ends (:meth:`_recovered`), and the changelogs of the partitions
        this worker is to own are fenced."""
        self._owned = set()
        topic = self.settings.topic_batches
        await self._fence(sorted({tp.partition for tp in assigned if tp.topic == topic}))

    async def _recovered(self, active: set[TP]) -> None:
        """Faust's recovery ended: the store holds what the owned partitions' changelogs hold.
        (Faust reports the end of a recovery that a newer assignment overtook too: only
        partitions still assigned count.) A partition whose changelog could not be fenced is
        not served: without its fence, its records would count for no reader."""
        assigned = {tp.partition for tp in active} & self.active_partitions()
        self._owned = assigned & set(self._fences)
        self._unfenced = assigned - self._owned
        if self._unfenced:
            log.error(
                "partitions %s are not served until the next rebalance: their changelogs "
                "could not be fenced (the broker did not take the fence in %.0f s); their "
                "envelopes wait, unacked",
                sorted(self._unfenced),
                _FENCE_TIMEOUT_S,
            )

    async def _fence(self, partitions: list[int]) -> None:
        """Write a fence to each changelog partition this worker is to own, before recovery
        asks for the end offsets: every record written there from now on names it, and
        readers apply only records that name the latest takeover's fence
        (:func:`streams.core.changelog.admit`). The takeover time is this worker's clock, and
        never earlier than the last takeover its store has read.

        The fence also ends the log with a one-record batch. A predecessor killed inside a
        flush leaves a batch of several records last, and the embedded broker reports its end
        offset as that batch's first offset + 1: a recovery that stopped there would serve
        rooms without the rest of the batch, while every later reader (once anything follows)
        sees it, and the two would disagree on what a key holds. With the fence last, every
        reader reads the same whole log, and every prefix of it is consistent.

        Fences are written only here, at the takeover: one sent later could land after a
        newer owner's. A partition whose fence the broker did not take is not served (one
        log line) until the next rebalance.
        """
        for p in partitions:
            self._fences.pop(p, None)
        if not partitions:
            return
        changelog = self.table.changelog_topic_name
        now_ms = int(time.time() * 1000)
        taken = {
            p: max(now_ms, part.fence.taken_ms + 1)
            for p in partitions
            if (part := self.store.parts.get(p)) is not None
        }
        try:
            producer = await self._producer()
            sent = {
                p: await producer.send(
                    changelog,
                    None,
                    key=MARKER.encode(),
                    partition=p,
                    headers=fence_headers(taken.get(p, now_ms)),
                )
                for p in partitions
            }
            done = await asyncio.wait_for(
                asyncio.gather(*sent.values(), return_exceptions=True), _FENCE_TIMEOUT_S
            )
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            log.warning("could not fence changelog partitions %s (%s)", partitions, exc)
            return
        for p, metadata in zip(partitions, done, strict=True):
            if isinstance(metadata, BaseException):
                log.warning("could not fence changelog partition %d (%s)", p, metadata)
            else:
                self._fences[p] = Fence(metadata.offset, taken.get(p, now_ms))

    async def _lookup_consumer(self) -> AIOKafkaConsumer:
        """A group-less consumer for reading back records (to dead-letter, or envelopes the
        agent's consumer skipped); used under :meth:`_lock`."""
        if self._lookup is None:
            self._lookup = AIOKafkaConsumer(
                bootstrap_servers=self.settings.bootstrap_servers,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a wanted offset gone: the next one there is
                **client_options(self.settings),
            )
            await self._lookup.start()
        return self._lookup

    async def close(self) -> None:
        for client in (self._lookup, self.producer):
            if client is not None:
                await client.stop()

    # -- reads for the web pages -----------------------------------------------------------
    def active_partitions(self) -> set[int]:
        """Partitions this worker owns (standby copies of other partitions are not shown)."""
        topic = self.settings.topic_batches
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def _served(self) -> dict[int, PartitionProcessor]:
        """Processors of the partitions this worker owns and has restored."""
        active = self.active_partitions()
        return {p: proc for p, proc in sorted(self.processors.items()) if p in active}

    async def rooms_page(self, limit: int, after: str | None) -> dict[str, Any]:
        """A ``/rooms`` page of the rooms this worker serves (:mod:`.rooms_api`)."""
        served = self._served().values()
        return await rooms_api.rooms_page(served, self.config.room, limit, after)

    def active_rooms(self) -> Iterator[RoomState]:
        for proc in self._served().values():
            yield from list(proc.rooms.values())

    def room(self, room_id: str) -> RoomState | None:
        for proc in self._served().values():
            state = proc.rooms.get(room_id)
            if state is not None:
                return state
        return None

    def standby_rooms(self) -> int:
        """Standby copies of other workers' partitions (kept for fast failover, never served)."""
        return self.store.standby_rooms(self.active_partitions())

    def watermarks(self) -> dict[int, int | None]:
        return {p: proc.watermark for p, proc in self._served().items()}


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        thin_repeats(logger)


class IngestService(mode.Service):
    """Runs the ingest stage beside the Faust app, so both join their groups at once."""

    def __init__(self, pulse: LivePulse, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pulse = pulse

    @mode.Service.task
    async def _consume(self) -> None:
        await self.pulse.ingest.run()

    async def on_stop(self) -> None:
        await self.pulse.close()


async def _send_in_batches(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: list,
    headers: list[tuple[str, bytes]],
) -> list[asyncio.Future]:
    """Records to one partition as few produce batches, in order (one in flight at a time per
    partition, so the log keeps their order), each with ``headers``."""
    futures = []
    batch = producer.create_batch()
    for key, value in records:
        raw = key.encode()
        if batch.append(key=raw, value=value, timestamp=None, headers=headers) is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=raw, value=value, timestamp=None, headers=headers) is None:
                futures.append(  # larger than a batch
                    await producer.send(topic, value, key=raw, partition=partition, headers=headers)
                )
    if batch.record_count():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


def _json(web: faust.web.View, payload: Any, status: int = 200) -> Any:
    return web.bytes(orjson.dumps(payload), content_type="application/json", status=status)


def create_app(
    settings: Settings | None = None, replication: Replication | None = None
) -> LivePulse:
    return LivePulse(settings or Settings(), replication)

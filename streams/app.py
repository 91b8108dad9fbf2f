"""Wiring: the Faust app, its tables, the stateful agent, the web pages and the ingest task.

Nothing here decides a number: the rules live in :mod:`streams.processor` and below. Nothing
happens at import time either; :func:`create_app` builds everything from a Settings object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import faust
import mode
import orjson
from faust.serializers import codecs
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams import envelope
from streams.ingest import Ingest
from streams.metrics import PipelineCollector, PipelineMetrics, RoomExposition
from streams.processor import Outcome, PartitionProcessor
from streams.rooms import RoomState
from streams.security import faust_credentials
from streams.settings import Settings
from streams.transport import App
from streams.windows import ClockState

log = logging.getLogger(__name__)

#: Key of the end-of-flush tombstone in the changelogs (see LivePulse.flush).
_MARKER = "\x00flush"


class _Utf8(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> str:
        return s.decode()


class _RoomCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.to_bytes()

    def _loads(self, s: bytes) -> RoomState:
        return RoomState.from_bytes(s)


class _ClockCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps([obj.max_ts, obj.watermark])

    def _loads(self, s: bytes) -> ClockState:
        max_ts, watermark = orjson.loads(s)
        return ClockState(max_ts, watermark)


codecs.register("livepulse-utf8", _Utf8())
codecs.register("livepulse-room", _RoomCodec())
codecs.register("livepulse-clock", _ClockCodec())


#: Changelog records sent between producer flushes in one group commit.
FLUSH_CHUNK = 2_000


class LivePulse:
    """The running pipeline: the Faust app plus what the agent keeps between envelopes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.registry = CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.ingest = Ingest(settings, self.metrics)
        self.processors: dict[int, PartitionProcessor] = {}
        # Rooms changed since the last flush, per partition (None: deleted), and the envelopes
        # whose changes they hold; see flush().
        self._dirty: dict[int, dict[str, RoomState | None]] = {}
        self._unacked: list[faust.EventT] = []
        self._flushed_at = time.monotonic()
        self.app = app = App(
            s.app_id,
            fetch_max_wait_ms=s.agent_fetch_ms,
            broker=s.broker,
            store="memory://",  # rebuilt from the changelogs at start; apply() writes to it
            datadir=str(s.state_dir),
            web_host=s.web_host,
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
            autodiscover=False,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.rooms = _table(app, "rooms", s.partitions, "livepulse-utf8", "livepulse-room")
        self.clocks = _table(app, "clocks", s.partitions, "json", "livepulse-clock")
        self.batches = app.topic(s.topic_batches, partitions=s.partitions)
        self.alerts = app.topic(
            s.topic_alerts, partitions=s.partitions, key_serializer="raw", value_serializer="raw"
        )
        self.registry.register(
            PipelineCollector(
                lambda: sum(1 for _ in self.active_rooms()),
                self.standby_rooms,
                self.watermarks,
                self.ingest.consumer_lag,
            )
        )
        self.exposition = RoomExposition(s.window_ms, s.metrics_max_rooms)
        self._wire()

    # -- the stateful agent ----------------------------------------------------------------
    def _wire(self) -> None:
        app = self.app

        @app.agent(self.batches, name="funnel")
        async def funnel(stream: faust.StreamT) -> None:
            every = self.settings.changelog_flush_seconds
            async for event in stream.noack().events():
                batch = envelope.decode(event.value)
                out = self.apply(event.message.partition, batch.events)
                for alert in out.alerts:
                    # At least once: a crash before the next flush re-judges those windows.
                    await self.alerts.send(key=alert.key(), value=alert.encode())
                    self.metrics.alerts.labels(alert.kind, alert.state).inc()
                self._unacked.append(event)
                if time.monotonic() - self._flushed_at >= every:
                    await self.flush()

        @app.on_partitions_revoked.connect
        async def forget(sender: Any, revoked: Any, **kwargs: Any) -> None:
            await self.flush()
            # Rebuilt from the (recovered) tables on the next envelope of each partition.
            self.processors.clear()

        @app.page("/metrics")
        async def metrics(web: faust.web.View, request: faust.web.Request) -> Any:
            rooms = await self.exposition.render_async(self.active_rooms())
            return web.bytes(
                generate_latest(self.registry) + rooms.encode(),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

        @app.page("/rooms")
        async def rooms_index(web: faust.web.View, request: faust.web.Request) -> Any:
            rows = []
            size = self.settings.window_ms
            for state in sorted(self.active_rooms(), key=lambda r: r.room_id):
                last, current = state.last_closed(), state.current_open()
                rows.append(
                    {
                        "room_id": state.room_id,
                        "late_events": state.late_events,
                        "alerts": [] if state.detector is None else state.detector.firing(),
                        "last_closed": None if last is None else state.describe(last, size),
                        "open": None if current is None else state.describe(current, size),
                    }
                )
            return _json(web, {"rooms": rows})

        @app.page("/rooms/{room_id}")
        async def room_detail(web: faust.web.View, request: faust.web.Request, room_id: str) -> Any:
            state = self.rooms.get(room_id)
            size = self.settings.window_ms
            if state is None or state.partition not in self.active_partitions():
                return _json(web, {"error": f"room {room_id!r} is not on this worker"}, 404)
            return _json(
                web,
                {
                    "room_id": room_id,
                    "late_events": state.late_events,
                    "alerts": [] if state.detector is None else state.detector.describe(size),
                    "windows": state.describe_all(size),
                },
            )

        @app.page("/ready")
        async def ready(web: faust.web.View, request: faust.web.Request) -> Any:
            partitions = sorted(self.active_partitions())
            ok = self.ingest.ready.is_set() and bool(partitions)
            return _json(web, {"ready": ok, "partitions": partitions}, 200 if ok else 503)

    def worker(self, loop: Any = None) -> faust.Worker:
        """A Faust worker that runs the app and the ingest stage together."""
        return faust.Worker(
            self.app, IngestService(self.ingest), loop=loop, loglevel=self.settings.loglevel
        )

    def apply(self, partition: int, events: list) -> Outcome:
        """Apply one envelope in memory (visible at once); the changelog follows in ``flush``."""
        proc = self.processors.get(partition)
        if proc is None:
            proc = self.processors[partition] = self._restore(partition)
        rooms = self.rooms.data
        out = proc.process(events, time.time(), rooms.get)
        dirty = self._dirty.setdefault(partition, {})
        for room, state in out.updated.items():
            rooms[room] = state
            dirty[room] = state
        for room in out.deleted:
            rooms.pop(room, None)
            dirty[room] = None
        self.metrics.record(out.tally, self.settings.source_topics)
        return out

    async def flush(self) -> None:
        """Group commit: write each changed room once, then let Faust commit the envelopes.

        Faust flushes the producer before it commits acknowledged offsets, so an envelope's
        offset is committed only after the room states it changed are in the changelog. A
        crash replays at most ``changelog_flush_seconds`` of envelopes, and the rooms' applied
        offsets make that replay a no-op. One write per room per flush instead of one per
        envelope is what keeps the changelog off the hot path.
        """
        touched = [p for p, rooms in self._dirty.items() if rooms]
        sent = 0
        for partition, rooms in self._dirty.items():
            for room, state in rooms.items():
                if state is None:
                    self.rooms.send_changelog(partition, room, None, value_serializer="raw")
                else:
                    self.rooms.send_changelog(partition, room, state)
                sent += 1
                if sent % FLUSH_CHUNK == 0:
                    # Faust keeps ~1.5 KB of bookkeeping per pending record: bound it, or a
                    # flush of 100 000 new rooms holds 150 MB that the heap never gives back.
                    await self.app.producer.flush()
            proc = self.processors.get(partition)
            if proc is not None:
                clock = proc.clock.state()
                self.clocks.data[partition] = clock
                self.clocks.send_changelog(partition, partition, clock)
        self._dirty.clear()
        if touched:
            # The embedded broker (Tansu 0.6) reports a partition's end offset as the base
            # offset of its last batch + 1, so recovery, which reads up to that offset, would
            # miss the rest of a multi-record batch. Ending each flush with a one-record batch
            # (a tombstone for a key no room uses) keeps it right; on Kafka it costs one record.
            await self.app.producer.flush()
            for partition in touched:
                self.rooms.send_changelog(partition, _MARKER, None, value_serializer="raw")
                self.clocks.send_changelog(partition, _MARKER, None, value_serializer="raw")
        for event in self._unacked:
            event.ack()
        self._unacked.clear()
        self._flushed_at = time.monotonic()

    def _restore(self, partition: int) -> PartitionProcessor:
        s = self.settings
        return PartitionProcessor(
            partition,
            size_ms=s.window_ms,
            grace_ms=s.grace_ms,
            idle_timeout_s=s.idle_timeout_seconds,
            retention=s.retention_windows,
            clock_state=self.clocks.get(partition),
            rooms=[r for r in self.rooms.values() if r.partition == partition],
            now_s=time.time(),
            detector=s.detector,
        )

    # -- reads for the web pages -----------------------------------------------------------
    def active_partitions(self) -> set[int]:
        """Partitions this worker owns (standby copies of other partitions are not shown)."""
        topic = self.settings.topic_batches
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def active_rooms(self) -> Iterator[RoomState]:
        active = self.active_partitions()
        return (state for state in list(self.rooms.values()) if state.partition in active)

    def standby_rooms(self) -> int:
        """Standby copies of other workers' partitions (kept for fast failover, never served)."""
        topic = self.rooms.changelog_topic_name
        standby = {
            tp.partition for tp in self.app.assignor.assigned_standbys() if tp.topic == topic
        }
        return sum(1 for state in list(self.rooms.values()) if state.partition in standby)

    def watermarks(self) -> dict[int, int | None]:
        active = self.active_partitions()
        return {p: proc.clock.watermark for p, proc in self.processors.items() if p in active}


class IngestService(mode.Service):
    """Runs the ingest stage beside the Faust app, so both join their groups at once."""

    def __init__(self, ingest: Ingest, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ingest = ingest

    @mode.Service.task
    async def _consume(self) -> None:
        await self.ingest.run()


def _table(app: faust.App, name: str, partitions: int, key: str, value: str) -> faust.Table:
    table = app.Table(name, partitions=partitions)
    # Faust derives a table's codecs from key_type/value_type (Records) and has already built
    # the changelog topic with JSON; ours are plain codecs, so build it again with them.
    table.key_serializer, table.value_serializer = key, value
    table.changelog_topic = table._new_changelog_topic()
    return table


def _json(web: faust.web.View, payload: Any, status: int = 200) -> Any:
    return web.bytes(orjson.dumps(payload), content_type="application/json", status=status)


def create_app(settings: Settings | None = None) -> LivePulse:
    return LivePulse(settings or Settings())

"""The worker without Kafka: records in, the rooms the worker would hold out.

What bytewax's ``TestingSource``/``TestingSink`` are to a dataflow: the ingest stage's rules
(:func:`streams.core.contract.decode`, offsets numbered per topic-partition, envelopes per
partition every ``tick_ms``, the idle verdict) and one :class:`PartitionProcessor` per
partition, driven by a simulated wall clock; and the stateful stage's changelog (what a flush
writes, what a restart restores from a prefix of it). The alert evaluations and unit tests use
it; the integration tests run the real worker instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from streams.core.changelog import MARKER, coalesce
from streams.core.contract import Ev, InvalidRecord, Source, decode
from streams.core.partitioner import partition_of
from streams.core.processor import Outcome, PartitionProcessor, ProcessorConfig
from streams.core.rooms import RoomState
from streams.core.windows import SOURCES, IdleTracker


@dataclass
class DeadLetter:
    source: Source
    partition: int
    offset: int
    category: str
    reason: str


@dataclass
class LocalWorker:
    """``partitions`` processors fed as the worker would feed them, at simulated wall time."""

    partitions: int
    config: ProcessorConfig = field(default_factory=ProcessorConfig)
    idle_timeout_ms: int = 30_000
    tick_ms: int = 1_000
    max_skew_ms: int = 60_000
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.processors = [PartitionProcessor(p, self.config) for p in range(self.partitions)]
        self._offsets = [[0] * self.partitions for _ in range(SOURCES)]
        self._pending: list[list[Ev]] = [[] for _ in range(self.partitions)]
        # read to the end at every tick; quiet since each source-partition's last record
        self._idle = IdleTracker(self.idle_timeout_ms, fresh_ms=self.tick_ms)
        self._idle.assigned({(s, p) for s in range(SOURCES) for p in range(self.partitions)}, 0)
        self.now_ms: int | None = None
        #: per partition: the changelog the flushes wrote (as the broker holds it, deletions
        #: as ``None``), envelopes applied, and per flush (changelog length, envelopes covered)
        self.changelog: list[list[tuple[str, bytes | None]]] = [[] for _ in self.processors]
        self.applied = [0] * self.partitions
        self.flushes: list[list[tuple[int, int]]] = [[] for _ in self.processors]
        #: per partition: the records of failed flushes, sent again by the next one
        self.unsent: list[list[tuple[str, bytes | None]]] = [[] for _ in self.processors]

    def send(
        self,
        source: Source,
        key: bytes | None,
        value: bytes | None,
        at_ms: int,
        partition: int | None = None,
    ) -> None:
        """One record produced at ``at_ms`` (the default partitioner places it by its key);
        ticks due before it run first."""
        self.run_until(at_ms)
        if partition is None:
            partition = 0 if key is None else partition_of(key, self.partitions)
        offset = self._offsets[source][partition]
        self._offsets[source][partition] = offset + 1
        self._idle.read((source, partition), at_ms)
        now = self._tick_end(at_ms)
        try:
            ev = decode(
                source, offset, key, value, now, self.max_skew_ms, partition, self.partitions
            )
        except InvalidRecord as bad:
            self.dead_letters.append(
                DeadLetter(source, partition, offset, bad.category, bad.reason)
            )
            return
        self._pending[partition].append(ev)

    def _tick_end(self, at_ms: int) -> int:
        return at_ms - at_ms % self.tick_ms + self.tick_ms

    def run_until(self, at_ms: int) -> list[tuple[int, int, Outcome]]:
        """Run every tick that ends at or before ``at_ms``; returns (tick, partition, outcome)."""
        done: list[tuple[int, int, Outcome]] = []
        if self.now_ms is None:
            self.now_ms = self._tick_end(at_ms)
        while self.now_ms <= at_ms:
            done += self.tick(self.now_ms)
            self.now_ms += self.tick_ms
        return done

    def tick(self, now_ms: int) -> list[tuple[int, int, Outcome]]:
        """One envelope per partition: what arrived since the last tick (maybe nothing)."""
        out = []
        for p in range(self.partitions):
            for s in range(SOURCES):
                self._idle.answered((s, p), True, now_ms)
            idle = sum(1 << s for s in range(SOURCES) if self._idle.idle((s, p), now_ms))
            events, self._pending[p] = self._pending[p], []
            out.append((now_ms, p, self.apply(p, events, now_ms, idle)))
        return out

    def apply(
        self,
        partition: int,
        events: list[Ev],
        now_ms: int | None = None,
        idle: int = 0,
        offset: int | None = None,
    ) -> Outcome:
        """The stateful stage's step: one envelope of decoded events (read at ``now_ms``,
        with the sources in the bit mask ``idle`` idle) applied to its partition. ``offset``:
        the envelope's place in the partition's log (by default the next one; a replay after
        :meth:`restart` gives it)."""
        if offset is None:
            offset = self.applied[partition]
        result = self.processors[partition].process(events, now_ms, idle, offset)
        for ev, reason in result.rejected:
            self.dead_letters.append(
                DeadLetter(Source(ev.src), partition, ev.offset, "currency", reason)
            )
        self.applied[partition] = max(self.applied[partition], offset + 1)
        return result

    def flush(self, landed: int | None = None) -> None:
        """A group commit of every partition: its changes, then the end-of-flush marker.

        With ``landed``, the flush fails after that many of a partition's records reached
        the log (no marker): as in the worker, they stay unsent, and the next flush sends them
        again with its own, coalesced (:func:`streams.core.changelog.coalesce`)."""
        for p, proc in enumerate(self.processors):
            held, records = self.unsent[p], proc.changes()
            self.unsent[p] = records = coalesce(held + records) if held else records
            log = self.changelog[p]
            if landed is not None:
                log += records[:landed]
                continue
            log += records
            log.append((MARKER, None))
            self.unsent[p] = []
            self.flushes[p].append((len(log), self.applied[p]))

    def restart(self, partition: int, records: int | None = None) -> PartitionProcessor:
        """The partition's processor replaced by what a new worker restores from the first
        ``records`` records of its changelog (all by default), compacted as the store keeps
        them."""
        proc = PartitionProcessor.restore(partition, self.config, self.table(partition, records))
        self.processors[partition] = proc
        return proc

    def table(self, partition: int, records: int | None = None) -> dict[str, bytes]:
        """The first ``records`` records of the partition's changelog (all by default),
        compacted as the store keeps them: key -> last value, deleted keys absent."""
        table: dict[str, bytes] = {}
        for key, value in self.changelog[partition][:records]:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return table

    def rooms(self) -> Iterator[RoomState]:
        for proc in self.processors:
            yield from proc.rooms.values()

    def room(self, room_id: str) -> RoomState | None:
        proc = self.processors[partition_of(room_id.encode(), self.partitions)]
        return proc.rooms.get(room_id)

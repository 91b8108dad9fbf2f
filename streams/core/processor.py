"""The stateful step for one partition: envelopes in, what changed out.

Plain code with no Faust in it. A processor owns its partition's rooms and clock: state comes
in once through :meth:`PartitionProcessor.restore` (the changelog records), each envelope goes
through :meth:`~PartitionProcessor.process`, and what the changelog lacks leaves through
:meth:`~PartitionProcessor.changes`, in the order :mod:`streams.core.changelog` requires. The
agent in :mod:`streams.worker.app` only wires these to Kafka, so every rule is unit-tested
without a broker.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import msgspec
from sortedcontainers import SortedList

from streams.core.changelog import CLOCK, is_room_record, room_of
from streams.core.contract import Ev
from streams.core.detector import AlertEvent, DetectorConfig, DetectorState, on_close, on_expire
from streams.core.rooms import RoomConfig, RoomState, Tally
from streams.core.windows import ClockState, PartitionClock

_encode = msgspec.msgpack.Encoder().encode
_decode_clock = msgspec.msgpack.Decoder(ClockState).decode


@dataclass(frozen=True)
class ProcessorConfig:
    room: RoomConfig = field(default_factory=RoomConfig)
    grace_ms: int = 5_000
    detector: DetectorConfig | None = None


@dataclass
class Outcome:
    tally: Tally = field(default_factory=Tally)
    alerts: list[AlertEvent] = field(default_factory=list)
    #: (event, reason): applied nowhere, to be dead-lettered (an order in a foreign currency)
    rejected: list[tuple[Ev, str]] = field(default_factory=list)
    #: rooms that closed windows in this batch, and rooms that expired
    closed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)


class PartitionProcessor:
    """One partition's rooms and clock, and a schedule of when each room next needs a look."""

    def __init__(self, partition: int, config: ProcessorConfig) -> None:
        """An empty partition; state comes in only through :meth:`restore`."""
        self.partition = partition
        self.config = config
        self._clock = PartitionClock(config.grace_ms)
        self.rooms: dict[str, RoomState] = {}
        # the rooms' ids in order: a /rooms page costs its rows, not a scan of every room
        self._ids: SortedList = SortedList()
        # When each room next needs a look: its first open window's end, or when it expires.
        # One live entry per room; heap entries that disagree with ``_due_at`` are stale.
        self._due: list[tuple[int, str]] = []
        self._due_at: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._graves: list[str] = []
        #: What the rooms counted into room_id="__other__" applied since the processor began
        #: (their events while flagged ``in_others``): a sum of deltas, so it never decreases
        #: however the set of exported rooms changes. New rooms start in it when the worker
        #: exports fewer rooms than it has (``over_cap``, set at each scrape).
        self.others = Tally()
        self.over_cap = False
        self._clock_dirty = False
        #: Offset (in the internal topic) of the last envelope applied; -1: none recorded.
        self.envelope = -1

    @classmethod
    def restore(
        cls, partition: int, config: ProcessorConfig, records: Mapping[str, bytes]
    ) -> PartitionProcessor:
        """The partition as its changelog records left it (keys -> values): the way in for
        rooms and clock, as :meth:`changes` is the way out."""
        parts: dict[str, dict[str, bytes]] = {}
        heads: dict[str, bytes] = {}
        for key, value in records.items():
            if is_room_record(key):
                heads[key] = value
            else:
                room = room_of(key)
                if room is not None:
                    parts.setdefault(room, {})[key] = value
        proc = cls(partition, config)
        for room, data in heads.items():
            state, unused = RoomState.restore(room, data, parts.pop(room, {}), config.room)
            proc.rooms[room] = state
            proc._graves += unused
            proc._schedule(state)
        proc._ids.update(proc.rooms)
        for orphans in parts.values():  # a room deleted by a flush that did not finish
            proc._graves += orphans
        clock = records.get(CLOCK)
        if clock is not None:
            saved = _decode_clock(clock)
            proc._clock = PartitionClock.restore(saved, config.grace_ms)
            proc.envelope = saved.envelope
        proc._clock_dirty = bool(proc._graves)
        return proc

    def _schedule(self, state: RoomState) -> None:
        first = state.first_open()
        due = self._expiry(state) if first is None else first + self.config.room.size_ms
        if self._due_at.get(state.room_id) != due:
            self._due_at[state.room_id] = due
            heapq.heappush(self._due, (due, state.room_id))

    def _expiry(self, state: RoomState) -> int:
        rc = self.config.room
        return state.newest_end(rc.size_ms) + rc.retention * rc.size_ms

    def missing(self, offset: int) -> int:
        """How many envelopes are missing before the one at ``offset``: > 0 when the envelopes
        after :attr:`envelope` did not come first (they must be applied before it), 0 when it
        is next, already applied, or the partition has no position yet.

        A room skips source offsets it has applied, which is what makes a replay harmless,
        but only if a partition's envelopes are applied in their log order: one applied
        after a later one would have its events skipped as replayed.
        """
        return max(0, offset - self.envelope - 1) if self.envelope >= 0 else 0

    def passed(self, offset: int) -> None:
        """An envelope at ``offset`` that is not applied (it is not one): the position moves on."""
        if offset > self.envelope:
            self.envelope = offset
            self._clock_dirty = True

    def process(
        self,
        events: list[Ev],
        now_ms: int | None = None,
        idle: int = 0,
        offset: int | None = None,
    ) -> Outcome:
        """Apply a batch (one envelope at ``offset`` of the internal topic, read at ``now_ms``
        with the sources in ``idle`` idle) and close whatever the new watermark allows."""
        out = Outcome()
        if offset is not None:
            self.passed(offset)
        clock = self._clock
        rc = self.config.room
        watermark_before = clock.watermark
        by_room: dict[str, list[Ev]] = {}
        late: set[tuple[int, int]] = set()
        observe = clock.observe
        for ev in events:
            if observe(ev.src, ev.ts, now_ms):
                late.add((ev.src, ev.offset))
            group = by_room.get(ev.room)
            if group is None:
                by_room[ev.room] = [ev]
            else:
                group.append(ev)
        if events:
            self._clock_dirty = True

        rooms = self.rooms
        others: Tally | None = None
        for room, items in by_room.items():
            state = rooms.get(room)
            if state is None:
                state = rooms[room] = RoomState(room, self.partition)
                state.in_others = self.over_cap
                self._ids.add(room)
            if state.in_others:
                if others is None:
                    others = Tally()
                opened = state.apply(items, rc, watermark_before, others, out.rejected, late)
            else:
                opened = state.apply(items, rc, watermark_before, out.tally, out.rejected, late)
            scheduled = self._due_at.get(room)
            if scheduled is None or (opened and min(opened) < scheduled):
                self._schedule(state)
            self._dirty.add(room)

        if others is not None:
            out.tally.merge(others)
            self.others.merge(others)
        before = clock.watermark
        watermark = clock.advance(idle)
        if watermark != before:
            self._clock_dirty = True
        if watermark is None:
            return out
        due = self._due
        detector = self.config.detector
        while due and due[0][0] <= watermark:
            at, room = heapq.heappop(due)
            if self._due_at.get(room) != at:
                continue  # superseded by a later schedule
            del self._due_at[room]
            state = rooms.get(room)
            if state is None:
                continue
            closed = state.close_until(watermark, rc)
            if closed:
                out.tally.windows_closed += closed
                out.closed.append(room)
                self._dirty.add(room)
                if detector is not None:
                    state.detector, alerts = on_close(
                        detector,
                        state.detector or DetectorState(),
                        room,
                        state.closed,
                        rc.size_ms,
                    )
                    out.alerts += alerts
            if not state.has_open() and self._expiry(state) <= watermark:
                del rooms[room]
                self._ids.discard(room)
                out.expired.append(room)
                self._dirty.discard(room)
                self._graves += state.keys()
                if state.detector is not None:
                    out.alerts += on_expire(state.detector, room, rc.size_ms)
            else:
                self._schedule(state)  # the next window end, or the expiry: both > watermark
        return out

    def rooms_after(self, after: str | None) -> Iterator[RoomState]:
        """The partition's rooms in room id order, from the first after ``after``."""
        ids, rooms = self._ids, self.rooms
        for room in ids.islice(0 if after is None else ids.bisect_right(after)):
            yield rooms[room]

    @property
    def dirty(self) -> int:
        """Rooms changed since the last :meth:`changes`."""
        return len(self._dirty)

    def changes(self) -> list[tuple[str, bytes | None]]:
        """The records the changelog lacks since the last call, in the order that keeps every
        prefix of the log consistent (:mod:`streams.core.changelog`); ``None`` deletes a key."""
        before: list[tuple[str, bytes | None]] = []
        heads: list[tuple[str, bytes | None]] = []
        graves = self._graves
        for room in sorted(self._dirty):
            state = self.rooms.get(room)
            if state is None:
                continue
            records, head, deleted = state.changes()
            before += records
            if head is not None:
                heads.append(head)
            graves += deleted
        self._dirty.clear()
        self._graves = []
        written = {key for key, _ in before} | {key for key, _ in heads}
        # a key deleted and written again in one flush (a room that expired and came back)
        out = before + heads + [(key, None) for key in graves if key not in written]
        if self._clock_dirty or out:
            snapshot = self._clock.snapshot()
            snapshot.envelope = self.envelope
            out.append((CLOCK, _encode(snapshot)))
            self._clock_dirty = False
        return out

    @property
    def watermark(self) -> int | None:
        return self._clock.watermark

"""The stateful step for one partition: events in log order -> room states and closed windows.

Plain code with no Faust in it; the agent in :mod:`streams.app` only feeds it envelopes and
writes back what it returns, so every rule here is unit-tested without a broker.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from streams.contract import Ev
from streams.detector import AlertEvent, DetectorConfig, DetectorState, on_close, on_expire
from streams.rooms import RoomState, Tally
from streams.windows import ClockState, PartitionClock


@dataclass
class Outcome:
    updated: dict[str, RoomState] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    alerts: list[AlertEvent] = field(default_factory=list)


class PartitionProcessor:
    """Owns one partition's clock and a schedule of when each room next needs attention."""

    def __init__(
        self,
        partition: int,
        *,
        size_ms: int,
        grace_ms: int,
        idle_timeout_s: float,
        retention: int,
        clock_state: ClockState | None,
        rooms: Iterable[RoomState],
        now_s: float,
        detector: DetectorConfig | None = None,
    ) -> None:
        self.partition = partition
        self.detector = detector
        self.size_ms = size_ms
        self.retention = retention
        self.clock = PartitionClock.restore(clock_state, grace_ms, idle_timeout_s, now_s)
        # When each room next needs a look: its first open window's end, or when it expires.
        # One live entry per room; heap entries that disagree with ``_due_at`` are stale.
        self._due: list[tuple[int, str]] = []
        self._due_at: dict[str, int] = {}
        for state in rooms:
            self._schedule(state)

    def _schedule(self, state: RoomState) -> None:
        ends = state.open_ends(self.size_ms)
        due = min(ends) if ends else self._expiry(state)
        if self._due_at.get(state.room_id) != due:
            self._due_at[state.room_id] = due
            heapq.heappush(self._due, (due, state.room_id))

    def _expiry(self, state: RoomState) -> int:
        return state.newest_end(self.size_ms) + self.retention * self.size_ms

    def process(
        self, events: list[Ev], now_s: float, lookup: Callable[[str], RoomState | None]
    ) -> Outcome:
        """Apply a batch (one envelope) and close whatever the new watermark allows."""
        out = Outcome()
        clock = self.clock
        watermark_before = clock.watermark
        by_room: dict[str, list[tuple[Ev, bool]]] = {}
        for ev in events:
            late = clock.observe(ev.src, ev.ts)
            by_room.setdefault(ev.room, []).append((ev, late))
        for src in {ev.src for ev in events}:
            clock.touch(src, now_s)

        for room, items in by_room.items():
            state = lookup(room)
            if state is None:
                state = RoomState(room, self.partition)
            opened = state.apply(items, self.size_ms, watermark_before, out.tally)
            scheduled = self._due_at.get(room)
            if scheduled is None or (opened and min(opened) < scheduled):
                self._schedule(state)
            out.updated[room] = state

        watermark = clock.advance(now_s)
        if watermark is None:
            return out
        due = self._due
        while due and due[0][0] <= watermark:
            at, room = heapq.heappop(due)
            if self._due_at.get(room) != at:
                continue  # superseded by a later schedule
            del self._due_at[room]
            state = out.updated.get(room) or lookup(room)
            if state is None:
                continue
            closed = state.close_until(watermark, self.size_ms, self.retention)
            if closed:
                out.tally.windows_closed += closed
                out.updated[room] = state
                if self.detector is not None:
                    state.detector, alerts = on_close(
                        self.detector,
                        state.detector or DetectorState(),
                        room,
                        state.closed,
                        self.size_ms,
                    )
                    out.alerts += alerts
            if not state.has_open() and self._expiry(state) <= watermark:
                out.updated.pop(room, None)
                if state.detector is not None:
                    out.alerts += on_expire(state.detector, room, self.size_ms)
                if lookup(room) is not None:  # a room born in this batch was never stored
                    out.deleted.append(room)
            else:
                self._schedule(state)  # the next window end, or the expiry: both > watermark
        return out

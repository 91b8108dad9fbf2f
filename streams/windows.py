"""Event-time rules: window assignment, lateness and the per-partition watermark.

The contract (issue #2):

* Windows are tumbling, ``size_ms`` long, aligned to the epoch: ``[start, start + size_ms)``.
* An event is *late* when its time is more than ``grace_ms`` behind the largest event time
  already seen on its own topic-partition. Late events are counted, not applied. This depends
  only on the order inside one partition's log.
* The watermark of partition p is ``min`` over the three source topics of
  ``(largest event time seen on that topic's partition p) - grace_ms``. It never goes back.
  A window closes when the watermark reaches its end.
* A topic-partition that has been silent for ``idle_timeout`` seconds of wall-clock time stops
  holding the watermark back. Only this rule depends on the wall clock; without it the closed
  windows are a function of the logs alone, whatever order the topics are read in.

A non-late event can never fall into a closed window: its time is at least ``max - grace`` of
its own topic, which is at least the watermark. Only the idle rule can close a window that a
slow topic still feeds; such an event is counted late with reason ``closed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

SOURCES = 3


def window_start(ts: int, size_ms: int) -> int:
    return ts - ts % size_ms


class ClockState(msgspec.Struct, array_like=True):
    """What survives a restart: the per-topic maxima and the watermark."""

    max_ts: list[int | None]
    watermark: int | None = None


@dataclass
class PartitionClock:
    grace_ms: int
    idle_timeout_s: float
    max_ts: list[int | None] = field(default_factory=lambda: [None] * SOURCES)
    watermark: int | None = None
    last_seen: list[float] = field(default_factory=lambda: [0.0] * SOURCES)

    @classmethod
    def restore(
        cls, state: ClockState | None, grace_ms: int, idle_timeout_s: float, now_s: float
    ) -> PartitionClock:
        clock = cls(grace_ms, idle_timeout_s, last_seen=[now_s] * SOURCES)
        if state is not None:
            clock.max_ts = list(state.max_ts)
            clock.watermark = state.watermark
        return clock

    def state(self) -> ClockState:
        return ClockState(list(self.max_ts), self.watermark)

    def observe(self, src: int, ts: int) -> bool:
        """Record one event's time; True when the event is late (beyond grace)."""
        current = self.max_ts[src]
        if current is None or ts > current:
            self.max_ts[src] = ts
            return False
        return current - ts > self.grace_ms

    def touch(self, src: int, now_s: float) -> None:
        self.last_seen[src] = now_s

    def advance(self, now_s: float) -> int | None:
        """Recompute the watermark after a batch; returns it (None until defined)."""
        active = [s for s in range(SOURCES) if now_s - self.last_seen[s] < self.idle_timeout_s]
        if active:
            maxima = [self.max_ts[s] for s in active]
            if any(m is None for m in maxima):
                return self.watermark  # an active topic has not spoken yet: hold
            candidate = min(maxima) - self.grace_ms  # type: ignore[type-var]
        else:
            seen = [m for m in self.max_ts if m is not None]
            if not seen:
                return self.watermark
            candidate = max(seen) - self.grace_ms
        if self.watermark is None or candidate > self.watermark:
            self.watermark = candidate
        return self.watermark

"""Event-time rules: lateness, the per-partition watermark, and when a source counts as idle.

The contract (docs/time.md):

* Windows are tumbling, ``size_ms`` long, aligned to the epoch: ``[start, start + size_ms)``.
* Each source topic-partition has a *frontier*: the largest event time seen on it, each event
  time taken at most as the wall-clock time at which the ingest stage read it. An event is
  *late* when its time is more than ``grace_ms`` behind the frontier of its own
  topic-partition. Late events are counted, not applied. Capping at the wall clock means an
  event from a producer whose clock runs ahead cannot make on-time events late.
* The watermark of partition p is ``min`` over the three source topics of
  ``frontier - grace_ms``, leaving out sources the ingest stage has declared idle (if all are
  idle, the most advanced one leads). It never goes back. A window closes when the watermark
  reaches its end.
* A source topic-partition is *idle* when the ingest stage has read it to its end (its
  high watermark, as of a fetch answered within the last few seconds) and no record came for
  ``idle_timeout`` since then or since the partition was assigned. A stalled fetch, a
  rebalance or an unreachable broker never makes it idle. The ingest stage writes its verdict
  into each envelope, so the stateful stage decides nothing by the wall clock: the closed
  windows are a function of the envelope log, in one run or across restarts.

A non-late event can never fall into a closed window: its time is at least
``frontier - grace`` of its own topic, which is at least the watermark. Only the idle rule
can close a window that an idle topic later feeds; such an event is counted late with reason
``closed``.
"""

from __future__ import annotations

import msgspec

SOURCES = 3


class ClockState(msgspec.Struct, array_like=True):
    """What survives a restart: the per-topic frontiers, the watermark, and the offset of the
    last envelope the partition's state has applied (-1: not recorded, as in records written
    before it was)."""

    max_ts: list[int | None]
    watermark: int | None = None
    envelope: int = -1


class PartitionClock:
    """One partition's frontiers and watermark; in through :meth:`restore`, out through
    :meth:`snapshot`."""

    __slots__ = ("grace_ms", "max_ts", "watermark")

    def __init__(self, grace_ms: int) -> None:
        self.grace_ms = grace_ms
        self.max_ts: list[int | None] = [None] * SOURCES
        self.watermark: int | None = None

    @classmethod
    def restore(cls, state: ClockState | None, grace_ms: int) -> PartitionClock:
        clock = cls(grace_ms)
        if state is not None:
            clock.max_ts = list(state.max_ts)
            clock.watermark = state.watermark
        return clock

    def snapshot(self) -> ClockState:
        return ClockState(list(self.max_ts), self.watermark)

    def observe(self, src: int, ts: int, now_ms: int | None) -> bool:
        """Record one event's time (read at ``now_ms``); True when the event is late."""
        current = self.max_ts[src]
        late = current is not None and current - ts > self.grace_ms
        seen = ts if now_ms is None or ts <= now_ms else now_ms
        if current is None or seen > current:
            self.max_ts[src] = seen
        return late

    def advance(self, idle: int) -> int | None:
        """Recompute the watermark after a batch (``idle``: bit s set when source s is idle);
        returns it (None until defined)."""
        active = [s for s in range(SOURCES) if not idle >> s & 1]
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


class IdleTracker:
    """The ingest stage's idle verdict per source topic-partition (see the module docstring).

    Plain state fed with what the consumer knows: when each partition was assigned, when its
    last record was read, and per fetch answer whether it was read to its end. Times in ms.
    """

    def __init__(self, idle_timeout_ms: int, fresh_ms: int) -> None:
        self.idle_timeout_ms = idle_timeout_ms
        self.fresh_ms = fresh_ms
        self._quiet_since: dict[object, int] = {}
        self._caught_up: dict[object, tuple[bool, int]] = {}

    def assigned(self, tps: set[object], now_ms: int) -> None:
        self._quiet_since = {tp: now_ms for tp in tps}
        self._caught_up = {}

    def read(self, tp: object, now_ms: int) -> None:
        """Records of ``tp`` were just read."""
        self._quiet_since[tp] = now_ms

    def answered(self, tp: object, caught_up: bool, answered_ms: int) -> None:
        """A fetch answer for ``tp`` came at ``answered_ms``: read to its end or not."""
        self._caught_up[tp] = (caught_up, answered_ms)

    def idle(self, tp: object, now_ms: int) -> bool:
        quiet_since = self._quiet_since.get(tp)
        caught_up, answered_ms = self._caught_up.get(tp, (False, 0))
        return (
            quiet_since is not None
            and caught_up
            and now_ms - answered_ms <= self.fresh_ms
            and now_ms - quiet_since >= self.idle_timeout_ms
        )

"""Fencing without transactions: an owner that lost its partition (a stall or a network
partition past the session timeout) can still land a flush in the changelog after the new
owner took over. The new owner's fence makes every reader ignore it (streams.core.changelog)."""

from __future__ import annotations

from typing import Any

from streams.core.changelog import (
    EPOCH_HEADER,
    MARKER,
    NO_FENCE,
    Fence,
    admit,
    epoch_headers,
    fence_headers,
)
from streams.core.contract import Ev
from streams.core.processor import PartitionProcessor
from streams.worker.store import _Partition
from tests.support import scenario
from tests.support.events import BASE, config, flush, number_by_topic


def test_admit_applies_only_records_that_name_the_latest_takeovers_fence() -> None:
    assert admit(NO_FENCE, 0, None) == (True, NO_FENCE)  # before fencing existed
    assert admit(NO_FENCE, 3, epoch_headers(1)) == (True, NO_FENCE)
    first = Fence(4, 1_000)
    assert admit(NO_FENCE, 4, fence_headers(1_000)) == (True, first)
    assert admit(first, 5, epoch_headers(4)) == (True, first)
    assert admit(first, 6, epoch_headers(1)) == (False, first)  # an older owner's
    assert admit(first, 7, None) == (False, first)  # no epoch, after a fence
    assert admit(first, 8, [(EPOCH_HEADER, b"not a number")]) == (False, first)
    second = Fence(9, 2_000)
    assert admit(first, 9, fence_headers(2_000)) == (True, second)
    assert admit(second, 10, epoch_headers(4)) == (False, second)  # the first owner, late
    # a fence of an earlier takeover that lands late changes nothing, nor do its records
    assert admit(second, 11, fence_headers(1_500)) == (True, second)
    assert admit(second, 12, epoch_headers(11)) == (False, second)
    assert admit(second, 13, epoch_headers(9)) == (True, second)


class _Log:
    """One changelog partition as the broker holds it: (offset, key, value, headers)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str, bytes | None, Any]] = []

    def fence(self, taken_ms: int) -> int:
        self.records.append((len(self.records), MARKER, None, fence_headers(taken_ms)))
        return len(self.records) - 1

    def flush(self, proc: PartitionProcessor, epoch: int) -> None:
        """A processor's changes and the end-of-flush marker, as LivePulse.flush writes them."""
        for key, value in [*proc.changes(), (MARKER, None)]:
            self.records.append((len(self.records), key, value, epoch_headers(epoch)))

    def restore(self, headers: bool = True) -> PartitionProcessor:
        """What a new reader restores (``headers=False``: a reader that ignores fencing)."""
        part = _Partition()
        part.read([(o, k, v, h if headers else None) for o, k, v, h in self.records])
        return PartitionProcessor.restore(0, config(1000), dict(part.items()))


def _envelopes() -> list[list[Ev]]:
    bodies = [body for room in ("r1", "r2", "r3") for _, body in scenario.events(room, BASE)]
    events = number_by_topic(bodies)
    return [events[i : i + 4] for i in range(0, len(events), 4)]


def _shown(proc: PartitionProcessor) -> dict:
    return {
        room: (state.describe_all(60_000), state.session(), state.late_events)
        for room, state in sorted(proc.rooms.items())
        if room != "flush"
    }


def test_a_fenced_owners_late_flush_changes_nothing_for_any_reader() -> None:
    envelopes = [*_envelopes(), flush([1000, 1000, 1000])]
    half = len(envelopes) // 2
    log = _Log()
    # A owns the partition: flushes the first half, then applies more and is cut off
    a = PartitionProcessor(0, config(1000))
    epoch_a = log.fence(1_000)
    for offset, batch in enumerate(envelopes[:half]):
        a.process(batch, None, 0, offset)
    log.flush(a, epoch_a)
    for offset, batch in enumerate(envelopes[half:-2], half):
        a.process(batch, None, 0, offset)
    # B takes over: fences, reads the log back, replays from A's commit, flushes
    epoch_b = log.fence(2_000)
    b = log.restore()
    for offset, batch in enumerate(envelopes[half:], half):
        b.process(batch, None, 0, offset)
    log.flush(b, epoch_b)
    # A's flush, sent before the group dropped it, lands now
    log.flush(a, epoch_a)
    assert _shown(log.restore()) == _shown(b)
    # what fencing prevents: a reader that honours no fence gets A's stale records
    assert _shown(log.restore(headers=False)) != _shown(b)


def test_a_fence_that_lands_late_takes_nothing_from_the_owner() -> None:
    """A's fence, sent when A took the partition over, is held up and lands after B's (a
    later takeover), followed by A's records: readers keep B's fence and B's records."""
    envelopes = [*_envelopes(), flush([1000, 1000, 1000])]
    half = len(envelopes) // 2
    log = _Log()
    b = PartitionProcessor(0, config(1000))
    epoch_b = log.fence(2_000)
    for offset, batch in enumerate(envelopes[:half]):
        b.process(batch, None, 0, offset)
    log.flush(b, epoch_b)
    a = PartitionProcessor(0, config(1000))
    epoch_a = log.fence(1_000)
    for offset, batch in enumerate(envelopes[: half // 2]):
        a.process(batch, None, 0, offset)
    log.flush(a, epoch_a)
    for offset, batch in enumerate(envelopes[half:], half):
        b.process(batch, None, 0, offset)
    log.flush(b, epoch_b)
    assert _shown(log.restore()) == _shown(b)

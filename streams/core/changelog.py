"""The changelog's key scheme: one compacted log per partition holds everything it owns.

A partition's state is written to one changelog partition, so the order of its records is the
order of the log, and recovery (which reads a prefix of it) always finds a consistent state if
every flush writes, in this order:

1. chunks of event and order fingerprints (``<room>␟e|o␟<start>␟<seq>``), window records
   (``<room>␟w␟<start>␟<version>``) and session records (``<room>␟s␟<version>``: the
   session's people, rewritten only when a window closes); every such record is written once
   under its key, so a key always means one content;
2. room records (``<room>``), which name the exact version of each of their windows, and
   windows count their chunks: a room record recovered is a room as it was;
3. deletions (tombstones) of what rooms no longer name (older versions of windows included);
4. the partition clock (``␟clock``), with the offset of the last envelope applied, which
   therefore never runs ahead of the rooms;
5. the end-of-flush marker (:data:`MARKER`), a one-record batch: the embedded broker reports
   a partition's end offset as the base offset of its last batch + 1, and recovery reads up
   to that offset. A worker that takes a partition over writes one more before it reads the
   partition back, so a flush cut short by a kill is read whole by every later reader alike.

**Fencing.** Without Kafka transactions nothing stops a worker that lost a partition from
writing to its changelog: a flush sent just before the group dropped it (a stall past the
session timeout, a network partition) can land after the new owner has read the log. So the
marker a new owner writes when it takes a partition over is a *fence* (header
:data:`FENCE_HEADER`, holding when it took the partition over), and every record an owner
writes carries, in :data:`EPOCH_HEADER`, the offset of its own fence. A reader keeps the fence
of the latest takeover it has read and applies only records that name it (:func:`admit`): a
former owner's late records count for no reader, while every record before the fence counts
for all of them, and a prefix of a flush is a consistent state. A fence that itself lands late
(sent at an earlier takeover, held up by the broker) is older than the current one and is
ignored. Takeovers are ordered by the new owners' clocks, never earlier than the last
takeover the new owner has read: keep the workers' clocks within seconds of each other
(rebalances are further apart than that).

Keys join their parts with the unit separator U+001F, a control character no valid room id
may contain (contract v1), so no room's keys collide with another's or with the clock's.
"""

from __future__ import annotations

from typing import NamedTuple

SEP = "\x1f"
#: The partition clock's key (one per changelog partition).
CLOCK = f"{SEP}clock"
#: Key of the end-of-flush tombstone.
MARKER = "\x00flush"
#: Header of the marker a new owner writes before it reads a partition back (a fence): when it
#: took the partition over, in ms since the epoch, as ASCII digits.
FENCE_HEADER = "livepulse-fence"
#: Header of every record an owner writes: the offset of its fence, as ASCII digits.
EPOCH_HEADER = "livepulse-epoch"


class Fence(NamedTuple):
    """A partition's current fence: its offset and when its owner took the partition over."""

    offset: int
    taken_ms: int


#: No fence read yet: every record counts.
NO_FENCE = Fence(-1, -1)


def fence_headers(taken_ms: int) -> list[tuple[str, bytes]]:
    return [(FENCE_HEADER, str(taken_ms).encode())]


def epoch_headers(fence_offset: int) -> list[tuple[str, bytes]]:
    return [(EPOCH_HEADER, str(fence_offset).encode())]


def admit(current: Fence, offset: int, headers: object) -> tuple[bool, Fence]:
    """Whether a reader applies the record at ``offset`` (``headers``: Kafka's list of (key,
    value) pairs) to a partition whose current fence is ``current``, and the fence after it.

    A fence becomes current if its takeover is later than the current one's. A record counts
    if it names the current fence, or if no fence was read yet (records written before fencing
    existed)."""
    epoch = -1
    for key, value in headers or ():  # type: ignore[attr-defined]
        if key == FENCE_HEADER:
            taken = _number(value)
            return True, Fence(offset, taken) if taken > current.taken_ms else current
        if key == EPOCH_HEADER:
            epoch = _number(value)
    return current.offset < 0 or epoch == current.offset, current


def _number(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return -1


def window_key(room: str, start: int, version: int) -> str:
    return f"{room}{SEP}w{SEP}{start}{SEP}{version}"


def session_key(room: str, version: int) -> str:
    return f"{room}{SEP}s{SEP}{version}"


def chunk_key(room: str, kind: str, start: int, seq: int) -> str:
    """A chunk of fingerprints: ``kind`` "e" (event ids) or "o" (payments and refunds)."""
    return f"{room}{SEP}{kind}{SEP}{start}{SEP}{seq}"


def room_of(key: str) -> str | None:
    """The room a key belongs to (None for the clock and the marker)."""
    if not key or key[0] in (SEP, MARKER[0]):
        return None
    return key.split(SEP, 1)[0]


def is_room_record(key: str) -> bool:
    return bool(key) and SEP not in key and key[0] != MARKER[0]


def coalesce(records: list[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    """Several flushes' records (each in this module's order; ``None`` deletes) as one
    flush's: the last value of each key, in an order that keeps every prefix a consistent
    state. What a worker keeps of flushes that could not be sent, so what it holds
    while the changelog is unreachable grows with the keys, not with the outage.

    Parts (windows, chunks, sessions) come first, then room records, then deletions: of room
    records first (a room deleted before its parts leaves them unnamed, which a restore drops),
    then of parts, which no room record kept here names; the clock last. A key written again
    after its deletion (a room that expired and came back) is written, not deleted.
    """
    last = dict(records)  # the last value of each key
    parts: list[tuple[str, bytes | None]] = []
    rooms: list[tuple[str, bytes | None]] = []
    room_deletions: list[tuple[str, bytes | None]] = []
    deletions: list[tuple[str, bytes | None]] = []
    clock: list[tuple[str, bytes | None]] = []
    for key, value in last.items():
        if key == CLOCK:
            clock.append((key, value))
        elif is_room_record(key):
            (rooms if value is not None else room_deletions).append((key, value))
        else:
            (parts if value is not None else deletions).append((key, value))
    return parts + rooms + room_deletions + deletions + clock

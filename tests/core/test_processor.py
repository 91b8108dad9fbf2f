"""The stateful step without a broker: hand-computed windows, interleavings, crashes at any
point of the changelog, duplicates, currencies, and the order of the changelog's records."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.changelog import (
    CLOCK,
    MARKER,
    SEP,
    chunk_key,
    is_room_record,
    room_of,
    session_key,
    window_key,
)
from streams.core.contract import Ev, Kind, fingerprint
from streams.core.currencies import CURRENCIES
from streams.core.processor import PartitionProcessor
from streams.core.rooms import RoomRecord, WindowRecord
from tests.support import scenario
from tests.support.events import (
    BASE,
    CNY,
    FLUSH_AT,
    assert_windows_equal,
    flush,
    number_by_topic,
    one_partition,
)


def test_hand_computed_scenario() -> None:
    bodies = [body for _, body in scenario.events("r1", BASE)]
    w = one_partition()
    outs = [w.apply(0, number_by_topic(bodies)), w.apply(0, flush([100, 100, 100]))]
    room = w.processors[0].rooms["r1"]
    assert_windows_equal(room.describe_all(60_000), scenario.expected_windows(BASE))
    assert_windows_equal([room.session()], [scenario.expected_session(BASE)])
    assert room.late_events == scenario.EXPECTED_LATE
    assert room.currency_code == "CNY"
    assert sum(out.tally.windows_closed for out in outs) == 3


def test_same_input_in_single_event_batches_gives_the_same_windows() -> None:
    bodies = [body for _, body in scenario.events("r1", BASE)]
    w = one_partition()
    for ev in number_by_topic(bodies):
        w.apply(0, [ev])
    w.apply(0, flush([100, 100, 100]))
    windows = w.processors[0].rooms["r1"].describe_all(60_000)
    assert_windows_equal(windows, scenario.expected_windows(BASE))


def _logs(seed: int) -> list[list[Ev]]:
    """Three topic logs for a few rooms, with out-of-order, late and repeated events."""
    rng = random.Random(seed)
    kinds = {
        0: [Kind.IMPRESSION, Kind.ENTER, Kind.LEAVE],
        1: [Kind.PRODUCT_IMPRESSION, Kind.PRODUCT_CLICK],
        2: [Kind.ORDER_CREATED, Kind.ORDER_PAID, Kind.ORDER_REFUNDED],
    }
    logs = []
    for src in range(3):
        t, log = BASE, []
        for offset in range(rng.randrange(20, 80)):
            t += rng.randrange(0, 9000)
            if log and rng.random() < 0.1:  # a producer retry: the same event again
                log.append(msgspec.structs.replace(log[-1], offset=offset))
                continue
            ts = t - rng.choice([0, 0, 0, 3000, 5000, 12000])  # some on time, some late
            kind = rng.choice(kinds[src])
            order = rng.randrange(6) if kind >= Kind.ORDER_PAID else 0
            log.append(
                Ev(
                    src,
                    offset,
                    max(ts, BASE),
                    f"r{rng.randrange(3)}",
                    int(kind),
                    f"u{rng.randrange(20)}",
                    rng.randrange(0, 5000),
                    f"p{rng.randrange(3)}" if src else "",
                    fingerprint(f"{src}-{offset}"),
                    fingerprint(f"o{order}") if order else 0,
                    CNY if src == 2 else 0,
                )
            )
        logs.append(log)
    return logs


def _merge(logs: list[list[Ev]], rng: random.Random) -> list[Ev]:
    cursors, merged = [0, 0, 0], []
    while any(cursors[s] < len(logs[s]) for s in range(3)):
        src = rng.choice([s for s in range(3) if cursors[s] < len(logs[s])])
        merged.append(logs[src][cursors[src]])
        cursors[src] += 1
    return merged


def _batches(merged: list[Ev], rng: random.Random) -> list[list[Ev]]:
    out, i = [], 0
    while i < len(merged):
        size = rng.randrange(1, 12)
        out.append(merged[i : i + size])
        i += size
    return out


def _result(proc: PartitionProcessor) -> dict:
    """What the rooms show: closed windows, and the session and rolling blocks."""
    return {
        room: (
            state.late_events,
            [w for w in state.describe_all(60_000) if w["closed"]],
            state.session(),
            state.rolling(proc.config.room),
        )
        for room, state in sorted(proc.rooms.items())
        if room != "flush"
    }


def _run(logs: list[list[Ev]], rng: random.Random) -> dict:
    w = one_partition(retention=1000)
    for batch in _batches(_merge(logs, rng), rng):
        w.apply(0, batch)
    w.apply(0, flush([len(log) for log in logs]))
    return _result(w.processors[0])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_topic_interleaving_does_not_change_closed_windows(seed: int, a: int, b: int) -> None:
    logs = _logs(seed)
    first = _run(logs, random.Random(a))
    second = _run(logs, random.Random(b))
    assert first == second
    assert sum(len(shown[1]) for shown in first.values()) > 0


@pytest.mark.parametrize("failures", [False, True], ids=["flushes", "failed-flushes"])
@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.data())
def test_a_crash_anywhere_in_the_changelog_counts_nothing_twice_and_loses_nothing(
    failures: bool, seed: int, order: int, data: st.DataObject
) -> None:
    """Flush after random envelopes (``failures``: some flushes fail after a part of their
    records landed, and the next one sends them again, coalesced); crash with the changelog
    cut at any record (mid-flush included: rooms, windows and clock then come from different
    moments, as a torn write leaves them); restore; replay from any commit the flushes
    allowed; the windows equal an uncrashed run's."""
    logs = _logs(seed)
    rng = random.Random(order)
    batches = _batches(_merge(logs, rng), rng)
    once = _run(logs, random.Random(order))

    w = one_partition(retention=1000)
    crash_after = data.draw(st.integers(1, len(batches)), label="crash after envelope")
    for batch in batches[:crash_after]:
        w.apply(0, batch)
        if rng.random() < 0.4:
            failed = failures and rng.random() < 0.5
            w.flush(landed=rng.randrange(len(w.unsent[0]) + 30) if failed else None)
    if rng.random() < 0.5:
        w.flush()
    cut = data.draw(st.integers(0, len(w.changelog[0])), label="changelog records that survive")
    complete = [covered for end, covered in w.flushes[0] if end <= cut]
    # Faust commits only what a complete flush acknowledged, possibly less
    committed = data.draw(st.sampled_from([0, *complete]), label="committed envelopes")
    w.restart(0, cut)
    for offset, batch in enumerate(batches[committed:], committed):
        w.apply(0, batch, offset=offset)
    w.apply(0, flush([len(log) for log in logs]))
    assert _result(w.processors[0]) == once


def test_failed_flushes_hold_one_record_per_key_however_long_they_fail() -> None:
    """What a worker keeps while its changelog is unreachable is bounded by the keys."""
    logs = _logs(7)
    rng = random.Random(7)
    w = one_partition(retention=1000)
    held = []
    for batch in _batches(_merge(logs, rng), rng):
        w.apply(0, batch)
        w.flush(landed=0)
        keys = [key for key, _ in w.unsent[0]]
        assert len(keys) == len(set(keys))
        held.append(len(keys))
    assert w.changelog[0] == [] and max(held) > 0
    w.flush()
    once = _run(logs, random.Random(7))
    w.restart(0)
    w.apply(0, flush([len(log) for log in logs]))
    assert _result(w.processors[0]) == once


def _names_are_present(table: dict[str, bytes]) -> bool:
    """Every room record's windows, session and chunks are in ``table``."""
    for key, value in table.items():
        if not is_room_record(key):
            continue
        rec = msgspec.msgpack.decode(value, type=RoomRecord)
        if rec.session >= 0 and session_key(key, rec.session) not in table:
            return False
        for start, version in rec.windows:
            raw = table.get(window_key(key, start, version))
            if raw is None:
                return False
            w = msgspec.msgpack.decode(raw, type=WindowRecord)
            chunks = [("e", n) for n in range(w.id_chunks)]
            chunks += [("o", n) for n in range(w.order_chunks)]
            if any(chunk_key(key, kind, start, n) not in table for kind, n in chunks):
                return False
    return True


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.lists(st.integers(-1, 40), min_size=40, max_size=40))
def test_coalesced_flushes_keep_every_prefix_of_the_log_consistent(
    seed: int, outcomes: list[int]
) -> None:
    """Rooms that expire and come back (retention 1) while flushes fail after any number of
    records (``outcomes``, one per minute: -1 succeeds, n fails after n records): every
    prefix of the log names only records it holds."""
    rng = random.Random(seed)
    w = one_partition(retention=1)
    offsets = [0, 0, 0]
    kinds = [(0, Kind.ENTER), (1, Kind.PRODUCT_CLICK), (2, Kind.ORDER_PAID)]
    for minute, outcome in enumerate(outcomes):
        batch = []
        for room in ("r0", "r1", "r2", "r3") if minute < 30 else ("r0",):  # then 3 expire
            if rng.random() < 0.35 or room == "r0":
                for _ in range(rng.randrange(1, 4)):
                    src, kind = rng.choice(kinds)
                    oid = fingerprint(f"o{offsets[src]}") if src == 2 else 0
                    batch.append(
                        Ev(src, offsets[src], BASE + minute * 60_000 + rng.randrange(60_000),
                           room, int(kind), f"u{rng.randrange(5)}", 100, "p", offsets[src] + 1,
                           oid, CNY if src == 2 else 0)
                    )  # fmt: skip
                    offsets[src] += 1
        w.apply(0, sorted(batch, key=lambda ev: ev.ts))
        w.flush(landed=None if outcome < 0 else outcome)
    w.flush()
    for cut in range(len(w.changelog[0]) + 1):
        assert _names_are_present(w.table(0, cut)), f"cut after {cut} records"
    assert any(value is None and is_room_record(key) for key, value in w.changelog[0])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.data())
def test_envelopes_handed_over_with_gaps_are_applied_in_log_order(
    seed: int, order: int, data: st.DataObject
) -> None:
    """The agent's rule: an envelope after a gap (envelopes its consumer skipped) is applied
    only after the missing ones, read from the log. With drops anywhere, a crash and a replay
    from the last commit, the windows equal an in-order run's; applying the later envelope
    alone would have skipped the missing ones' events as replayed."""
    logs = _logs(seed)
    rng = random.Random(order)
    batches = [*_batches(_merge(logs, rng), rng), flush([len(log) for log in logs])]
    once = _run(logs, random.Random(order))
    w = one_partition(retention=1000)
    crash_after = data.draw(st.integers(1, len(batches) - 1), label="crash after envelope")
    for offset, batch in enumerate(batches[:crash_after]):
        w.apply(0, batch, offset=offset)
        if rng.random() < 0.3:
            w.flush()
    w.flush()
    committed = data.draw(st.sampled_from([0, *(c for _, c in w.flushes[0])]), label="commit")
    proc = w.restart(0)
    delivered = [
        o
        for o in range(committed, len(batches))
        if data.draw(st.booleans()) or o == len(batches) - 1
    ]
    filled = 0
    for offset in delivered:
        missing = proc.missing(offset)
        for gap in range(offset - missing, offset):
            w.apply(0, batches[gap], offset=gap)
        filled += missing
        w.apply(0, batches[offset], offset=offset)
    assert proc.envelope == len(batches) - 1
    assert filled == sum(1 for o in range(crash_after, len(batches)) if o not in delivered)
    assert _result(w.processors[0]) == once


def test_a_partition_restored_from_an_older_clock_record_has_no_position() -> None:
    """Records written before the clock carried the envelope offset: no gap is ever seen."""
    old = msgspec.msgpack.encode([[5, 6, 7], 2])
    proc = PartitionProcessor.restore(0, one_partition().config, {CLOCK: old})
    assert proc.envelope == -1
    assert proc.missing(1_000) == 0
    proc.process([], None, 0, offset=7)
    assert (proc.envelope, proc.missing(8), proc.missing(10), proc.missing(3)) == (7, 0, 2, 0)


def test_duplicates_count_once_by_event_id_per_window_and_by_order_id() -> None:
    w = one_partition()
    rooms = w.processors[0].rooms
    enter = Ev(0, 0, BASE + 1_000, "r", int(Kind.ENTER), "u1", eid=fingerprint("e1"))
    paid = Ev(2, 0, BASE + 2_000, "r", int(Kind.ORDER_PAID), "", 990, "", 7, 11, CNY)
    w.apply(0, [enter, msgspec.structs.replace(enter, offset=1)])  # resent: counted once
    w.apply(0, [msgspec.structs.replace(enter, offset=2, ts=BASE + 61_000)])  # another window
    w.apply(0, [paid, msgspec.structs.replace(paid, offset=1, eid=8)])  # callback repeated
    refund = msgspec.structs.replace(paid, offset=2, eid=9, kind=int(Kind.ORDER_REFUNDED))
    w.apply(0, [refund, msgspec.structs.replace(refund, offset=3, eid=10)])
    out = w.apply(0, [msgspec.structs.replace(paid, offset=4, eid=12)])
    assert out.tally.duplicates == {
        "offset": [0, 0, 0],
        "event_id": [0, 0, 0],
        "order_id": [0, 0, 1],
    }
    first, second = (rooms["r"].open[s].counts for s in sorted(rooms["r"].open))
    assert (first.enters, second.enters) == (1, 1)
    assert (first.orders_paid, first.gmv_cents, first.refunds) == (1, 990, 1)


def test_a_payment_is_counted_again_only_beyond_the_retained_windows() -> None:
    w = one_partition(retention=3)
    paid = Ev(2, 0, BASE, "r", int(Kind.ORDER_PAID), "", 100, "", 1, 11, CNY)
    w.apply(0, [paid])
    again = [
        msgspec.structs.replace(paid, offset=n, eid=100 + n, ts=BASE + n * 60_000)
        for n in range(1, 6)
    ]
    outs = [w.apply(0, [ev], None, 0b011) for ev in again]  # views/clicks idle
    assert [o.tally.duplicates["order_id"][2] for o in outs] == [1, 1, 1, 0, 1]


def test_an_order_in_another_currency_is_rejected_and_applied_nowhere() -> None:
    w = one_partition()
    rooms = w.processors[0].rooms
    cny = Ev(2, 0, BASE, "r", int(Kind.ORDER_CREATED), "", 100, "p", 1, 0, CNY)
    usd = msgspec.structs.replace(cny, offset=1, eid=2, currency=CURRENCIES["USD"][0])
    out = w.apply(0, [cny, usd])
    assert [(ev.offset, reason.split(":")[0]) for ev, reason in out.rejected] == [(1, "currency")]
    assert "USD" in out.rejected[0][1] and "CNY" in out.rejected[0][1]
    assert rooms["r"].open[BASE].counts.orders_created == 1
    # a room whose first order is rejected elsewhere has no window for it
    w.apply(0, [msgspec.structs.replace(usd, room="s", offset=2, eid=3)])
    assert rooms["s"].currency_code == "USD"


def test_changelog_records_come_in_an_order_any_prefix_of_which_is_consistent() -> None:
    w = one_partition(retention=2)
    bodies = [body for _, body in scenario.events("r1", BASE)]
    w.apply(0, number_by_topic(bodies))
    w.apply(0, flush([100, 100, 100]))
    w.flush()
    w.apply(0, flush([200, 200, 200], at=FLUSH_AT + 60 * 60_000))  # r1 expires
    w.flush()
    ends = [end for end, _ in w.flushes[0]]
    for start, end in zip([0, *ends[:-1]], ends, strict=True):
        records = w.changelog[0][start:end]
        kinds = [
            "marker"
            if key == MARKER
            else "clock"
            if key == CLOCK
            else "delete"
            if value is None
            else "room"
            if is_room_record(key)
            else "part"
            for key, value in records
        ]
        order = ["part", "room", "delete", "clock", "marker"]
        assert kinds == sorted(kinds, key=order.index), kinds
        assert kinds[-2:] == ["clock", "marker"]
    # the expired room's records are all deleted
    survivors = w.restart(0)
    assert "r1" not in survivors.rooms
    table = w.table(0)
    assert not [k for k in table if room_of(k) == "r1"], sorted(table)
    assert all(SEP not in room for room in survivors.rooms)


def test_rooms_expire_after_retention_and_closed_windows_are_capped() -> None:
    w = one_partition(retention=3)
    rooms = w.processors[0].rooms
    offsets = [0, 0, 0]

    def at(ts: int, room: str) -> list[Ev]:
        evs = [
            Ev(src, offsets[src], ts, room, int(kind), "u")
            for src, kind in ((0, Kind.ENTER), (1, Kind.PRODUCT_CLICK), (2, Kind.ORDER_CREATED))
        ]
        for src in range(3):
            offsets[src] += 1
        return evs

    for minute in range(6):
        w.apply(0, at(BASE + minute * 60_000, "busy"))
    busy = rooms["busy"]
    closed = [win for win in busy.describe_all(60_000) if win["closed"]]
    # watermark = BASE + 5 min - 5 s: windows 0..3 closed, only the newest 3 kept
    assert [win["window_start"] for win in closed] == [BASE + m * 60_000 for m in (1, 2, 3)]
    # "busy" goes quiet; another room moves the watermark past busy's newest window + 3 windows
    # busy's newest window ends at BASE+6m; it expires when the watermark reaches 6m + 3 windows
    w.apply(0, at(BASE + 9 * 60_000, "other"))  # watermark 9m - 5 s
    assert "busy" in rooms
    w.apply(0, at(BASE + 9 * 60_000 + 5_000, "other"))  # watermark 9m
    assert "busy" not in rooms
    assert "other" in rooms


def test_event_for_a_window_closed_by_the_idle_rule_is_late_not_applied() -> None:
    w = one_partition()
    rooms = w.processors[0].rooms
    w.apply(0, [Ev(0, 0, BASE + 1000, "r", int(Kind.ENTER), "u1")])
    w.apply(0, [Ev(1, 0, BASE + 1000, "r", int(Kind.PRODUCT_CLICK))])
    # orders never speak; the ingest stage declares them idle, and they stop holding it
    out = w.apply(
        0,
        [
            Ev(0, 1, BASE + 70_000, "r", int(Kind.ENTER), "u2"),
            Ev(1, 1, BASE + 70_000, "r", int(Kind.PRODUCT_CLICK)),
        ],
        None,
        0b100,
    )
    assert out.tally.windows_closed == 1
    # an order within grace of its own topic, but for the window the idle rule closed
    out = w.apply(0, [Ev(2, 0, BASE + 2000, "r", int(Kind.ORDER_PAID), "", 100)])
    assert out.tally.late_closed == [0, 0, 1]
    first = rooms["r"].describe_all(60_000)[0]
    assert (first["closed"], first["orders_paid"], first["enters"]) == (True, 0, 1)
    assert rooms["r"].late_events == 1

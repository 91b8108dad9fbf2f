"""Hostile records through the real topics: one worker stays up, every bad record is a dead
letter with its reason, and the good traffic's windows equal the simulator's truth exactly.

Each hypothesis example is its own simulated session (rooms and an hour of event time of its
own) mixed with a few hundred hostile records: arbitrary bytes and JSON trees, deep nesting,
huge, negative, fractional and boolean numbers, strings up to a megabyte, invalid UTF-8 in key
and value, missing and wrong keys, wrong topics and partitions, control characters, reserved
ids, clocks far ahead, and, woven into the good traffic, records sent twice, payment callbacks
repeated and orders in a foreign currency. The truth (computed without the stream code) sees
the good traffic with the woven-in records; the rest must come back from the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streams.commands.recording import Recorded
from streams.core.partitioner import partition_of
from streams.sim import Emitted, compute_truth, generate
from streams.sim.publish import Placement, configure
from streams.testing import Pipeline
from tests.support.truth import assert_matches_truth, close_and_wait

PARTITIONS = 3
#: 2100-01-01: an event time always far ahead of the wall clock (reason clock).
FAR_AHEAD = 4_102_444_800_000
TOPICS = ("views", "clicks", "orders")
ROOMS = 3


@dataclass(frozen=True)
class Hostile:
    """One record that must end as a dead letter (``expect``: its reason's category, or None
    when several fit, e.g. arbitrary bytes that may or may not be JSON)."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    expect: str | None


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


_json_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)
_bad_numbers = st.sampled_from(
    [2**64, -1, -(2**63), 10**30, 1.5, 0.1, True, False, "12", None, 1e400, 253_402_300_800_000]
)
#: ids no field may have; and what only a room (or product) may not be called
_bad_ids = ["", "\x00flush", "a\x1fb", "tab\there", "del\x7f", "c1\x85", "x" * 129]
_reserved = ["__other__", "__x"]


@st.composite
def hostile(draw: st.DrawFn, bodies: list[tuple[str, dict]]) -> Hostile:
    """A record of one hostile kind, built from a good body of the session."""
    topic, good = draw(st.sampled_from(bodies))
    room = good["room_id"]
    home = partition_of(room.encode(), PARTITIONS)
    key = room.encode()
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "tree",
                "deep",
                "number",
                "long",
                "utf8_value",
                "utf8_key",
                "no_key",
                "wrong_key",
                "wrong_topic",
                "wrong_partition",
                "bad_id",
                "future",
                "no_value",
            ]
        )
    )
    body = dict(good)
    if kind == "bytes":
        return Hostile(topic, home, key, draw(st.binary(max_size=200)), None)
    if kind == "tree":
        return Hostile(topic, home, key, json.dumps(draw(_json_trees)).encode(), None)
    if kind == "deep":
        depth = draw(st.integers(17, 5_000))
        return Hostile(topic, home, key, orjson.dumps(body)[:-1] + b',"x":' + _deep(depth) + b"}",
                       "schema")  # fmt: skip
    if kind == "number":
        field = draw(st.sampled_from([f for f in ("ts", "watch_ms", "quantity", "amount_cents")
                                       if f in body] or ["ts"]))  # fmt: skip
        value = draw(_bad_numbers)
        body[field] = value
        text = json.dumps(body)  # stdlib: integers of any size, 1e400 as Infinity
        return Hostile(topic, home, key, text.encode(), None)
    if kind == "long":
        field = draw(st.sampled_from(["user_id", "event_id"]))
        body[field] = "u" * draw(st.sampled_from([129, 5_000, 300_000, 900_000]))
        return Hostile(topic, home, key, orjson.dumps(body), "schema")
    if kind == "utf8_value":
        raw = orjson.dumps(body)
        cut = draw(st.integers(1, len(raw) - 2))
        return Hostile(topic, home, key, raw[:cut] + b"\xff\xfe" + raw[cut:], "json")
    if kind == "utf8_key":
        return Hostile(topic, home, key + b"\xff", orjson.dumps(body), "key")
    if kind == "no_key":
        return Hostile(topic, home, None, orjson.dumps(body), "key")
    if kind == "wrong_key":
        return Hostile(topic, home, b"another-room", orjson.dumps(body), "key")
    if kind == "wrong_topic":
        other = {"views": "clicks", "clicks": "orders", "orders": "views"}[topic]
        return Hostile(other, home, key, orjson.dumps(body), "schema")
    if kind == "wrong_partition":
        partition = draw(st.sampled_from([p for p in range(PARTITIONS) if p != home]))
        return Hostile(topic, partition, key, orjson.dumps(body), "partition")
    if kind == "bad_id":
        field = draw(st.sampled_from(["event_id", "user_id", "room_id"]))
        body[field] = draw(st.sampled_from(_bad_ids + (_reserved if field == "room_id" else [])))
        value = orjson.dumps(body)
        return Hostile(topic, home, key, value, "schema")
    if kind == "future":
        body["ts"] = FAR_AHEAD
        return Hostile(topic, home, key, orjson.dumps(body), "clock")
    return Hostile(topic, home, key, None, "schema")  # no value


@st.composite
def woven(draw: st.DrawFn, session: list[Emitted]) -> list[tuple[int, Emitted]]:
    """Valid records the truth must see: (after which session record, the record)."""
    out = []
    for _ in range(draw(st.integers(5, 30))):
        i = draw(st.integers(0, len(session) - 1))
        rec = session[i]
        if rec.label == "malformed":
            continue
        body = orjson.loads(rec.value)
        what = draw(st.sampled_from(["again", "repeat_payment", "foreign_currency"]))
        if what == "again":  # a producer retry: the very same record
            out.append((i, replace(rec, label="duplicate")))
        elif what == "repeat_payment" and body["type"] == "paid":
            again = {**body, "event_id": f"{body['event_id']}-again"}
            out.append((i, replace(rec, value=orjson.dumps(again), label="repeated_payment",
                                   event_id=again["event_id"])))  # fmt: skip
        elif what == "foreign_currency" and body["type"] == "created":
            odd = {**body, "event_id": f"{body['event_id']}-usd", "currency": "USD"}
            odd["currency"] = "JPY" if body["currency"] == "USD" else "USD"
            out.append((i, replace(rec, value=orjson.dumps(odd), label="foreign_currency",
                                   event_id=odd["event_id"])))  # fmt: skip
    return out


def _write(path: Path, records: list[Recorded]) -> None:
    path.write_bytes(b"".join(r.to_json() + b"\n" for r in records))


async def _dead_letters(pipeline: Pipeline, wanted: set[str], timeout: float = 60) -> dict:
    """fuzz id -> reason, read from the dead-letter topic until every wanted id is there."""
    consumer = AIOKafkaConsumer(
        pipeline.settings.topic_deadletter,
        bootstrap_servers=pipeline.settings.bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    found: dict[str, str] = {}
    try:
        deadline = time.monotonic() + timeout
        while not wanted <= set(found) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    headers = dict(r.headers)
                    if "fuzz" in headers:
                        found[headers["fuzz"].decode()] = headers["reason"].decode()
    finally:
        await consumer.stop()
    return found


def _category(reason: str) -> str:
    return reason.split(":", 1)[0]


def run_example(pipeline: Pipeline, tmp: Path, data: st.DataObject, run: str, stats: dict) -> None:
    seed = data.draw(st.integers(1, 10**6), label="session seed")
    end = pipeline.slot() + 3_600_000
    placement = Placement(end_ms=end, speed=None)
    config = configure(
        placement,
        seed=seed,
        rooms=ROOMS,
        minutes=4,
        rate=25,
        partitions=PARTITIONS,
        incidents=(),
        currencies=("CNY", "JPY", "KWD"),
        duplicate_share=0.01,
        repeated_payment_share=0.1,
        foreign_currency_share=0.05,
    )
    session = list(generate(config))
    prefix = f"fz{run}-{seed}-{stats['examples']}-"
    session = [_rename(r, prefix) for r in session]
    extra = data.draw(woven(session), label="woven in")
    after: dict[int, list[Emitted]] = {}
    for i, rec in extra:
        after.setdefault(i, []).append(rec)
    stream = [x for i, rec in enumerate(session) for x in (rec, *after.get(i, ()))]
    truth = compute_truth(config, stream)
    bodies = [(r.topic, orjson.loads(r.value)) for r in session if r.label == "ok"]
    bad = data.draw(
        st.lists(hostile(bodies), min_size=150, max_size=300),
        label="hostile records",
    )
    names = pipeline.settings.source_topics
    topic_of = dict(zip(TOPICS, names, strict=True))
    # the good stream in its order, the hostile records spread over it
    records = [_recorded(topic_of[r.topic], r) for r in stream]
    slots = data.draw(
        st.lists(st.integers(0, len(records)), min_size=len(bad), max_size=len(bad)),
        label="where",
    )
    fuzz_ids = []
    for n, (h, at) in enumerate(sorted(zip(bad, slots, strict=True), key=lambda x: -x[1])):
        fid = f"{prefix}{n}"
        fuzz_ids.append((fid, h))
        records.insert(
            at,
            Recorded(
                topic_of[h.topic], h.partition, -1, end, h.key, h.value, (("fuzz", fid.encode()),)
            ),
        )
    path = tmp / f"{prefix}hostile.jsonl"
    _write(path, records)
    pipeline.replay(path)
    pipeline.wait_processed()
    close_and_wait(pipeline, truth)
    stats["windows"] += assert_matches_truth(pipeline, truth)
    # every hostile record is a dead letter, with the reason expected of its kind
    letters = asyncio.run(_dead_letters(pipeline, {fid for fid, _ in fuzz_ids}))
    missing = [fid for fid, _ in fuzz_ids if fid not in letters]
    assert not missing, missing[:5]
    for fid, h in fuzz_ids:
        if h.expect is not None:
            assert _category(letters[fid]) == h.expect, (h, letters[fid])
    stats["hostile"] += len(fuzz_ids)
    stats["woven"] += len(extra)
    stats["records"] += len(records)
    stats["bytes"] += sum(len(r.value or b"") for r in records)


def _rename(rec: Emitted, prefix: str) -> Emitted:
    """The session's rooms under a name of this example's own."""
    if rec.label == "malformed" or rec.key is None:
        return rec
    body = orjson.loads(rec.value)
    body["room_id"] = prefix + body["room_id"]
    return replace(rec, key=body["room_id"].encode(), value=orjson.dumps(body))


def _recorded(topic: str, rec: Emitted) -> Recorded:
    partition = partition_of(rec.key, PARTITIONS) if rec.key is not None else 0
    return Recorded(topic, partition, -1, rec.arrival_ms, rec.key, rec.value, ())


STATS = {"records": 0, "hostile": 0, "woven": 0, "windows": 0, "bytes": 0, "examples": 0}


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
def test_hostile_records_become_dead_letters_and_good_traffic_stays_exact(
    livepulse_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    pipeline = livepulse_pipeline(partitions=PARTITIONS)
    worker = pipeline.worker
    assert worker is not None
    started = time.monotonic()
    run = uuid.uuid4().hex[:6]

    @settings(
        max_examples=4,
        deadline=None,
        phases=(Phase.generate,),  # an example costs a session through a worker: no shrinking
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def examples(data: st.DataObject) -> None:
        run_example(pipeline, tmp_path, data, run, STATS)
        STATS["examples"] += 1

    examples()
    # the same worker process served every example, and nothing went wrong inside it
    assert pipeline.worker is worker and worker.poll() is None
    metrics = pipeline.metrics()
    internal = sum(
        v
        for (name, labels), v in metrics.items()
        if (name == "livepulse_events_invalid_total" and ("reason", "internal") in labels)
        or name == "livepulse_envelopes_skipped_total"
    )
    assert internal == 0
    print(
        f"\nhostile: {STATS['examples']} examples, {STATS['records']} records "
        f"({STATS['bytes'] / 1e6:.1f} MB), {STATS['hostile']} hostile, all dead-lettered, "
        f"{STATS['woven']} woven into the good traffic, {STATS['windows']} windows equal to the "
        f"truth; worker up {time.monotonic() - started:.0f} s, pid {worker.pid}"
    )

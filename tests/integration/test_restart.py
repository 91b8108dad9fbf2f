"""A worker killed with SIGKILL mid-stream comes back with exactly the same windows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.core.changelog import MARKER
from streams.core.rooms import RoomRecord
from tests.support import scenario
from tests.support.events import assert_windows_equal
from tests.support.stack import (
    Stack,
    flush_records,
    running_stack,
    send_all,
    wait_closed,
    wait_until,
)


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # its own broker and worker: killing the shared worker would disturb the other tests
    # room states reach the changelog within 0.1 s, offsets are committed only once a minute:
    # a restart must replay envelopes whose effects the recovered state already holds
    with running_stack(
        tmp_path_factory.mktemp("restart"),
        "livepulse-restart",
        changelog_flush_seconds="0.1",
        commit_interval_seconds="60",
    ) as s:
        yield s


async def test_sigkill_and_restart_counts_nothing_twice_and_loses_nothing(
    own_stack: Stack, tmp_path: Path
) -> None:
    stack = own_stack
    room = f"crash-{uuid.uuid4().hex[:8]}"
    base = stack.slot()
    topics = dict(zip(("views", "clicks", "orders"), stack.settings.source_topics, strict=True))
    records = [(topics[k], room.encode(), orjson.dumps(b)) for k, b in scenario.events(room, base)]
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await send_all(producer, records)

        def all_applied() -> bool:
            status, body = stack.get(f"/rooms/{room}")
            return (
                status == 200
                and orjson.loads(body)["late_events"] == 1
                and sum(w["enters"] for w in orjson.loads(body)["windows"]) == 7
            )

        wait_until(all_applied, 30, "the scenario applied", stack)
        await wait_for_changelog(stack, room)
        duplicates_before = _duplicates(stack)
        stack.kill_worker()
        stack.start_worker()
        await send_all(producer, flush_records(stack, base + 30 * 60_000))
        windows = wait_closed(stack, room, 3, timeout=60)
    finally:
        await producer.stop()
    assert_windows_equal(windows, scenario.expected_windows(base))
    detail = stack.json(f"/rooms/{room}")
    assert detail["late_events"] == scenario.EXPECTED_LATE
    assert_windows_equal([detail["session"]], [scenario.expected_session(base)])
    # the new process replayed the uncommitted envelopes and skipped every one of the room's
    # 30 records (the late one included) because the recovered state had applied them
    assert duplicates_before == 0
    assert _duplicates(stack) >= len(records)


def _duplicates(stack: Stack) -> float:
    return sum(
        value
        for (name, labels), value in stack.metrics().items()
        if name == "livepulse_events_duplicate_total" and ("reason", "offset") in labels
    )


async def wait_for_changelog(stack: Stack, room: str) -> None:
    """Until the room's changelog record holds all 30 records and the flush that wrote it is
    complete (its end-of-flush marker follows): only then can a new worker recover it."""
    topic = f"{stack.settings.app_id}-rooms-changelog"
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        complete_in: int | None = None  # the partition holding the complete room state
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for rec in records:
                    if rec.key == room.encode() and rec.value:
                        state = msgspec.msgpack.decode(rec.value, type=RoomRecord)
                        if state.applied == [15, 6, 6] and state.late_events == 1:
                            complete_in = rec.partition
                    elif rec.key == MARKER.encode() and rec.partition == complete_in:
                        return
        raise AssertionError(f"the changelog never caught up\n{stack.tail()}")
    finally:
        await consumer.stop()

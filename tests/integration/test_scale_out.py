"""Scale-out: a second worker takes over a partition; each room is served by its owner only."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.processes import stop
from tests.support.stack import (
    PARTITIONS,
    Stack,
    free_port,
    partition_of,
    running_stack,
    send_all,
    wait_until,
)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    tmp = tmp_path_factory.mktemp("scale")
    with running_stack(tmp, "livepulse-scale") as stack:
        yield stack, tmp


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b"{}"


def _served(url: str, rooms: list[str]) -> set[str]:
    _, body = _get(f"{url}/rooms")
    return {r["room_id"] for r in orjson.loads(body).get("rooms", [])} & set(rooms)


async def test_rooms_move_with_their_partition(one_worker: tuple[Stack, Path]) -> None:
    stack, tmp = one_worker
    base = stack.slot()
    rooms = [f"scale-{uuid.uuid4().hex[:6]}-{i}" for i in range(8)]
    assert {partition_of(r) for r in rooms} == set(range(PARTITIONS))
    views = stack.settings.topic_views
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers)
    await producer.start()
    try:
        events = [
            {
                "event_id": f"{r}-{n}",
                "room_id": r,
                "user_id": f"u{n}",
                "ts": base + n,
                "type": "enter",
            }
            for r in rooms
            for n in range(3)
        ]
        await send_all(producer, [(views, e["room_id"].encode(), orjson.dumps(e)) for e in events])
    finally:
        await producer.stop()
    first = stack.base_url
    wait_until(lambda: _served(first, rooms) == set(rooms), 30, "all rooms on one worker", stack)

    # a second worker joins: the partitions are split, and the first worker still holds the
    # rooms of the partition it gave away in memory
    port = free_port()
    env = {**stack.env, "LIVEPULSE_WEB_PORT": str(port), "LIVEPULSE_STATE_DIR": str(tmp / "s2")}
    with open(tmp / "worker-2.log", "wb") as out:
        second_proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    second = f"http://127.0.0.1:{port}"
    try:

        def owners() -> dict[str, list[int]] | None:
            owned = {
                u: orjson.loads(_get(f"{u}/ready")[1]).get("partitions", [])
                for u in (first, second)
            }
            flat = sorted(p for ps in owned.values() for p in ps)
            return owned if flat == list(range(PARTITIONS)) and all(owned.values()) else None

        owned = wait_until(owners, 90, "the partitions split between the workers", stack)
        expected = {u: {r for r in rooms if partition_of(r) in owned[u]} for u in (first, second)}
        # the newcomer recovers its rooms from the changelog (flushed on revocation)
        wait_until(lambda: _served(second, rooms) == expected[second], 30, "the moved rooms", stack)
        for url in (first, second):
            assert _served(url, rooms) == expected[url]
            exposition = _get(f"{url}/metrics")[1].decode()
            for r in rooms:
                assert (f'room_id="{r}"' in exposition) == (r in expected[url]), (url, r)
                assert _get(f"{url}/rooms/{r}")[0] == (200 if r in expected[url] else 404)
        for r in expected[second]:
            detail = orjson.loads(_get(f"{second}/rooms/{r}")[1])
            assert [w["enters"] for w in detail["windows"]] == [3]
    finally:
        stop(second_proc, 30)

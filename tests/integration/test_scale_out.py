"""Scale-out: a second worker takes over a partition; each room is served by its owner, and
either worker answers for every room (it forwards to the owner) and lists them all."""

from __future__ import annotations

import asyncio
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


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=5
        ) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b"{}"


def _screen_windows(url: str) -> tuple[str, str]:
    """(windows drawn, status line) of a room screen, once it has its data."""
    from tests.support.browser import chromium  # Playwright only for this check

    with chromium() as browser:
        page = browser.page()
        page.goto(url)
        page.wait_for_function("() => document.body.dataset.windows")
        status = page.inner_text("#status")
        assert not browser.errors, browser.errors
        return page.evaluate("document.body.dataset.windows"), status.split(" · ")[1]


def _served_by(url: str) -> str | None:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.headers.get("X-LivePulse-Served-By")


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
                # the owner alone has the room; asked directly (as a forward), the other has not
                local = _get(f"{url}/rooms/{r}", {"X-LivePulse-Forwarded": "1"})[0]
                assert local == (200 if r in expected[url] else 404), (url, r)
        # either worker answers for every room: the owner's own answer, forwarded
        for r in rooms:
            owner = first if r in expected[first] else second
            direct = orjson.loads(_get(f"{owner}/rooms/{r}")[1])
            assert [w["enters"] for w in direct["windows"]] == [3]
            for url in (first, second):
                status, body = _get(f"{url}/rooms/{r}")
                assert status == 200 and orjson.loads(body) == direct, (url, r)
                assert _served_by(f"{url}/rooms/{r}") == (None if url == owner else owner)
                status, page = _get(f"{url}/screen/{r}")
                assert status == 200 and b"<html" in page
        # in Chromium: the first worker shows the screen of a room the second one owns
        moved = sorted(expected[second])[0]
        shown = await asyncio.to_thread(_screen_windows, f"{first}/screen/{moved}")
        assert shown == ("1", f"served by its owner {second}"), shown
        # and either worker's all-rooms page lists every worker's rooms
        for url in (first, second):
            merged = orjson.loads(_get(f"{url}/screen/api/rooms")[1])
            assert {w["url"] for w in merged["workers"]} == {first, second}
            assert not [w for w in merged["workers"] if w["error"]]
            listed = {row["room_id"]: row["worker"] for row in merged["rooms"]}
            assert {r: listed.get(r) for r in rooms} == {
                r: first if r in expected[first] else second for r in rooms
            }
        for r in expected[second]:
            detail = orjson.loads(_get(f"{second}/rooms/{r}")[1])
            assert [w["enters"] for w in detail["windows"]] == [3]
    finally:
        stop(second_proc, 30)

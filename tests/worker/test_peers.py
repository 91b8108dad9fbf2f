"""Any worker answers for any room (streams/worker/screen/peers.py), on fakes: the group's
members are aiohttp test servers, the assignment a dict; no broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.worker.screen import peers as peers_module
from streams.worker.screen.peers import Peers, room_router

TOPIC = "rooms-changelog"


class FakePulse:
    """What Peers reads of the worker: its URL, the assignment, one partition, processors."""

    def __init__(self) -> None:
        self.distribution: dict[str, dict[str, list[int]]] = {}
        self.app = SimpleNamespace(
            conf=SimpleNamespace(canonical_url=""),
            assignor=SimpleNamespace(tables_metadata=lambda: self.distribution),
        )
        self.table = SimpleNamespace(changelog_topic_name=TOPIC)
        self.settings = SimpleNamespace(partitions=1)  # every room in partition 0
        self.processors: dict[int, object] = {}
        self.rows: list[dict] = []


def _member(answer: Callable[[web.Request], web.StreamResponse]) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        return answer(request)

    app = web.Application()
    app.router.add_get("/rooms", handle)
    app.router.add_get("/rooms/{room_id}", handle)
    return app


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


@asynccontextmanager
async def worker(pulse: FakePulse) -> AsyncIterator[tuple[TestClient, Peers]]:
    """This worker: the room router in front of a ``/rooms/{room_id}`` that has no room, the
    merged list, and ``/rooms`` from ``pulse.rows``."""
    peers = Peers(pulse, None)  # type: ignore[arg-type]

    async def no_room(request: web.Request) -> web.Response:
        return _json({"error": "not here"}, 404)

    async def own_rooms(request: web.Request) -> web.Response:
        return _json({"rooms": pulse.rows, "next": None})

    async def merged(request: web.Request) -> web.Response:
        return _json(await peers.all_rooms(request))

    app = web.Application(middlewares=[room_router(pulse, peers)])  # type: ignore[arg-type]
    app.router.add_get("/rooms", own_rooms)
    app.router.add_get("/rooms/{room_id}", no_room)
    app.router.add_get("/screen/api/rooms", merged)
    async with TestClient(TestServer(app)) as client:
        pulse.app.conf.canonical_url = str(client.make_url("")).rstrip("/")
        try:
            yield client, peers
        finally:
            await peers.close()


@asynccontextmanager
async def member(answer: Callable[[web.Request], web.StreamResponse]) -> AsyncIterator[str]:
    async with TestServer(_member(answer)) as server:
        yield str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ([1, 2], "no list of rooms"),
        ({"rooms": "r1"}, "no list of rooms"),
        ({"rooms": [1]}, "a row without a room_id"),
        ({"rooms": [{"gmv": 3}]}, "a row without a room_id"),
        ({"rooms": [{"room_id": 7}]}, "a row without a room_id"),
    ],
)
async def test_a_malformed_peer_answer_is_named_and_the_rest_listed(answer: Any, says: str) -> None:
    pulse = FakePulse()
    pulse.rows = [{"room_id": "mine"}]
    async with member(lambda _: _json(answer)) as peer, worker(pulse) as (client, _):
        pulse.distribution = {peer: {TOPIC: [0]}}
        resp = await client.get("/screen/api/rooms")
        body = await resp.json()
    assert resp.status == 200
    assert [r["room_id"] for r in body["rooms"]] == ["mine"]
    errors = {w["url"]: w["error"] for w in body["workers"]}
    assert says in errors[peer] and errors[pulse.app.conf.canonical_url] is None


async def test_an_answer_larger_than_the_cap_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_module, "MAX_ANSWER_BYTES", 1000)
    pulse = FakePulse()
    rows = [{"room_id": f"room-{i}"} for i in range(100)]
    async with member(lambda _: _json({"rooms": rows})) as peer, worker(pulse) as (client, _):
        pulse.distribution = {peer: {TOPIC: [0]}}
        body = await (await client.get("/screen/api/rooms")).json()
    assert body["rooms"] == []
    assert "larger than 1000 bytes" in {w["url"]: w["error"] for w in body["workers"]}[peer]

"""Any worker answers for any room (streams/worker/screen/peers.py), on fakes: the group's
members are aiohttp test servers, the assignment a dict; no broker."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.worker import web_auth
from streams.worker.screen import peers as peers_module
from streams.worker.screen.peers import Peers, room_router
from tests.support.tls import self_signed

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

    async def rooms_page(self, limit: int, after: str | None) -> dict[str, Any]:
        return {"rooms": [dict(r) for r in self.rows[:limit]], "next": None}


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
async def worker(
    pulse: FakePulse, client_ssl: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[TestClient, Peers]]:
    """This worker: the room router in front of a ``/rooms/{room_id}`` that has no room, and
    the merged list (its own rows, ``pulse.rows``, are read directly: it serves no ``/rooms``).
    With ``client_ssl`` it calls itself an https worker (its canonical URL), while the test
    talks to it over http."""
    peers = Peers(pulse, client_ssl)  # type: ignore[arg-type]

    async def no_room(request: web.Request) -> web.Response:
        return _json({"error": "not here"}, 404)

    async def merged(request: web.Request) -> web.Response:
        return _json(await peers.all_rooms(request))

    app = web.Application(middlewares=[room_router(pulse, peers)])  # type: ignore[arg-type]
    app.router.add_get("/rooms/{room_id}", no_room)
    app.router.add_get("/screen/api/rooms", merged)
    async with TestClient(TestServer(app)) as client:
        own = str(client.make_url("")).rstrip("/")
        pulse.app.conf.canonical_url = own.replace("http:", "https:") if client_ssl else own
        try:
            yield client, peers
        finally:
            await peers.close()


@asynccontextmanager
async def member(
    answer: Callable[[web.Request], web.StreamResponse], tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    server = TestServer(_member(answer))
    await server.start_server(ssl=tls)
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


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


AUTH = {"Authorization": "Basic YWxpY2U6czNjcmV0"}


class Recorder:
    """A member that has every room: answers 200 and keeps the headers it was sent."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.headers: list[dict[str, str]] = []

    def __call__(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        return _json({"room_id": request.match_info.get("room_id")}, self.status)


async def test_over_http_the_forward_carries_no_credentials() -> None:
    pulse, owner = FakePulse(), Recorder()
    async with member(owner) as peer, worker(pulse) as (client, _):
        pulse.distribution = {peer: {TOPIC: [0]}}
        resp = await client.get("/rooms/r1", headers=AUTH)
        assert resp.status == 200 and resp.headers["X-LivePulse-Served-By"] == peer
    assert "Authorization" not in owner.headers[0] and owner.headers[0][peers_module.FORWARDED]


async def test_an_owner_refusing_the_forward_is_a_502_not_a_password_prompt() -> None:
    pulse = FakePulse()
    async with member(Recorder(401)) as peer, worker(pulse) as (client, _):
        pulse.distribution = {peer: {TOPIC: [0]}}
        resp = await client.get("/rooms/r1", headers=AUTH)
        assert resp.status == 502 and "WWW-Authenticate" not in resp.headers
        assert "only over https" in (await resp.json())["error"]


async def test_a_peer_of_another_scheme_is_not_asked() -> None:
    pulse, owner = FakePulse(), Recorder()
    async with member(owner) as peer, worker(pulse) as (client, _):
        pulse.distribution = {peer.replace("http:", "https:"): {TOPIC: [0]}}
        resp = await client.get("/rooms/r1", headers=AUTH)
        assert resp.status == 503 and "not asked" in (await resp.json())["error"]
    assert owner.headers == []


async def test_over_https_credentials_go_only_to_a_peer_with_the_shared_certificate(
    tmp_path: Path,
) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    shared = web_auth.WebConfig(tmp_path / "web.yml", *self_signed(tmp_path / "ours"))
    other = web_auth.WebConfig(tmp_path / "web.yml", *self_signed(tmp_path / "theirs"))
    pulse, owner, impostor = FakePulse(), Recorder(), Recorder()
    async with (
        member(owner, shared.server_context()) as peer,
        member(impostor, other.server_context()) as stranger,
        worker(pulse, shared.client_context) as (client, _),
    ):
        pulse.distribution = {peer: {TOPIC: [0]}}
        resp = await client.get("/rooms/r1", headers=AUTH)
        assert resp.status == 200 and owner.headers[0]["Authorization"] == AUTH["Authorization"]
        pulse.distribution = {stranger: {TOPIC: [0]}}
        resp = await client.get("/rooms/r1", headers=AUTH)
        assert resp.status == 503 and "did not answer" in (await resp.json())["error"]
    assert impostor.headers == []
    # the shared certificate is the only trust anchor: not the system's CAs
    assert shared.client_context.cert_store_stats()["x509"] == 1


async def test_while_a_partition_moves_the_answer_is_503_with_retry_after() -> None:
    pulse = FakePulse()
    async with worker(pulse) as (client, _):
        own = pulse.app.conf.canonical_url
        resp = await client.get("/rooms/r1")  # no owner in the map
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert "has no owner (rebalancing)" in (await resp.json())["error"]
        pulse.distribution = {own: {TOPIC: [0]}}  # ours, not yet restored
        resp = await client.get("/rooms/r1")
        assert resp.status == 503 and "is being recovered here" in (await resp.json())["error"]
        pulse.processors[0] = object()  # ours and served: the room does not exist
        resp = await client.get("/rooms/r1")
        assert resp.status == 404 and (await resp.json())["error"] == "not here"
        async with member(Recorder()) as gone:
            pass  # a member that stopped answering
        pulse.distribution = {gone: {TOPIC: [0]}}
        resp = await client.get("/rooms/r1")
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert f"({gone}) did not answer" in (await resp.json())["error"]


async def test_a_forwarded_request_is_never_forwarded_again() -> None:
    pulse, owner = FakePulse(), Recorder()
    async with member(owner) as peer, worker(pulse) as (client, _):
        pulse.distribution = {peer: {TOPIC: [0]}}
        resp = await client.get("/rooms/r1", headers={peers_module.FORWARDED: "1"})
        assert resp.status == 404
    assert owner.headers == []


async def test_a_room_two_members_list_during_a_rebalance_is_kept_once_from_its_owner() -> None:
    pulse = FakePulse()
    pulse.rows = [{"room_id": "r1", "gmv": "stale"}, {"room_id": "r2", "gmv": "mine"}]
    rows = [{"room_id": "r1", "gmv": "fresh"}]
    answer = _json({"rooms": rows, "next": "r1"})
    async with member(lambda _: answer) as peer, worker(pulse) as (client, _):
        own = pulse.app.conf.canonical_url
        pulse.distribution = {peer: {TOPIC: [0]}, own: {}}
        body = await (await client.get("/screen/api/rooms")).json()
    listed = {r["room_id"]: (r["gmv"], r["worker"]) for r in body["rooms"]}
    assert listed == {"r1": ("fresh", peer), "r2": ("mine", own)}
    assert {w["url"]: w["truncated"] for w in body["workers"]} == {own: False, peer: True}

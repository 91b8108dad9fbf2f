"""Any worker answers for any room: the owner of a room's partition, and forwards to it.

A worker learns its peers from Faust's partition assignor: after every rebalance the group's
leader hands each member the map of every member's web URL (its canonical URL,
``LIVEPULSE_WEB_ADVERTISED_HOST`` and ``LIVEPULSE_WEB_PORT``) to the table partitions it
serves (``assignor.tables_metadata()``). A room's partition is the murmur2 partition of its
id, as the producers place it (:func:`streams.core.partitioner.partition_of`); the rooms
table is co-partitioned with the topics, so the owner of that changelog partition serves it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from streams.core.partitioner import partition_of

if TYPE_CHECKING:
    from streams.worker.app import LivePulse

log = logging.getLogger(__name__)

#: Marks a request one worker sends another: answered from the receiver's own rooms only,
#: so a stale map can never send a request round in circles.
FORWARDED = "X-LivePulse-Forwarded"
#: Rooms one worker's part of the all-rooms page lists at most (one /rooms page).
MAX_ROOMS_PER_WORKER = 5_000
#: How long one merged list of rooms serves every all-rooms page that asks.
MERGED_FRESH_S = 1.0


class Peers:
    """The group's members as this worker last heard of them, and HTTP requests to them."""

    def __init__(self, pulse: LivePulse, client_ssl: ssl.SSLContext | None) -> None:
        self.pulse = pulse
        self.client_ssl = client_ssl
        self._session: aiohttp.ClientSession | None = None
        #: the last merged list: (when, the credentials it was asked with, the task making it)
        self._merged: tuple[float, str | None, asyncio.Task] | None = None

    @property
    def own(self) -> str:
        return str(self.pulse.app.conf.canonical_url).rstrip("/")

    def _distribution(self) -> dict[str, Any]:
        return self.pulse.app.assignor.tables_metadata()

    def owners(self) -> dict[int, str]:
        """Partition of the rooms table -> the web URL of the member serving it."""
        topic = self.pulse.table.changelog_topic_name
        return {
            p: url.rstrip("/")
            for url, topics in self._distribution().items()
            for p in topics.get(topic, ())
        }

    def members(self) -> list[str]:
        """Every member's web URL (this worker's included, also before the first assignment)."""
        return sorted({url.rstrip("/") for url in self._distribution()} | {self.own})

    def partition(self, room_id: str) -> int:
        return partition_of(room_id.encode(), self.pulse.settings.partitions)

    async def get(self, url: str, path: str, request: web.Request) -> tuple[int, bytes, str]:
        """GET ``url + path`` with the caller's credentials; raises OSError when the peer does
        not answer (connection refused, TLS, timeout)."""
        headers = {FORWARDED: "1", "Accept": "application/json"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self._session.get(
                url + path, headers=headers, ssl=self.client_ssl or True
            ) as resp:
                return resp.status, await resp.read(), resp.content_type
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise OSError(str(exc) or type(exc).__name__) from None

    async def close(self, _app: Any = None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the all-rooms page --------------------------------------------------------------
    async def all_rooms(self, request: web.Request) -> dict:
        """Every member's ``/rooms`` rows merged (each row names its ``worker``), and how each
        member answered. A room two members list during a rebalance is kept once, from the
        member the assignment names.

        Pages asking this worker share one merged list for up to :data:`MERGED_FRESH_S` (asked
        with the same credentials): however many browsers watch through this worker, each
        member builds its ``/rooms`` for them once a second at most."""
        auth = request.headers.get("Authorization")
        now = time.monotonic()
        merged = self._merged
        if merged is None or now - merged[0] >= MERGED_FRESH_S or merged[1] != auth:
            merged = (now, auth, asyncio.ensure_future(self._merge(request)))
            self._merged = merged
        return await asyncio.shield(merged[2])

    async def _merge(self, request: web.Request) -> dict:
        members = self.members()
        parts = await asyncio.gather(*(self._rooms_of(url, request) for url in members))
        owners = self.owners()
        rooms: dict[str, dict] = {}
        workers = []
        for url, (rows, error, more) in zip(members, parts, strict=True):
            workers.append({"url": url, "rooms": len(rows), "error": error, "truncated": more})
            for row in rows:
                row["worker"] = url
                seen = rooms.get(row["room_id"])
                if seen is None or owners.get(self.partition(row["room_id"])) == url:
                    rooms[row["room_id"]] = row
        return {"rooms": list(rooms.values()), "workers": workers}

    async def _rooms_of(self, url: str, request: web.Request) -> tuple[list, str | None, bool]:
        try:
            status, body, _ = await self.get(url, f"/rooms?limit={MAX_ROOMS_PER_WORKER}", request)
            if status != 200:
                return [], f"HTTP {status}", False
            page = orjson.loads(body)
            return page["rooms"], None, page.get("next") is not None
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return [], str(exc) or type(exc).__name__, False


def room_router(pulse: LivePulse, peers: Peers) -> Any:
    """An aiohttp middleware: ``GET /rooms/{room_id}`` for a room this worker does not serve is
    answered by the room's owner (the body as the owner sent it, ``X-LivePulse-Served-By``
    naming it). While the partition has no owner, or its owner is still recovering it, the
    answer is 503 with ``Retry-After``: the room exists somewhere, only not yet here."""

    @web.middleware
    async def route(request: web.Request, handler: Any) -> Any:
        response = await handler(request)
        room_id = request.match_info.get("room_id")
        if (
            response.status != 404
            or room_id is None
            or not request.path.startswith("/rooms/")
            or FORWARDED in request.headers
        ):
            return response
        partition = peers.partition(room_id)
        owner = peers.owners().get(partition)
        if owner == peers.own:
            if partition in pulse.processors:
                return response  # served here, and not a room we have
            return _busy(f"partition {partition} of room {room_id!r} is being recovered here")
        if owner is None:
            return _busy(f"partition {partition} of room {room_id!r} has no owner (rebalancing)")
        try:
            status, body, content_type = await peers.get(owner, request.path_qs, request)
        except OSError as exc:
            return _busy(f"the owner of room {room_id!r} ({owner}) did not answer: {exc}")
        return web.Response(
            body=body,
            status=status,
            content_type=content_type,
            headers={"X-LivePulse-Served-By": owner},
        )

    return route


def _busy(message: str) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error": message}),
        status=503,
        content_type="application/json",
        headers={"Retry-After": "1"},
    )

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
from streams.worker.rooms_api import MAX_PAGE

if TYPE_CHECKING:
    from streams.worker.app import LivePulse

log = logging.getLogger(__name__)

#: Marks a request one worker sends another: answered from the receiver's own rooms only,
#: so a stale map can never send a request round in circles.
FORWARDED = "X-LivePulse-Forwarded"
#: How long one merged list of rooms serves every all-rooms page that asks.
MERGED_FRESH_S = 1.0
#: The largest answer read from a peer (a full /rooms page is well below it).
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class BadAnswer(ValueError):
    """A peer answered with something that is not what a LivePulse worker sends."""


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
        """GET ``url + path``; raises OSError when the peer is not asked (another scheme than
        this worker's) or does not answer (connection refused, TLS, timeout).

        The caller's ``Authorization`` goes along only over https, to a peer whose certificate
        verifies against this worker's own ``cert_file`` (:attr:`WebConfig.client_context`):
        a member that merely joined the consumer group cannot collect passwords by
        advertising a URL of its own, and no password crosses the network in the clear."""
        scheme = self.own.partition("://")[0]
        if url.partition("://")[0] != scheme:
            raise OSError(f"not asked: it does not serve {scheme} like this worker")
        headers = {FORWARDED: "1", "Accept": "application/json"}
        if scheme == "https" and "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self._session.get(
                url + path, headers=headers, ssl=self.client_ssl or True
            ) as resp:
                body = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise OSError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
                return resp.status, bytes(body), resp.content_type
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise OSError(str(exc) or type(exc).__name__) from None

    async def close(self, _app: Any = None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the all-rooms page --------------------------------------------------------------
    async def all_rooms(self, request: web.Request) -> dict:
        """Every member's ``/rooms`` rows merged (each row names its ``worker``), how each
        member answered, and ``limit``: the rooms one member lists at most. A room two members
        list during a rebalance is kept once, from the member the assignment names.

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
        return {"rooms": list(rooms.values()), "workers": workers, "limit": MAX_PAGE}

    async def _rooms_of(self, url: str, request: web.Request) -> tuple[list, str | None, bool]:
        """One member's first page of rooms (at most :data:`MAX_PAGE`): this worker's from its
        own rooms directly, the others' over HTTP."""
        if url == self.own:
            page = await self.pulse.rooms_page(MAX_PAGE, None)
            return page["rooms"], None, page["next"] is not None
        try:
            status, body, _ = await self.get(url, f"/rooms?limit={MAX_PAGE}", request)
            if status != 200:
                return [], f"HTTP {status}", False
            rows, more = _rooms_page(orjson.loads(body))
            return rows, None, more
        except (OSError, orjson.JSONDecodeError, BadAnswer) as exc:
            return [], str(exc) or type(exc).__name__, False


def _rooms_page(page: Any) -> tuple[list[dict], bool]:
    """The rows of a ``/rooms`` answer and whether it has more; :class:`BadAnswer` unless it
    has the shape the merge relies on (rows that are objects with a string ``room_id``)."""
    if not isinstance(page, dict) or not isinstance(page.get("rooms"), list):
        raise BadAnswer("malformed /rooms answer: no list of rooms")
    rows = page["rooms"]
    if not all(isinstance(row, dict) and isinstance(row.get("room_id"), str) for row in rows):
        raise BadAnswer("malformed /rooms answer: a row without a room_id")
    return rows, page.get("next") is not None


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
        if status == 401:  # not the browser's to answer: it gave this worker good credentials
            return _error(
                502,
                f"the owner of room {room_id!r} ({owner}) refused the forward: with basic "
                "auth, workers forward only over https (docs/security.md)",
            )
        return web.Response(
            body=body,
            status=status,
            content_type=content_type,
            headers={"X-LivePulse-Served-By": owner},
        )

    return route


def _busy(message: str) -> web.Response:
    return _error(503, message, {"Retry-After": "1"})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error": message}),
        status=status,
        content_type="application/json",
        headers=headers,
    )

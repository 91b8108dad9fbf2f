"""``/rooms`` pages: every room once, in room id order, whatever order the rooms came in and
left, across partitions and restores."""

from __future__ import annotations

import random

import pytest

from streams.core.contract import Ev, Kind
from streams.core.driver import LocalWorker
from streams.worker.rooms_api import rooms_page
from tests.support.events import BASE, CNY, config


async def _pages(worker: LocalWorker, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = await rooms_page(worker.processors, worker.config.room, limit, after)
        pages.append([row["room_id"] for row in page["rooms"]])
        after = page["next"]
        if after is None:
            return pages


@pytest.mark.parametrize("limit", [1, 3, 500])
async def test_pages_list_every_room_once_in_id_order(limit: int) -> None:
    rng = random.Random(limit)
    worker = LocalWorker(3, config(retention=1))
    rooms = [f"room-{rng.randrange(10**6):06d}" for _ in range(40)]
    kinds = ((0, Kind.ENTER, 0), (1, Kind.PRODUCT_CLICK, 0), (2, Kind.ORDER_CREATED, CNY))
    offsets = [0] * 3
    for minute, group in enumerate((rooms[:25], rooms[25:])):  # the first 25 go quiet
        for room in rng.sample(group, len(group)):
            p = rooms.index(room) % 3
            for src, kind, currency in kinds:
                ts = BASE + minute * 240_000
                ev = Ev(src, offsets[src], ts, room, int(kind), "u", 0, "p", 0, 0, currency)
                offsets[src] += 1
                worker.apply(p, [ev])
    living = {room for p in worker.processors for room in p.rooms}
    assert len(living) < len(set(rooms))  # some expired
    pages = await _pages(worker, limit)
    flat = [room for page in pages for room in page]
    assert flat == sorted(living)
    assert all(len(page) <= limit for page in pages) and len(pages) == -(-len(living) // limit)
    worker.flush()
    for p in range(3):
        worker.restart(p)
    assert [room for page in await _pages(worker, limit) for room in page] == sorted(living)

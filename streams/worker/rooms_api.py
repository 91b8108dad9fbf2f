"""The ``/rooms`` index: a page of rooms by room id, the one definition its HTTP handler and
the all-rooms screen's merge (:mod:`streams.worker.screen.peers`) both use."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable
from itertools import islice
from typing import Any

from streams.core.processor import PartitionProcessor
from streams.core.rooms import RoomConfig, RoomState
from streams.core.sparkline import gmv_sparkline

#: /rooms page sizes: the default, and the most one request may ask for.
PAGE, MAX_PAGE = 500, 5_000


def parse_page(query: Any) -> tuple[int, str | None]:
    """``(limit, after)`` of a /rooms request, or ValueError with what is wrong."""
    raw = query.get("limit", str(PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}, not {raw[:40]!r}")
    return int(raw), query.get("after") or None


async def rooms_page(
    partitions: Iterable[PartitionProcessor], config: RoomConfig, limit: int, after: str | None
) -> dict[str, Any]:
    """The partitions' rooms after ``after`` by room id, at most ``limit``; ``next`` is the
    ``after`` of the following page (None on the last). Each partition keeps its room ids
    sorted, so a page merges them from ``after`` on and costs its rows, not every room."""
    merged = heapq.merge(*(p.rooms_after(after) for p in partitions), key=_room_id)
    states = list(islice(merged, limit + 1))
    size = config.size_ms
    more = len(states) > limit
    rows = []
    for i, state in enumerate(states[:limit], 1):
        last, current = state.last_closed(), state.current_open()
        rows.append(
            {
                "room_id": state.room_id,
                "currency": state.currency_code,
                "gmv_sparkline": gmv_sparkline(state, size),
                "late_events": state.late_events,
                "alerts": [] if state.detector is None else state.detector.firing(),
                "last_closed": None if last is None else state.describe(last, size),
                "open": None if current is None else state.describe(current, size),
                "session": state.session(),
                "rolling": state.rolling(config),
            }
        )
        if i % 50 == 0:
            await asyncio.sleep(0)  # a big page must not hold up the agent
    return {"rooms": rows, "next": rows[-1]["room_id"] if more else None}


def _room_id(state: RoomState) -> str:
    return state.room_id

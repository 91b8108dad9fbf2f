"""A room's recent GMV as a compact series, for the all-rooms page's sparklines."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.core.rooms import RoomState

#: Closed windows a sparkline covers.
SPARK_WINDOWS = 30


def gmv_sparkline(state: RoomState, size_ms: int, n: int = SPARK_WINDOWS) -> dict | None:
    """``{"end": ms, "gmv_cents": [n ints]}``: GMV of the ``n`` windows ending at the room's
    last closed window (``end`` is its window_end), oldest first, 0 for windows without data
    or before the room's first; None before the room has a closed window."""
    last = state.last_closed()
    if last is None:
        return None
    first = last.start - (n - 1) * size_ms
    values = [0] * n
    for w in state.closed:
        if w.start >= first:
            values[(w.start - first) // size_ms] = w.counts.gmv_cents
    return {"end": last.start + size_ms, "gmv_cents": values}

"""Comparing a real worker's rooms with a simulated session's independently computed truth."""

from __future__ import annotations

import math

from streams.core.funnel import COUNT_FIELDS, DERIVED_FIELDS
from streams.testing import Pipeline, wait_until

# exact counts; unique_viewers (an HLL estimate) is compared with a tolerance
COUNTS = tuple(name for name in COUNT_FIELDS if name != "unique_viewers")
DERIVED = DERIVED_FIELDS


def late_events(pipeline: Pipeline) -> dict[str, int]:
    return {r["room_id"]: r["late_events"] for r in pipeline.rooms()}


def assert_matches_truth(
    pipeline: Pipeline, truth: dict, late_before: dict[str, int] | None = None
) -> int:
    """Every truth window is closed on the worker with the same numbers; returns the count."""
    config = truth["config"]
    session_start = config["end_ms"] - int(config["minutes"] * 60_000)
    first = session_start - session_start % config["window_ms"]
    by_room: dict[str, list[dict]] = {}
    for w in truth["windows"]:
        by_room.setdefault(w["room_id"], []).append(w)
    for room, expected in by_room.items():
        detail = pipeline.room(room)
        assert detail is not None, room
        # rooms keep earlier sessions' windows (same room names, earlier event time)
        got = {
            w["window_start"]: w
            for w in detail["windows"]
            if w["closed"] and w["window_start"] >= first
        }
        starts = [w["window_start"] for w in expected]
        assert sorted(got) == starts, (
            room,
            "missing",
            sorted(set(starts) - set(got)),
            "extra",
            sorted(set(got) - set(starts)),
            "open",
            [w["window_start"] for w in detail["windows"] if not w["closed"]],
        )
        for want in expected:
            have = got[want["window_start"]]
            for name in COUNTS:
                assert have[name] == want[name], (room, want["window_start"], name)
            # HLL: exact in its list mode, within 2 % beyond
            assert abs(have["unique_viewers"] - want["unique_viewers"]) <= max(
                0.02 * want["unique_viewers"], 0
            ), (room, want["window_start"])
            for name in DERIVED:
                if want[name] is None:
                    assert have[name] is None, (room, want["window_start"], name)
                else:
                    assert math.isclose(have[name], want[name], rel_tol=1e-9, abs_tol=1e-12), (
                        room,
                        want["window_start"],
                        name,
                        have[name],
                        want[name],
                    )
        late = detail["late_events"] - (late_before or {}).get(room, 0)
        assert late == truth["late_by_room"].get(room, 0), room
    return len(truth["windows"])


def close_and_wait(pipeline: Pipeline, truth: dict) -> None:
    """Move every watermark past the session, then wait for each room's last window."""
    config = truth["config"]
    pipeline.close_windows(after_ms=config["end_ms"] + config["window_ms"] + config["grace_ms"])
    last = {w["room_id"]: w["window_start"] for w in truth["windows"]}

    def closed() -> bool:
        return all(
            any(w["window_start"] == start for w in pipeline.closed_windows(room))
            for room, start in last.items()
        )

    wait_until(closed, 60, "every room's last window to close", pipeline.log)

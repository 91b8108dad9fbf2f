"""Simulated sessions through a real worker equal their independently computed ground truth."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from streams.funnel import COUNT_FIELDS, DERIVED_FIELDS
from streams.simulate import Placement, configure, write_file
from streams.simulator import compute_truth, generate
from streams.testing import Pipeline, wait_until

DATA = Path(__file__).parents[1] / "data"
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
        assert sorted(got) == [w["window_start"] for w in expected], room
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


def test_recorded_session_matches_its_truth(livepulse_pipeline: Callable[..., Pipeline]) -> None:
    truth = orjson.loads((DATA / "session.truth.json").read_bytes())
    pipeline = livepulse_pipeline(partitions=truth["config"]["partitions"])
    counts = pipeline.replay(DATA / "session.jsonl")
    assert sum(counts.values()) == truth["totals"]["emitted"]
    pipeline.wait_processed()
    close_and_wait(pipeline, truth)
    assert assert_matches_truth(pipeline, truth) == len(truth["windows"]) > 30
    assert truth["late"] and truth["malformed"] and truth["incidents"]
    invalid = sum(
        v for (name, _), v in pipeline.metrics().items() if name == "livepulse_events_invalid_total"
    )
    assert invalid == len(truth["malformed"])


@pytest.mark.parametrize("seeds", [(11, 12, 13)])
def test_truth_equals_worker_for_several_seeds(
    livepulse_pipeline: Callable[..., Pipeline], tmp_path: Path, seeds: tuple[int, ...]
) -> None:
    pipeline = livepulse_pipeline(partitions=3)
    end = pipeline.slot() + 3_600_000  # sessions one after another, each closed before the next
    checked = 0
    for seed in seeds:
        placement = Placement(end_ms=end, speed=None)
        config = configure(
            placement,
            seed=seed,
            rooms=4,
            minutes=5,
            rate=12,
            late_share=0.01,
            malformed_share=0.005,
            partitions=3,
            incidents=("payment_outage",),
        )
        path = tmp_path / f"seed-{seed}.jsonl"
        write_file(config, placement, pipeline.settings, path)
        truth = compute_truth(config, generate(config))
        before = late_events(pipeline)
        pipeline.replay(path)
        pipeline.wait_processed()
        close_and_wait(pipeline, truth)
        checked += assert_matches_truth(pipeline, truth, before)
        end += 3_600_000
    assert checked > 30

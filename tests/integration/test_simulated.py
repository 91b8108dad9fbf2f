"""Simulated sessions through a real worker equal their independently computed ground truth."""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from pathlib import Path

import orjson
import pytest

from streams.sim import SimConfig, compute_truth, generate
from streams.sim.publish import Placement, configure, write_file
from streams.testing import Pipeline
from tests.support.truth import (
    assert_index_serves_the_blocks,
    assert_matches_truth,
    close_and_wait,
)

DATA = Path(__file__).parents[1] / "data"


def test_recorded_session_matches_its_truth(livepulse_pipeline: Callable[..., Pipeline]) -> None:
    truth = orjson.loads((DATA / "session.truth.json").read_bytes())
    pipeline = livepulse_pipeline(partitions=truth["config"]["partitions"])
    counts = pipeline.replay(DATA / "session.jsonl")
    assert sum(counts.values()) == truth["totals"]["emitted"]
    pipeline.wait_processed()
    close_and_wait(pipeline, truth)
    assert assert_matches_truth(pipeline, truth) == len(truth["windows"]) > 30
    assert_index_serves_the_blocks(pipeline)
    assert truth["late"] and truth["malformed"] and truth["incidents"]
    invalid = sum(
        v for (name, _), v in pipeline.metrics().items() if name == "livepulse_events_invalid_total"
    )
    assert invalid == len(truth["malformed"])


@pytest.mark.parametrize("seeds", [(11, 12, 13)])
def test_truth_equals_worker_for_several_seeds(
    livepulse_pipeline: Callable[..., Pipeline], tmp_path: Path, seeds: tuple[int, ...]
) -> None:
    """Sessions of the same rooms one after another, 30 minutes apart (closer than the
    retention, so no room is forgotten in between): a room's online count, rolling and session
    blocks carry on from the sessions before, so each truth covers all of them."""
    pipeline = livepulse_pipeline(partitions=3)
    end = pipeline.slot() + 3_600_000
    checked = 0
    sessions: list[SimConfig] = []
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
        sessions.append(config)
        path = tmp_path / f"seed-{seed}.jsonl"
        write_file(config, placement, pipeline.settings, path)
        truth = compute_truth(config, chain.from_iterable(generate(c) for c in sessions))
        pipeline.replay(path)
        pipeline.wait_processed()
        close_and_wait(pipeline, truth)
        checked += assert_matches_truth(pipeline, truth)
        end += 1_800_000
    assert checked > 30

"""The recorded session of tests/data is what the simulator and the truth give today."""

from __future__ import annotations

from tests.support.recorded_session import RECORDS, TRUTH, build


def test_the_recorded_session_and_its_truth_are_regenerated() -> None:
    records, truth = build()
    assert records == RECORDS.read_bytes(), "the generator changed the recorded session"
    assert truth == TRUTH.read_bytes(), (
        "tests/data/session.truth.json is stale: "
        "run .venv/bin/python -m tests.support.recorded_session"
    )

"""The worker's side of the ingest process: settings out, status lines in (no broker)."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.settings import Settings
from streams.worker.ingest_process import Counts, IngestProcess, settings_payload
from streams.worker.metrics import PipelineMetrics


def test_the_child_gets_the_same_settings_secrets_included() -> None:
    settings = Settings(
        broker="kafka://a:1;kafka://b:2",
        sasl_password="s3cret",  # type: ignore[arg-type]
        state_dir=Path("/tmp/x"),
        rolling_windows=(3, 10),  # type: ignore[arg-type]
        detector={"min_enters": 7},  # type: ignore[arg-type]
    )
    again = Settings(**orjson.loads(settings_payload(settings)))
    assert again == settings
    assert again.sasl_password is not None
    assert again.sasl_password.get_secret_value() == "s3cret"


def test_counts_start_again_from_zero_once_taken() -> None:
    counts = Counts()
    counts.read("views", 0, {})  # a step that read nothing is nothing to report
    assert not counts
    counts.read("views", 5, {"json": 1})
    counts.read("views", 2, {"json": 1, "schema": 1})
    counts.retried()
    assert counts
    assert counts.take() == {
        "consumed": {"views": 7},
        "invalid": {"views": {"json": 2, "schema": 1}},
        "retries": 1,
    }
    assert not counts and counts.take() == {"consumed": {}, "invalid": {}, "retries": 0}


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_status_lines_become_the_workers_counters_and_state() -> None:
    registry = CollectorRegistry()
    ingest = IngestProcess(Settings(), PipelineMetrics(registry))
    assert not ingest.ready.is_set() and ingest.broker_up
    for line in (
        {"ready": True, "broker_up": True, "lag": [["views", 0, 12]], "consumed": {"views": 3},
         "invalid": {"views": {"json": 1}, "orders": {"schema": 2}}, "retries": 0},
        {"ready": True, "broker_up": False, "lag": [["views", 0, 2], ["orders", 1, 0]],
         "consumed": {"views": 4}, "invalid": {}, "retries": 2},
    ):  # fmt: skip
        ingest._status(orjson.dumps(line) + b"\n")
    got = _samples(registry)
    assert got[("livepulse_events_consumed_total", (("topic", "views"),))] == 7
    invalid = "livepulse_events_invalid_total"
    assert got[(invalid, (("reason", "json"), ("topic", "views")))] == 1
    assert got[(invalid, (("reason", "schema"), ("topic", "orders")))] == 2
    assert got[("livepulse_ingest_retries_total", ())] == 2
    assert ingest.ready.is_set() and not ingest.broker_up
    assert ingest.consumer_lag() == {("views", 0): 2, ("orders", 1): 0}


def test_an_unreadable_status_line_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    ingest = IngestProcess(Settings(), PipelineMetrics(CollectorRegistry()))
    with caplog.at_level(logging.WARNING):
        for line in (b"{not json\n", b'{"ready": true}\n', b"[1, 2]\n"):
            ingest._status(line)
    assert len(caplog.records) == 3
    assert all("unreadable status line" in r.getMessage() for r in caplog.records)
    assert not ingest.ready.is_set()

"""A broker outage survived: the worker says so once when the broker is lost and once when it
is back, shows it in /ready and /metrics, does not spin, and its windows come out exact, with
no event counted late because of the outage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.processes import cpu_seconds
from streams.testing import Pipeline, running_pipeline, wait_until
from tests.support.faults import (
    broker_behind_proxy,
    end_session_and_wait,
    log_lines,
    replayable,
    write_recording,
)
from tests.support.truth import assert_matches_truth

PARTITIONS = 2
OUTAGE_S = 20


def _late_closed(pipeline: Pipeline) -> float:
    return sum(
        v
        for (name, labels), v in pipeline.metrics().items()
        if name == "livepulse_events_late_total" and ("reason", "closed") in labels
    )


@pytest.mark.slow
def test_a_20_second_outage_mid_stream_leaves_the_windows_exact(tmp_path: Path) -> None:
    with (
        broker_behind_proxy(tmp_path) as kafka,
        running_pipeline(
            tmp_path,
            kafka.url,
            partitions=str(PARTITIONS),
            idle_timeout_seconds="30",  # the default: the idle rule is live
        ) as pipeline,
    ):
        every, truth, topics = replayable(
            pipeline, PARTITIONS, seed=7, rooms=3, minutes=4, rate=500, incidents=()
        )
        first = [r for r in every if r.topic != topics["views"]]
        backlog = [r for r in every if r.topic == topics["views"]]
        pipeline.replay(write_recording(tmp_path / "first.jsonl", first))
        pipeline.wait_processed()
        # a backlog on one topic, and the broker goes away while the worker reads it
        pipeline.replay(write_recording(tmp_path / "backlog.jsonl", backlog))
        assert pipeline.worker is not None
        worker = pipeline.worker
        kafka.proxy.cut()
        cut_at = time.monotonic()
        cpu_before = cpu_seconds(worker.pid)
        # the worker notices: /ready says no, /metrics says broker down (HTTP still answers)
        wait_until(lambda: pipeline.get("/ready")[0] == 503, 15, "/ready to say 503", pipeline.log)
        down = pipeline.metrics()[("livepulse_broker_up", ())]
        assert down == 0
        health = pipeline.json("/health")
        assert health == {"alive": True, "broker_up": False}
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        cpu_during = cpu_seconds(worker.pid) - cpu_before
        kafka.proxy.heal()
        healed_at = time.monotonic()
        wait_until(lambda: pipeline.get("/ready")[0] == 200, 90, "/ready again", pipeline.log)
        print(f"\noutage {healed_at - cut_at:.1f} s; ready {time.monotonic() - healed_at:.1f} s "
              f"after; worker CPU during the outage {cpu_during:.2f} s")  # fmt: skip
        end_session_and_wait(pipeline, truth)  # the consumer may start again mid-batch
        assert assert_matches_truth(pipeline, truth) == len(truth["windows"]) > 10
        assert _late_closed(pipeline) == 0
        # the same process all along, which did not spin while it waited
        assert pipeline.worker is worker and worker.poll() is None
        assert cpu_during < 0.3 * OUTAGE_S, f"{cpu_during:.1f} s of CPU in a {OUTAGE_S} s outage"
        assert pipeline.metrics()[("livepulse_broker_up", ())] == 1
        lost = log_lines(pipeline.log, "broker unreachable")
        back = log_lines(pipeline.log, "broker reachable again")
        assert len(lost) == 1 and len(back) == 1, (lost, back)
        print(lost[0].split("] ", 3)[-1])
        print(back[0].split("] ", 3)[-1])

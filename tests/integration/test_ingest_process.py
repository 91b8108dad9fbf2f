"""The ingest stage's own process: killed, it is started again and no event is lost or counted
twice; it ends with its worker, however the worker ends."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from streams.processes import alive, tree
from streams.testing import Pipeline, poll, running_pipeline, wait_until
from tests.support.faults import (
    end_session_and_wait,
    ingest_pid,
    log_lines,
    replayable,
    write_recording,
)
from tests.support.truth import assert_matches_truth, close_and_wait

PARTITIONS = 2


def _consumed(pipeline: Pipeline) -> float:
    return sum(
        v
        for (name, _), v in pipeline.metrics().items()
        if name == "livepulse_events_consumed_total"
    )


def test_an_ingest_process_killed_mid_stream_is_started_again_and_no_event_is_lost(
    tmp_path: Path,
) -> None:
    # small fetches: the second half takes hundreds of steps, so the kill lands between them
    with running_pipeline(
        tmp_path, partitions=str(PARTITIONS), ingest_max_records="50"
    ) as pipeline:
        assert pipeline.worker is not None
        worker = pipeline.worker
        every, truth, _ = replayable(
            pipeline, PARTITIONS, seed=11, rooms=3, minutes=3, rate=300, incidents=()
        )
        half = len(every) // 2
        pipeline.replay(write_recording(tmp_path / "first.jsonl", every[:half]))
        pipeline.wait_processed()
        first = ingest_pid(worker.pid)
        assert first is not None, "the worker has no ingest process"
        before = _consumed(pipeline)
        pipeline.replay(write_recording(tmp_path / "second.jsonl", every[half:]))
        wait_until(lambda: _consumed(pipeline) > before, 30, "the second half to be read")
        os.kill(first, signal.SIGKILL)
        at_kill = _consumed(pipeline) - before
        # the worker notices, says so once, and starts another; meanwhile it stays up
        second = poll(lambda: (p := ingest_pid(worker.pid)) != first and p, 60)
        assert second, f"no new ingest process\n{pipeline.tail()}"
        end_session_and_wait(pipeline, truth)
        assert assert_matches_truth(pipeline, truth) == len(truth["windows"]) > 5
        assert worker.poll() is None and pipeline.worker is worker
        exited = log_lines(pipeline.log, "ingest process exited")
        assert len(exited) == 1, exited
        print(f"\nkilled after {at_kill:.0f} of {len(every) - half} records; {exited[0]}")


def test_the_ingest_process_ends_with_its_worker(tmp_path: Path) -> None:
    with running_pipeline(tmp_path, partitions=str(PARTITIONS)) as pipeline:
        assert pipeline.worker is not None
        child = ingest_pid(pipeline.worker.pid)
        assert child is not None, "the worker has no ingest process"
        pipeline.stop_worker(signal.SIGKILL)  # no clean-up in the worker at all
        gone = poll(lambda: not alive(child), 30)
        assert gone, f"ingest process {child} outlived its killed worker"


def test_without_its_own_process_the_ingest_stage_runs_in_the_worker(tmp_path: Path) -> None:
    with running_pipeline(tmp_path, partitions=str(PARTITIONS), ingest_process="false") as pipeline:
        assert pipeline.worker is not None
        assert tree(pipeline.worker.pid) == [pipeline.worker.pid]
        every, truth, _ = replayable(pipeline, PARTITIONS, seed=12, rooms=2, minutes=2, rate=200)
        pipeline.replay(write_recording(tmp_path / "all.jsonl", every))
        pipeline.wait_processed()
        close_and_wait(pipeline, truth)
        assert assert_matches_truth(pipeline, truth) == len(truth["windows"]) > 3

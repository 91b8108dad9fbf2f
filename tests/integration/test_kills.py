"""SIGKILL at seeded random moments of a simulated session, restarts in between, and every
closed window equal to the truth.

The moments are of three kinds: while the worker reads and applies (anywhere in a stretch of
the session), while a flush waits for a broker that stalls (the applied envelopes are not yet
durable, so only the durability rule keeps the counts exact), and while a restarted worker is
still reading its changelog back. Every restart reads the changelog again: the first ones with
the memory store (from the start), the later ones with RocksDB (its state directory holds a
prefix of the changelog, the worker reads the tail).
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from streams.testing import Pipeline, poll, running_pipeline, wait_until
from tests.support.faults import broker_behind_proxy, replayable, write_recording
from tests.support.proxy import Proxy
from tests.support.truth import assert_matches_truth, close_and_wait

PARTITIONS = 2
SEED = 20261202
#: the kill moments, in order; the store each restart after them uses
#: (the first RocksDB start reads the whole changelog and is killed doing so: the next one
#: finds a prefix in its state directory and reads the rest)
KILLS = (
    ("applying", "memory"),
    ("flush", "memory"),
    ("recovery", "memory"),
    ("recovery", "rocksdb"),
    ("flush", "rocksdb"),
    ("applying", "rocksdb"),
)
#: the link's speed while a restarted worker is to be killed in its recovery (bytes/s), so
#: that the reading lasts long enough to be caught in the act
SLOW_LINK = 200_000
#: the link's speed while a stretch that is to end in a stalled flush is written and read
#: (bytes/s per direction of a connection)
PACED_LINK = 400_000
#: stalls tried per stalled-flush kill (each one waits 10 s for the flush to hang)
STALL_TRIES = 5


def _metric(pipeline: Pipeline, name: str) -> float:
    return sum(v for (n, _), v in pipeline.metrics().items() if n == name)


def _processed(pipeline: Pipeline) -> float:
    return sum(pipeline.processed().values())


def _kill(pipeline: Pipeline) -> None:
    assert pipeline.worker is not None and pipeline.worker.poll() is None, pipeline.tail()
    pipeline.kill_worker()


def _written(pipeline: Pipeline) -> float:
    return _metric(pipeline, "livepulse_changelog_records_written_total")


def _far_enough(pipeline: Pipeline, upto: float) -> None:
    """Until this process has handled ``upto`` records and made some of them durable (a
    restarted worker reads its uncommitted records again: without a flush of its own, a kill
    would only repeat the previous one)."""

    def done() -> bool:
        return _processed(pipeline) >= upto and _written(pipeline) > 0

    wait_until(done, 60, f"{upto:.0f} records and a flush", pipeline.log)


def _kill_while_applying(pipeline: Pipeline, upto: float) -> str:
    _far_enough(pipeline, upto)
    done, written = _processed(pipeline), _written(pipeline)
    _kill(pipeline)
    return f"applying, {done:.0f} records processed, {written:.0f} room records durable"


def _kill_in_a_stalled_flush(pipeline: Pipeline, proxy: Proxy, upto: float) -> str:
    """Once ``upto`` records are handled, the broker stalls (connections open, nothing
    forwarded) while envelopes are applied and not acked: the next flush hangs with them in
    memory only; kill then. A flush that completes between the look and the stall leaves
    nothing to catch: the link is healed (paced again) and the next envelopes are tried."""
    wait_until(lambda: _processed(pipeline) >= upto, 60, f"{upto:.0f} records", pipeline.log)

    def unacked() -> float:
        return _metric(pipeline, "livepulse_envelopes_unacked")

    def stuck() -> float:
        return _metric(pipeline, "livepulse_changelog_flush_in_progress") == 1 and unacked()

    for _ in range(STALL_TRIES):
        wait_until(unacked, 60, "envelopes applied and not acked", pipeline.log)
        proxy.stall()
        caught = poll(stuck, 10)
        if caught:
            _kill(pipeline)
            proxy.heal()
            return f"in a stalled flush covering {caught:.0f} unacked envelopes"
        proxy.heal()
        proxy.throttle(PACED_LINK)
    raise AssertionError(f"no flush caught on the stalled broker in {STALL_TRIES} tries")


def _kill_in_recovery(pipeline: Pipeline, proxy: Proxy) -> str:
    """Restart on a slow link, and kill once the changelog is partly read back."""
    proxy.throttle(SLOW_LINK)
    try:
        return _kill_reading(pipeline)
    finally:
        proxy.heal()


def _kill_reading(pipeline: Pipeline) -> str:
    pipeline.start_worker(wait=False)

    def reading() -> float:
        try:
            m = pipeline.metrics()
        except OSError:  # not listening yet
            return 0.0
        if m.get(("livepulse_recovery_in_progress", ())) != 1:
            return 0.0
        restored = m.get(("livepulse_changelog_records_restored_total", ()), 0.0)
        left = m.get(("livepulse_recovery_remaining_records", ()), 0.0)
        return restored and left and (restored, left)

    restored, left = wait_until(reading, 120, "the changelog being read back", pipeline.log)
    _kill(pipeline)
    return f"in recovery, {restored:.0f} changelog records read back, {left:.0f} to go"


@pytest.mark.slow
def test_kills_at_random_moments_leave_every_window_exact(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    with (
        broker_behind_proxy(tmp_path) as kafka,
        running_pipeline(
            tmp_path,
            kafka.url,
            partitions=str(PARTITIONS),
            changelog_flush_seconds="1",  # a flush covers a second of applied envelopes
            commit_interval_seconds="5",
        ) as pipeline,
    ):
        every, truth, _ = replayable(
            pipeline, PARTITIONS, seed=SEED, rooms=400, minutes=6, rate=300
        )
        # a stretch of the session per kill and one after the last
        cuts = sorted(rng.sample(range(1, len(every)), len(KILLS)))
        stretches = [every[a:b] for a, b in zip([0, *cuts], [*cuts, len(every)], strict=True)]
        moments = []
        for n, ((kind, store), stretch) in enumerate(zip(KILLS, stretches[:-1], strict=True)):
            path = write_recording(tmp_path / f"stretch-{n}.jsonl", stretch)
            # records this worker process has handled (its counters start at its start)
            upto = rng.uniform(0.05, 0.95) * len(stretch)
            if kind == "flush":
                # the stretch is still arriving, over a paced link, when the broker stalls: a
                # worker that had applied and flushed all of it would leave nothing to catch
                kafka.proxy.throttle(PACED_LINK)  # healed after the kill
                with ThreadPoolExecutor(1) as writer:
                    written = writer.submit(pipeline.replay, path)
                    moments.append(_kill_in_a_stalled_flush(pipeline, kafka.proxy, upto))
                    written.result()
            else:
                pipeline.replay(path)
                moments.append(_kill_while_applying(pipeline, upto))
            pipeline.env["LIVEPULSE_STORE"] = store
            if kind == "recovery":
                moments.append(_kill_in_recovery(pipeline, kafka.proxy))
            pipeline.start_worker()
        pipeline.replay(write_recording(tmp_path / "last.jsonl", stretches[-1]))
        # the flush events follow every record in each topic-partition: once the last windows
        # close, everything before them was read
        close_and_wait(pipeline, truth)
        compared = assert_matches_truth(pipeline, truth)
        assert compared == len(truth["windows"]) > 1000
        assert pipeline.worker is not None and pipeline.worker.poll() is None
        kills = len(moments)
        print(f"\n{kills} kills survived, {compared} room windows equal to the truth; killed:")
        print("\n".join(f"  {n + 1}. {moment}" for n, moment in enumerate(moments)))

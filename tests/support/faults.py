"""Pieces the fault tests share: a broker behind a proxy, simulated sessions and their truth,
and reading a worker's CPU time and log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.commands.recording import Recorded
from streams.core.partitioner import partition_of
from streams.processes import alive, tree
from streams.settings import Settings
from streams.sim import Emitted, SimConfig, compute_truth, generate
from streams.sim.publish import Placement, configure
from streams.testing import Pipeline, free_port
from streams.worker import broker
from tests.support.proxy import Proxy, running_proxy
from tests.support.truth import close_and_wait


@dataclass
class BrokerBehindProxy:
    url: str  # what clients use: the proxy
    proxy: Proxy


@contextlib.contextmanager
def broker_behind_proxy(tmp: Path) -> Iterator[BrokerBehindProxy]:
    """The embedded broker on one port, advertising the proxy's port in front of it."""
    direct, front = free_port(), free_port()
    settings = Settings(broker=f"kafka://127.0.0.1:{direct}")
    with (
        broker.embedded(settings, log=tmp / "broker.log", advertised_port=front),
        running_proxy(front, direct) as proxy,
    ):
        yield BrokerBehindProxy(f"kafka://127.0.0.1:{front}", proxy)


def session(
    end_ms: int, partitions: int, **fields: object
) -> tuple[SimConfig, list[Emitted], dict]:
    """A simulated session that ends at ``end_ms``, its records and its truth."""
    config = configure(Placement(end_ms=end_ms, speed=None), partitions=partitions, **fields)
    records = list(generate(config))
    return config, records, compute_truth(config, records)


def recorded(records: list[Emitted], topics: dict[str, str], partitions: int) -> list[Recorded]:
    return [
        Recorded(
            topics[r.topic],
            partition_of(r.key, partitions) if r.key is not None else 0,
            -1,
            r.arrival_ms,
            r.key,
            r.value,
            (),
        )
        for r in records
    ]


def replayable(
    pipeline: Pipeline, partitions: int, **fields: object
) -> tuple[list[Recorded], dict, dict[str, str]]:
    """A simulated session that ends an hour after the pipeline's slot, as records of its
    source topics, its truth, and the topic of each kind (views, clicks, orders)."""
    _, records, truth = session(pipeline.slot() + 3_600_000, partitions, **fields)
    topics = dict(zip(("views", "clicks", "orders"), pipeline.settings.source_topics, strict=True))
    return recorded(records, topics, partitions), truth, topics


def write_recording(path: Path, records: list[Recorded]) -> Path:
    path.write_bytes(b"".join(r.to_json() + b"\n" for r in records))
    return path


def log_lines(path: Path, needle: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if needle in line]


def ingest_pid(worker_pid: int) -> int | None:
    """The worker's ingest process (None while it has none)."""
    for pid in tree(worker_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"streams.worker.ingest_process" in cmdline and alive(pid):
            return pid
    return None


_COUNTERS = (
    "livepulse_consumer_lag_records",
    "livepulse_events_consumed_total",
    "livepulse_events_applied_total",
    "livepulse_events_duplicate_total",
    "livepulse_envelopes_skipped_total",
    "livepulse_envelopes_read_back_total",
    "livepulse_broker_up",
    "livepulse_ingest_retries_total",
)


def pipeline_counters(pipeline: Pipeline) -> str:
    """The ingest stage's and the agent's counters, and who runs the ingest stage now: where
    events stopped, for a failure message."""
    lines = [f"ingest process: {ingest_pid(pipeline.worker.pid) if pipeline.worker else None}"]
    for (name, labels), value in sorted(pipeline.metrics().items()):
        if name in _COUNTERS:
            lines.append(f"{name}{dict(labels)} {value}")
    return "\n".join(lines)


def end_session_and_wait(pipeline: Pipeline, truth: dict) -> None:
    """After a fault: the end-of-session records, then every replayed event and every room's
    last window; if events stop, the failure carries :func:`pipeline_counters`.

    The records go out first, as live traffic would keep coming. A consumer that starts again
    after a fault (a new ingest process, a group joined again after an outage) starts from the
    committed offsets, which may lie inside a source partition's last batch; the embedded
    broker reports a partition's end as that batch's first offset + 1 and serves nothing past
    such an offset until more is written (in CI once: no event for 100 s, once for 120 s).
    """
    try:
        close_and_wait(pipeline, truth)
        pipeline.wait_processed()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipeline_counters(pipeline)}") from None

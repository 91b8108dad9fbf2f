"""The shared worker's harness for the integration tests: a broker, a worker, their topics.

A worker needs several seconds to join its consumer groups, so tests share it. They stay
apart by event time: each test takes its own hour of event time (a "slot"), later than every
earlier test's, and closes its windows by sending flush events to every topic-partition.
The harness itself is the package's pytest plugin, :mod:`streams.testing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from aiokafka import AIOKafkaProducer

from streams import testing
from streams.testing import Pipeline, free_port, running_pipeline

T = TypeVar("T")
__all__ = ["free_port"]

PARTITIONS = 2

#: The shared worker's test harness (streams.testing.Pipeline, with its event-time slots).
Stack = Pipeline


def partition_of(key: str) -> int:
    return testing.partition_of(key.encode(), PARTITIONS)


def wait_until(
    condition: Callable[[], T], timeout: float, what: str, stack: Stack | None = None
) -> T:
    return testing.wait_until(condition, timeout, what, stack.log if stack else None)


@contextlib.contextmanager
def running_stack(tmp: Path, app_id: str, **overrides: str) -> Iterator[Stack]:
    """An embedded broker with its topics, and one worker process, ready."""
    started = time.monotonic()
    with running_pipeline(tmp, app_id=app_id, partitions=str(PARTITIONS), **overrides) as s:
        print(f"\nworker ready {time.monotonic() - started:.1f} s after the broker started")
        yield s


def flush_records(stack: Stack, at_ms: int) -> list[tuple[str, bytes, bytes]]:
    """One event per topic and partition at ``at_ms``: moves every partition's watermark there."""
    return stack.flush_records(at_ms)


async def send_all(
    producer: AIOKafkaProducer, records: list[tuple[str, bytes | None, bytes]]
) -> None:
    futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
    await asyncio.gather(*futures)


def closed_windows(stack: Stack, room: str) -> list[dict]:
    return stack.closed_windows(room)


def wait_closed(stack: Stack, room: str, count: int, timeout: float = 30) -> list[dict]:
    """The room's closed windows, once there are ``count`` of them."""

    def ready() -> list[dict] | None:
        windows = closed_windows(stack, room)
        return windows if len(windows) == count else None

    return wait_until(ready, timeout, f"{count} closed windows of {room}", stack)

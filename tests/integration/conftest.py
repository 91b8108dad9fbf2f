"""Fixtures of the integration tests: one embedded broker and one real worker process for
the whole session (:mod:`tests.support.stack`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaProducer

from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack"), "livepulse-test") as s:
        yield s


@pytest.fixture(scope="session")
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers, acks="all")
    await prod.start()
    yield prod
    await prod.stop()

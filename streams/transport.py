"""Faust's Kafka transport with a bounded fetch wait for the agent's consumer.

Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` hard-coded
(``faust/transport/drivers/aiokafka.py``, ``_create_worker_consumer``), and no setting
reaches it. A broker may hold a fetch that long when a partition has nothing new; the
embedded broker holds it even when records arrive meanwhile, which put up to 1.5 s between
an envelope and the agent. The ingest stage already bounds its own fetches
(``LIVEPULSE_INGEST_FETCH_MS``); this bounds the agent's with ``LIVEPULSE_AGENT_FETCH_MS``.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher, which comes next.
        consumer._fetch_max_wait_ms = self.app.livepulse_fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    """A Faust app whose agent consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.livepulse_fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)

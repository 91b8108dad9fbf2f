"""The agent consumer never lets a fetch drain partitions that its filter then drops.

See ``streams/worker/transport.py``: Faust passes its live set of active partitions to aiokafka, and
aiokafka reads an empty set as "all partitions". The race is driven here by a fetch that
pauses partitions while it is in flight, as the end of recovery does from the other thread.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from streams.worker.transport import _Consumer

CHANGELOG = TP("livepulse-rooms-changelog", 0)
ENVELOPES = TP("livepulse.batches", 0)


def _consumer(cls: type) -> Any:
    consumer = object.__new__(cls)
    consumer.app = SimpleNamespace(client_only=False)
    consumer.flow_active = True
    consumer.not_waiting_next_records = asyncio.Event()
    consumer._active_partitions = {CHANGELOG}
    consumer._paused_partitions = {ENVELOPES}
    prefetched = {CHANGELOG: ["changelog record"], ENVELOPES: ["envelope 0", "envelope 1"]}

    async def getmany(active_partitions: set[TP], timeout: float) -> dict[TP, list[str]]:
        # recovery ends meanwhile: Faust pauses the changelog partition in its set...
        consumer.pause_partitions([CHANGELOG])
        await asyncio.sleep(0)
        # ...and aiokafka's fetched_records() then drains what the set names, or all if empty
        return {
            tp: r
            for tp, r in prefetched.items()
            if not active_partitions or tp in active_partitions
        }

    consumer._getmany = getmany
    return consumer


async def test_a_fetch_returns_only_partitions_its_filter_keeps() -> None:
    records, active = await _consumer(_Consumer)._wait_next_records(timeout=0.1)
    assert records == {CHANGELOG: ["changelog record"]}  # the envelopes stay prefetched
    assert set(records) <= active  # so Consumer.getmany yields every record it drained


async def test_faust_unmended_drains_the_paused_envelopes_and_filters_them_out() -> None:
    # the bug the override exists for; if a Faust release fixes it, this test says so
    records, active = await FaustConsumer._wait_next_records(_consumer(_Consumer), timeout=0.1)
    assert ENVELOPES in records
    assert ENVELOPES not in active

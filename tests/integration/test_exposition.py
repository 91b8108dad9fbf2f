"""The live /metrics scrape passes promtool's lint, with room series in it."""

from __future__ import annotations

import subprocess
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from tests.support import scenario
from tests.support.promtool import promtool
from tests.support.stack import Stack, flush_records, send_all, wait_closed


async def test_scrape_passes_promtool_check_metrics(
    stack: Stack, producer: AIOKafkaProducer
) -> None:
    tool = promtool()
    room = f"lint-{uuid.uuid4().hex[:8]}"
    base = stack.slot()
    topics = dict(zip(("views", "clicks", "orders"), stack.settings.source_topics, strict=True))
    await send_all(
        producer,
        [
            (topics[kind], room.encode(), orjson.dumps(body))
            for kind, body in scenario.events(room, base)
        ],
    )
    await send_all(producer, flush_records(stack, base + 30 * 60_000))
    wait_closed(stack, room, 3)

    status, body = stack.get("/metrics")
    assert status == 200
    assert (
        f'livepulse_room_window_conversion_ratio{{room_id="{room}",window="closed"}}'.encode()
        in body
    )
    proc = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()

"""Contender "textbook": the Faust app a newcomer writes first, for comparison.

One ``faust.Record`` per event, one agent per source topic, and a tumbling windowed table
updated for every event (``counts[f"{room}|{type}"] += 1``, plus GMV for paid orders) — the
pattern from the Faust documentation. Every update is a changelog write and every record is
a Faust message: that per-message cost is what LivePulse's batched design avoids.

Run as its own worker process, configured by environment variables::

    BENCH_TEXTBOOK_BROKER=kafka://127.0.0.1:9092 BENCH_TEXTBOOK_WEB_PORT=6067 \
        python -m bench.textbook worker -l warning

``GET /progress`` returns ``{"events": n}``: events processed so far.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Optional

import faust

from bench.load import CLICKS, ORDERS, VIEWS


class ViewEvent(faust.Record, serializer="json"):
    event_id: str
    room_id: str
    user_id: str
    ts: int
    type: str
    watch_ms: Optional[int] = None  # noqa: UP045 - Faust reads the annotation itself


class ClickEvent(faust.Record, serializer="json"):
    event_id: str
    room_id: str
    user_id: str
    ts: int
    type: str
    product_id: str = ""


class OrderEvent(faust.Record, serializer="json"):
    event_id: str
    room_id: str
    user_id: str
    ts: int
    type: str
    order_id: str = ""
    product_id: str = ""
    quantity: int = 0
    amount_cents: int = 0
    currency: str = ""


app = faust.App(
    os.environ.get("BENCH_TEXTBOOK_APP_ID", "bench-textbook"),
    broker=os.environ.get("BENCH_TEXTBOOK_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    datadir=os.environ.get("BENCH_TEXTBOOK_DATADIR", "bench-textbook-data"),
    web_port=int(os.environ.get("BENCH_TEXTBOOK_WEB_PORT", "6067")),
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
    topic_partitions=int(os.environ.get("BENCH_TEXTBOOK_PARTITIONS", "4")),
    broker_rebalance_timeout=3,
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    consumer_auto_offset_reset="earliest",
    key_serializer="raw",
    autodiscover=False,
)

views = app.topic(VIEWS, key_type=bytes, value_type=ViewEvent)
clicks = app.topic(CLICKS, key_type=bytes, value_type=ClickEvent)
orders = app.topic(ORDERS, key_type=bytes, value_type=OrderEvent)

# Event time = the record timestamp, which the benchmark sets to the event's ``ts``.
counts = (
    app.Table("textbook-counts", default=int)
    .tumbling(60, expires=timedelta(hours=1))
    .relative_to_stream()
)

processed = 0


@app.agent(views)
async def count_views(stream: Any) -> None:
    global processed
    async for ev in stream:
        counts[f"{ev.room_id}|{ev.type}"] += 1
        processed += 1


@app.agent(clicks)
async def count_clicks(stream: Any) -> None:
    global processed
    async for ev in stream:
        counts[f"{ev.room_id}|{ev.type}"] += 1
        processed += 1


@app.agent(orders)
async def count_orders(stream: Any) -> None:
    global processed
    async for ev in stream:
        counts[f"{ev.room_id}|{ev.type}"] += 1
        if ev.type == "paid":
            counts[f"{ev.room_id}|gmv_cents"] += ev.amount_cents
        processed += 1


@app.page("/progress")
async def progress(web: Any, request: Any) -> Any:
    """Events processed; ``ready`` once the group has assigned this worker its partitions
    and the table is recovered (the benchmark writes the input then)."""
    ready = (
        bool(app.assignor.assigned_actives())
        and not app.rebalancing
        and not app.tables.recovery.in_recovery
    )
    return web.json({"events": processed, "ready": ready})


if __name__ == "__main__":
    app.main()

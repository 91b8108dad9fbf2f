"""The in-stream detector inside a real worker: alert events on live.alerts, in /rooms and
/metrics, and the same events as the detector computes from the session's true windows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import orjson
from aiokafka import AIOKafkaConsumer

from streams.core.detector import DetectorState, decode_alert, on_close
from streams.core.funnel import Counts
from streams.sim import compute_truth, generate
from streams.sim.publish import Placement, configure, write_file
from streams.sim.sessions import plan_session
from streams.testing import Pipeline
from tests.support.truth import assert_matches_truth, close_and_wait

SCHEMA = orjson.loads(
    (Path(__file__).parents[2] / "schemas" / "live.alerts.schema.json").read_bytes()
)


def expected_alerts(truth: dict, pipeline: Pipeline) -> dict[str, list[dict]]:
    """What the detector says about each room's true windows (and products), judged at once."""
    by_room: dict[str, list[SimpleNamespace]] = {}
    for w in truth["windows"]:
        counts = Counts(**{name: w[name] for name in Counts.__struct_fields__})
        # what the stock-out test reads: product id -> (clicks, orders created)
        products = {
            p["product_id"]: (p["product_clicks"], p["orders_created"])
            for p in w["products"]
            if p["product_clicks"] or p["orders_created"]
        }
        by_room.setdefault(w["room_id"], []).append(
            SimpleNamespace(start=w["window_start"], counts=counts, products=products)
        )
    size = pipeline.settings.window_ms
    out = {}
    for room, windows in by_room.items():
        _, events = on_close(pipeline.settings.detector, DetectorState(), room, windows, size)
        out[room] = [orjson.loads(e.encode()) for e in events]
    return out


async def read_alerts(pipeline: Pipeline, want: int) -> list[tuple[bytes, dict]]:
    """Every record of the alerts topic, once at least ``want`` have arrived."""
    consumer = AIOKafkaConsumer(
        pipeline.settings.topic_alerts,
        auto_offset_reset="earliest",
        bootstrap_servers=pipeline.settings.bootstrap_servers,
    )
    await consumer.start()
    found: list[tuple[bytes, dict]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(found) < want and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found += [(r.key, orjson.loads(r.value)) for r in records]
    finally:
        await consumer.stop()
    return found


def test_worker_alerts_equal_the_detector_on_true_windows(
    livepulse_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    pipeline = livepulse_pipeline(partitions=2)
    placement = Placement(end_ms=pipeline.slot() + 3_600_000, speed=None)
    # Seed 2: a payment outage in room-0001 from minute 10, after the baseline has formed.
    config = configure(
        placement,
        seed=2,
        rooms=2,
        minutes=20,
        rate=200,
        late_share=0.01,
        malformed_share=0.002,
        partitions=2,
        incidents=("payment_outage",),
    )
    path = tmp_path / "outage.jsonl"
    write_file(config, placement, pipeline.settings, path)
    truth = compute_truth(config, generate(config))
    expected = expected_alerts(truth, pipeline)
    (incident,) = truth["incidents"]
    firing = [e for e in expected[incident["room_id"]] if e["state"] == "firing"]
    # the simulator's tail halves a room's audience within a minute: an audience_loss there,
    # by its definition
    tail_start = {p.room_id: config.bounds()[1] - p.tail_ms for p in plan_session(config)}
    lost = [e for e in firing if e["kind"] == "audience_loss"]
    assert all(e["window_end"] > tail_start[incident["room_id"]] for e in lost)
    firing = [e for e in firing if e not in lost]
    assert [e["kind"] for e in firing] == ["payment_trouble"]
    assert firing[0]["window_end"] > incident["start_ms"]

    pipeline.replay(path)
    pipeline.wait_processed()
    close_and_wait(pipeline, truth)
    assert_matches_truth(pipeline, truth)

    want = sum(len(events) for events in expected.values())
    got = asyncio.run(read_alerts(pipeline, want))
    by_room: dict[str, list[dict]] = {}
    for key, event in got:
        jsonschema.validate(event, SCHEMA)
        assert key == event["room_id"].encode()
        assert decode_alert(orjson.dumps(event)).room_id == event["room_id"]
        by_room.setdefault(event["room_id"], []).append(event)
    assert by_room == {room: events for room, events in expected.items() if events}

    # the room's current state, in the JSON API and in /metrics
    metrics = pipeline.metrics()
    for room, events in expected.items():
        # the last event of each (kind, product) says whether that alert is still firing
        last = {(e["kind"], e["product_id"]): e["state"] for e in events}
        active = {kind for (kind, _), state in last.items() if state == "firing"}
        detail = pipeline.room(room)
        assert detail is not None
        assert {a["kind"] for a in detail["alerts"]} == active, room
        for kind in ("payment_trouble", "traffic_cut", "conversion_drop"):
            key = ("livepulse_room_alert_active", (("kind", kind), ("room_id", room)))
            assert metrics.get(key) == (1.0 if kind in active else None), (room, kind)
    for kind in ("payment_trouble", "traffic_cut", "conversion_drop"):
        for state in ("firing", "resolved"):
            key = ("livepulse_alerts_total", (("kind", kind), ("state", state)))
            count = sum(
                1
                for events in expected.values()
                for e in events
                if e["kind"] == kind and e["state"] == state
            )
            assert metrics.get(key, 0) == count, (kind, state)

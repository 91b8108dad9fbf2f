"""End to end on the embedded broker and a real worker: exact windows, /metrics, dead letters."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support import scenario
from tests.support.events import assert_windows_equal
from tests.support.stack import (
    PARTITIONS,
    Stack,
    flush_records,
    partition_of,
    send_all,
    wait_closed,
    wait_until,
)


def metric(m: dict, name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


async def test_hand_computed_windows_via_rooms_and_metrics(
    stack: Stack, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    room = f"hand-{uuid.uuid4().hex[:8]}"
    base = stack.slot()
    views, clicks, orders = stack.settings.source_topics
    before = stack.metrics()

    # the valid events go through the real `livepulse produce` command
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(body) for _, body in scenario.events(room, base)))
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "produce", str(events)],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sent 30 events" in proc.stdout

    # two invalid records in the room's own partition, then flush every partition
    bad_json = b'{"event_id": "x1", "room_id": "' + room.encode() + b'", "ts": '
    bad_schema = orjson.dumps(
        {
            "event_id": "x2",
            "room_id": room,
            "user_id": "u",
            "ts": base,
            "type": "paid",
            "order_id": "o9",
            "product_id": "p",
            "quantity": 0,
            "amount_cents": 1,
            "currency": "CNY",
        }
    )
    await send_all(
        producer, [(orders, room.encode(), bad_json), (orders, room.encode(), bad_schema)]
    )
    await send_all(producer, flush_records(stack, base + 30 * 60_000))

    windows = wait_closed(stack, room, 3)
    assert_windows_equal(windows, scenario.expected_windows(base))
    detail = stack.json(f"/rooms/{room}")
    assert detail["room_id"] == room
    assert_windows_equal([detail["session"]], [scenario.expected_session(base)])
    rolling = detail["rolling"]["5"]
    assert rolling["current"]["windows"] == 3 and rolling["current"]["viewers"] == 5
    assert rolling["previous"]["windows"] == 0 and rolling["change"]["enters"] is None
    assert detail["late_events"] == scenario.EXPECTED_LATE
    assert [w["closed"] for w in detail["windows"]] == [True, True, True]

    listed = {r["room_id"]: r for r in stack.rooms()}
    assert listed[room]["last_closed"]["window_start"] == base + 120_000
    assert listed[room]["open"] is None
    assert listed[room]["session"] == detail["session"]
    assert listed[room]["rolling"] == detail["rolling"]

    # the same last closed window, as Prometheus sees it
    after = stack.metrics()
    closed = {"room_id": room, "window": "closed"}
    money = {**closed, "currency": "CNY"}
    last = scenario.expected_closed_windows(base)[2]
    assert metric(after, "livepulse_room_window_enters", **closed) == last["enters"]
    assert metric(after, "livepulse_room_window_orders_paid", **closed) == last["orders_paid"]
    assert metric(after, "livepulse_room_window_gmv", **money) == last["gmv_cents"] / 100
    assert (
        metric(after, "livepulse_room_window_conversion_ratio", **closed) == last["conversion_rate"]
    )
    assert (
        metric(after, "livepulse_room_window_order_growth_ratio", **closed) == last["order_growth"]
    )
    assert metric(after, "livepulse_room_window_gmv_growth_ratio", **closed) == last["gmv_growth"]
    assert metric(after, "livepulse_room_window_gmv_per_thousand_enters", **money) == last["gpm"]
    assert metric(after, "livepulse_room_window_average_order_value", **money) == last["aov"]
    assert (
        metric(after, "livepulse_room_window_start_timestamp_seconds", **closed)
        == (base + 120_000) / 1000
    )
    assert metric(after, "livepulse_room_window_viewers", **closed) == 1
    assert metric(after, "livepulse_room_window_buyers", **closed) == 1
    assert metric(after, "livepulse_room_window_online_viewers", **closed) == 6
    assert metric(after, "livepulse_room_window_uv_value", **money) == 30.0
    assert metric(after, "livepulse_room_session_viewers", room_id=room) == 5
    product = {"room_id": room, "product_id": "p2", "currency": "CNY"}
    assert metric(after, "livepulse_product_window_gmv", **product) == 30.0
    # no impressions in that window: the enter ratio has no sample rather than 0 or NaN
    assert metric(after, "livepulse_room_window_enter_ratio", **closed) is None
    assert metric(after, "livepulse_room_window_enters", room_id=room, window="open") is None
    assert metric(after, "livepulse_room_late_events_total", room_id=room) == 1
    # running totals for PromQL rates: the sums over the room's windows
    windows = scenario.expected_closed_windows(base)
    for field, name in (("enters", "enters"), ("orders_paid", "orders_paid")):
        total = sum(w[field] for w in windows)
        assert metric(after, f"livepulse_room_{name}_total", room_id=room) == total
    gmv = sum(w["gmv_cents"] for w in windows) / 100
    assert metric(after, "livepulse_room_gmv_total", room_id=room, currency="CNY") == gmv
    assert detail["currency"] == "CNY"

    def delta(name: str, **labels: str) -> float:
        return (metric(after, name, **labels) or 0) - (metric(before, name, **labels) or 0)

    assert delta("livepulse_events_invalid_total", topic=orders, reason="json") == 1
    assert delta("livepulse_events_invalid_total", topic=orders, reason="schema") == 1
    assert delta("livepulse_events_late_total", topic=views, reason="grace") == 1
    assert delta("livepulse_events_consumed_total", topic=views) == 16 + 2
    assert delta("livepulse_events_consumed_total", topic=clicks) == 7 + 2
    assert delta("livepulse_events_consumed_total", topic=orders) == 7 + 2 + 2
    assert delta("livepulse_windows_closed_total") >= 3
    assert not any(
        "user_id" in dict(labels) or "u5" in dict(labels).values() for _, labels in after
    )

    # both bad records are in the dead-letter topic, unchanged, with the reason
    dead = await read_dead_letters(stack, room)
    assert sorted(d["value"] for d in dead) == sorted([bad_json, bad_schema])
    for d in dead:
        assert d["key"] == room.encode()
        assert d["headers"]["source_topic"] == orders
        assert int(d["headers"]["source_offset"]) >= 0
    reasons = sorted(d["headers"]["reason"].split(":")[0] for d in dead)
    assert reasons == ["json", "schema"]


async def read_dead_letters(stack: Stack, room: str) -> list[dict]:
    consumer = AIOKafkaConsumer(
        stack.settings.topic_deadletter,
        auto_offset_reset="earliest",
        bootstrap_servers=stack.settings.bootstrap_servers,
    )
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(found) < 2 and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if r.key == room.encode():
                        found.append(
                            {
                                "key": r.key,
                                "value": r.value,
                                "headers": {k: v.decode() for k, v in r.headers},
                            }
                        )
    finally:
        await consumer.stop()
    return found


def _room_in_partition(stem: str, partition: int) -> str:
    n = 0
    while partition_of(f"{stem}-{n}") != partition:
        n += 1
    return f"{stem}-{n}"


def _session(room_prefix: str, base: int, seed: int = 11) -> list[tuple[int, dict]]:
    """Events for three rooms over five windows, with out-of-order and late ones, per topic."""
    rng = random.Random(seed)
    # room i lives in partition i % PARTITIONS in every run: lateness is judged per partition,
    # so runs compare only when the same rooms share the same partition logs
    names = [_room_in_partition(f"{room_prefix}-{i}", i % PARTITIONS) for i in range(3)]
    out = []
    types = {
        0: ["impression", "enter", "enter", "leave"],
        1: ["product_impression", "product_click"],
        2: ["created", "paid", "paid", "refunded"],
    }
    for src in range(3):
        t = base
        for i in range(150):
            t += rng.randrange(0, 4000)
            ts = t - rng.choice([0, 0, 0, 2000, 4500, 9000])
            type_ = rng.choice(types[src])
            body = {
                "event_id": f"{room_prefix}-{src}-{i}",
                "room_id": names[rng.randrange(3)],
                "user_id": f"u{rng.randrange(40)}",
                "ts": max(ts, base),
                "type": type_,
            }
            if type_ == "leave":
                body["watch_ms"] = rng.randrange(100_000)
            if src == 1:
                body["product_id"] = "p1"
            if src == 2:
                body.update(
                    order_id=f"o{i}",
                    product_id="p1",
                    quantity=1,
                    amount_cents=rng.randrange(100, 10_000),
                    currency="CNY",
                )
            out.append((src, body))
    return out


async def _replay_in_topic_order(
    stack: Stack, producer: AIOKafkaProducer, events: list[tuple[int, dict]], order: list[int]
) -> None:
    """Send one whole topic at a time, and wait until the worker has consumed it."""
    for src in order:
        topic = stack.settings.source_topics[src]
        records = [
            (topic, body["room_id"].encode(), orjson.dumps(body)) for s, body in events if s == src
        ]
        key = ("livepulse_events_consumed_total", (("topic", topic),))
        before = stack.metrics().get(key, 0)
        await send_all(producer, records)
        target = before + len(records)
        wait_until(
            lambda key=key, target=target: stack.metrics().get(key, 0) >= target,
            30,
            f"{topic} consumed",
            stack,
        )


async def test_topic_interleaving_gives_identical_closed_windows(
    stack: Stack, producer: AIOKafkaProducer
) -> None:
    results = []
    for order in ([0, 1, 2], [2, 1, 0]):
        base = stack.slot()
        prefix = f"mix-{uuid.uuid4().hex[:6]}"
        events = _session(prefix, base)
        await _replay_in_topic_order(stack, producer, events, order)
        await send_all(producer, flush_records(stack, base + 30 * 60_000))
        rooms = sorted({body["room_id"] for _, body in events})

        def all_closed(rooms: list[str] = rooms) -> bool:
            return (
                all(
                    (d := stack.json(f"/rooms/{r}")) and all(w["closed"] for w in d["windows"])
                    for r in rooms
                )
                if all(stack.get(f"/rooms/{r}")[0] == 200 for r in rooms)
                else False
            )

        wait_until(all_closed, 30, "every window closed", stack)
        run = {}
        for r in rooms:
            d = stack.json(f"/rooms/{r}")
            shifted = [
                {
                    **w,
                    "window_start": w["window_start"] - base,
                    "window_end": w["window_end"] - base,
                    "online_peak_at": w["online_peak_at"] - base,  # every window has a second
                }
                for w in d["windows"]
            ]
            run[r.removeprefix(prefix).rsplit("-", 1)[0]] = (d["late_events"], shifted)
        results.append(run)
    first, second = results
    assert first == second
    assert sum(late for late, _ in first.values()) > 0  # the input does exercise lateness
    assert sum(len(ws) for _, ws in first.values()) >= 9


def test_unknown_room_is_a_404(stack: Stack) -> None:
    status, body = stack.get("/rooms/no-such-room")
    assert status == 404
    # the owner's word (a room of another worker's partition is forwarded, not a 404)
    assert orjson.loads(body)["error"] == "no room 'no-such-room'"

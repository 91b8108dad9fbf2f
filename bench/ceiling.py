"""Contender "ceiling": a plain aiokafka consumer that only reads and JSON-decodes.

It runs in its own process so its CPU time and peak RSS are its own, not the benchmark
driver's (which holds a million records in memory). It serves ``GET /progress`` (``{"events":
n, "ready": bool}``) as the textbook app does, so the driver times it the same way as the
other contenders (:func:`bench.run.measure_backlog`); it reads until stopped.

    python -m bench.ceiling --bootstrap 127.0.0.1:9092 --port 6070
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.load import SOURCE_TOPICS


async def consume(bootstrap: str, partitions: int, port: int) -> None:
    """Read every source record from the beginning, for as long as the process runs."""
    state = {"events": 0, "ready": False}

    async def progress(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(state), content_type="application/json")

    server = web.Application()
    server.router.add_get("/progress", progress)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        # Manual assignment: no group join.
        tps = [TopicPartition(t, p) for t in SOURCE_TOPICS for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loads = orjson.loads
        await consumer.getmany(timeout_ms=100)  # a fetch answered: ready for input
        state["ready"] = True
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=100_000)
            for records in batches.values():
                for rec in records:
                    loads(rec.value)
                state["events"] += len(records)
    finally:
        await consumer.stop()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--port", type=int, required=True, help="Serve GET /progress here.")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(consume(args.bootstrap, args.partitions, args.port))


if __name__ == "__main__":
    main()

"""Contender "ceiling": a plain aiokafka consumer that only reads and JSON-decodes.

It runs in its own process so its CPU time and peak RSS are its own, not the benchmark
driver's (which holds a million records in memory). Prints one JSON object on stdout
(or to ``--out``).

    python -m bench.ceiling --bootstrap 127.0.0.1:9092 --expected 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.load import SOURCE_TOPICS


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def consume(bootstrap: str, expected: int, partitions: int, timeout_s: float) -> dict:
    """Read every source record from the beginning; time from the first fetch to the last."""
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
        # Manual assignment: no group join, whose wait would be counted as reading time.
        tps = [TopicPartition(t, p) for t in SOURCE_TOPICS for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loads = orjson.loads
        seen = 0
        started = time.perf_counter()
        cpu0 = _cpu()
        while seen < expected:
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"read {seen} of {expected} records in {timeout_s} s")
            batches = await consumer.getmany(timeout_ms=500, max_records=100_000)
            for records in batches.values():
                for rec in records:
                    loads(rec.value)
                seen += len(records)
        seconds = time.perf_counter() - started
        cpu = _cpu() - cpu0
    finally:
        await consumer.stop()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "events": seen,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_kb / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--out", type=Path, help="Write the JSON here instead of stdout.")
    args = parser.parse_args()
    result = orjson.dumps(
        asyncio.run(consume(args.bootstrap, args.expected, args.partitions, args.timeout))
    )
    if args.out is None:
        sys.stdout.write(result.decode() + "\n")
    else:
        args.out.write_bytes(result)


if __name__ == "__main__":
    main()

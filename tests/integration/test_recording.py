"""`livepulse record` / `livepulse replay` round trips on the embedded broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from streams.worker import broker
from tests.support.stack import Stack


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def comparable(path: Path, topic_names: dict[str, str]) -> list[tuple]:
    """Records without offsets, topics renamed to their role, in per-partition order."""
    out = []
    for r in lines(path):
        r["topic"] = topic_names[r["topic"]]
        r.pop("offset")
        out.append(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return sorted(out)  # the file interleaves partitions freely; order within one is kept


async def test_record_replay_record_gives_the_same_records(stack: Stack, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    a, b, c = (f"rt-{run}-{n}" for n in "abc")
    await broker.ensure_topics(stack.settings, {a: 2, b: 2, c: 2})
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers)
    await producer.start()
    try:
        sent = [
            await producer.send(
                a,
                f"v{i}".encode(),
                key=f"k{i % 5}".encode(),
                headers=[("h", f"{i}".encode())],
                timestamp_ms=1_700_000_000_000 + i,
            )
            for i in range(300)
        ]
        sent.append(
            await producer.send(
                a,
                b"\xff\x00binary",
                key=None,
                partition=1,
                headers=[("bin", b"\xfe")],
                timestamp_ms=1_700_000_001_000,
            )
        )
        sent.append(
            await producer.send(
                a, None, key=b"tombstone", partition=0, timestamp_ms=1_700_000_002_000
            )
        )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    first, second, third = tmp_path / "1.jsonl", tmp_path / "2.jsonl", tmp_path / "3.jsonl"
    proc = cli(stack, "record", "--topic", a, "--out", str(first))
    assert proc.returncode == 0, proc.stderr
    assert "recorded 302 records" in proc.stdout
    recorded = lines(first)
    assert {(r["partition"], r["offset"]) for r in recorded} == {
        (m.partition, m.offset) for m in [s.result() for s in sent]
    }
    binary = next(r for r in recorded if r["key"] is None)
    assert binary["value"] == {"base64": "/wBiaW5hcnk="}
    assert binary["headers"] == [["bin", {"base64": "/g=="}]]
    assert next(r for r in recorded if r["key"] == "tombstone")["value"] is None

    proc = cli(stack, "replay", str(first), "--map", f"{a}={b}")
    assert proc.returncode == 0, proc.stderr
    assert f"replayed 302 records ({b} 302)" in proc.stdout
    assert cli(stack, "record", "-t", b, "-o", str(second)).returncode == 0
    assert cli(stack, "replay", str(second), "--map", f"{b}={c}", "--speed", "1000").returncode == 0
    assert cli(stack, "record", "-t", c, "-o", str(third)).returncode == 0

    roles = {a: "t", b: "t", c: "t"}
    assert comparable(first, roles) == comparable(second, roles) == comparable(third, roles)
    # per partition, the order is the recorded one
    for p in (0, 1):
        assert [r["value"] for r in lines(first) if r["partition"] == p] == [
            r["value"] for r in lines(third) if r["partition"] == p
        ]


def test_replay_into_an_unknown_topic_fails_in_one_line(stack: Stack, tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_bytes(
        orjson.dumps(
            {
                "topic": "nope",
                "partition": 0,
                "offset": 0,
                "timestamp": 1,
                "key": None,
                "value": "x",
                "headers": [],
            }
        )
        + b"\n"
    )
    proc = cli(stack, "replay", str(f), "--topic-prefix", f"missing-{uuid.uuid4().hex[:6]}-")
    assert proc.returncode == 2
    assert "unknown topic(s): missing-" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_record_an_unknown_topic_fails_in_one_line(stack: Stack, tmp_path: Path) -> None:
    proc = cli(stack, "record", "-t", "no-such-topic", "-o", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2
    assert "unknown topic(s): no-such-topic" in proc.stderr
    assert "Traceback" not in proc.stderr

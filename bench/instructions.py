"""Instructions per event of the worker's pure stages, counted by valgrind: a figure that other
processes on a shared machine cannot move, unlike CPU seconds.

``python -m bench.instructions [--code DIR ...]`` runs, for each tree (default: this one),
three steps of the benchmark's input (:mod:`bench.load`, fewer rooms and events at the same
events per room window) under ``valgrind --tool=callgrind``: generate; generate and check
every record (:func:`streams.core.contract.decode`) into envelopes; and also apply them
(:class:`streams.core.processor.PartitionProcessor`, changelog records about once a second
of the full run's input). The differences are the check's and the stateful step's
instructions; Kafka, Faust and HTTP are not in them. Results:
``bench/results/<timestamp>-instructions.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import orjson

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = ("generate", "decode", "process")
_COLLECTED = re.compile(r"Collected : (\d+)")


def step(kind: str, events: int, rooms: int) -> None:
    """One step, in this process (what valgrind runs)."""
    from bench import load
    from streams.core import envelope
    from streams.core.contract import Source, decode
    from streams.core.processor import PartitionProcessor, ProcessorConfig
    from streams.core.rooms import RoomConfig
    from streams.settings import Settings

    s = Settings(window_seconds=60)
    extra = {}
    if hasattr(s, "rolling_windows"):  # a tree from before issue 15 has neither
        extra = {"products_per_window": s.products_per_window, "rolling": s.rolling_windows}
    room = RoomConfig(
        size_ms=s.window_ms,
        retention=s.retention_windows,
        max_ids_per_window=s.dedup_max_ids_per_window,
        **extra,
    )
    config = ProcessorConfig(room=room, grace_ms=s.grace_ms, detector=s.detector)
    now = 1_765_000_000_000
    records = load.generate(events, load.Rooms.make(rooms, 4), 1, now - 1_000)
    if kind == "generate":
        return
    source = {name: Source(i) for i, name in enumerate(s.source_topics)}
    fetch = 420  # records per topic-partition and step, about the ingest stage's
    batches: list[list[tuple[int, bytes]]] = []
    for first in range(0, max(len(v) for v in records.values()), fetch):
        per: dict[int, list] = {}
        for (topic, p), values in records.items():
            out = per.setdefault(p, [])
            for i, (key, value, _) in enumerate(values[first : first + fetch], first):
                out.append(decode(source[topic], i, key, value, now, 60_000, p, 4))
        batches.append(
            [
                (p, data)
                for p, evs in per.items()
                for data in envelope.encode_bounded(now, 0, evs, s.envelope_max_bytes)
            ]
        )
    if kind == "decode":
        return
    procs = {p: PartitionProcessor(p, config) for p in range(4)}
    flush_every = max(1, events * 37 // 1_000)  # a flush a second at the full run's pace
    since = 0
    for batch in batches:
        for p, data in batch:
            env = envelope.decode(data)
            procs[p].process(env.events, env.read_ms, env.idle)
            since += len(env.events)
        if since >= flush_every:
            for proc in procs.values():
                proc.changes()
            since = 0
    for proc in procs.values():
        proc.changes()


def count(code: Path, kind: str, events: int, rooms: int) -> int:
    """Instructions of one step on the tree ``code`` (with its own venv, if it has one)."""
    python = code / ".venv" / "bin" / "python"
    args = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    args += [str(python) if python.exists() else sys.executable, str(Path(__file__).resolve())]
    args += ["--step", kind, "--events", str(events), "--rooms", str(rooms)]
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}  # that tree's bench and streams
    done = subprocess.run(args, cwd=code, env=env, capture_output=True, text=True, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind in {code}: {done.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, action="append", help="tree to measure")
    parser.add_argument("--label", action="append", help="name of each --code in the results")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rooms", type=int, default=120)
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.step:
        step(a.step, a.events, a.rooms)
        return 0
    codes = a.code or [Path(__file__).resolve().parent.parent]
    labels = a.label or [str(c) for c in codes]
    rows = {}
    with ThreadPoolExecutor(max_workers=3) as pool:  # valgrind runs one core per process
        futures = {
            (label, kind): pool.submit(count, code, kind, a.events, a.rooms)
            for code, label in zip(codes, labels, strict=True)
            for kind in STEPS
        }
    for label in labels:
        ir = {kind: futures[label, kind].result() for kind in STEPS}
        rows[label] = {
            "decode_per_event": (ir["decode"] - ir["generate"]) / a.events,
            "process_per_event": (ir["process"] - ir["decode"]) / a.events,
            "instructions": ir,
        }
        print(
            f"{label}: {rows[label]['decode_per_event']:,.0f} instructions per event to check, "
            f"{rows[label]['process_per_event']:,.0f} to apply",
            file=sys.stderr,
        )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    plan = {"events": a.events, "rooms": a.rooms}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stamp}-instructions"
    out.with_suffix(".json").write_bytes(
        orjson.dumps({"plan": plan, "trees": rows}, option=orjson.OPT_INDENT_2)
    )
    lines = [
        f"Instructions per event (valgrind callgrind), {a.events:,} events over {a.rooms} rooms\n",
        "| tree | check (decode) | apply (process + changelog records) | total |",
        "|---|---:|---:|---:|",
    ]
    for label, row in rows.items():
        d, p = row["decode_per_event"], row["process_per_event"]
        lines.append(f"| {label} | {d:,.0f} | {p:,.0f} | {d + p:,.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast ``livepulse simulate --speed max --out --truth`` writes, and where its time goes.

    python -m bench.simulate                      # this tree
    python -m bench.simulate --code DIR --label before-abc1234   # another tree's ``streams``

Runs the command a user would (50 rooms, 30 minutes, default rate) in a temporary directory
and reports its records per second of wall time and its CPU time (its own and its children's).
Then, in a process of its own, the parts on a 5-minute session (CPU seconds, best of three):
the generator alone, the generator writing the file, the generator feeding the truth, and what
each of the command's two processes does (``parts``).
``--code DIR`` puts DIR first on ``PYTHONPATH`` (e.g. ``git archive <commit> streams | tar -x
-C DIR``), so a before and an after are measured the same way. Results go to
``bench/results/<UTC timestamp>-simulate[-label].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
COMMAND = ("--rooms", "50", "--minutes", "30", "--speed", "max")


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _env(code: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPULSE_")}
    env["PYTHONPATH"] = os.pathsep.join([*([str(code)] if code else []), str(ROOT)])
    return env


def run_command(code: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="livepulse-simulate-") as tmp:
        out, truth = Path(tmp) / "s.jsonl", Path(tmp) / "t.json"
        cpu0, wall0 = _cpu_children(), time.perf_counter()
        files = ("--out", str(out), "--truth", str(truth))
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", "simulate", *COMMAND, *files],
            env=_env(code),
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall, cpu = time.perf_counter() - wall0, _cpu_children() - cpu0
        if done.returncode != 0:
            raise SystemExit(f"simulate failed: {done.stderr.strip()[-2000:]}")
        with out.open("rb") as f:
            records = sum(1 for _ in f)
        windows = len(orjson.loads(truth.read_bytes())["windows"])
    return {
        "command": f"livepulse simulate {' '.join(COMMAND)} --out s.jsonl --truth t.json",
        "records": records,
        "truth_windows": windows,
        "wall_seconds": round(wall, 2),
        "records_per_s": round(records / wall),
        "cpu_seconds": round(cpu, 2),
        "records_per_cpu_s": round(records / cpu),
        "output": done.stdout.strip().splitlines(),
    }


def parts(minutes: float) -> dict[str, Any]:
    """CPU seconds per million records of each part, in this process (best of three).

    ``writer process`` and ``truth process`` are what the command's two processes do (the
    writer also encodes each chunk for the truth process, which decodes and counts it); a tree
    from before they split the work that way has only the first three parts."""
    from streams.settings import Settings
    from streams.sim import SimConfig, compute_truth, generate
    from streams.sim.publish import Placement, write_file

    config = SimConfig(seed=1, rooms=50, minutes=minutes, end_ms=1_700_000_000_000)
    n = sum(1 for _ in generate(config))

    def cpu(fn: Any) -> float:
        best = float("inf")
        for _ in range(3):
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            fn()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            best = min(best, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        return round(best / n * 1e6, 2)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.jsonl"
        placement = Placement(config.end_ms or 0, None)
        per = {
            "generate": cpu(lambda: sum(1 for _ in generate(config))),
            "generate_and_write_file": cpu(lambda: write_file(config, placement, Settings(), out)),
            "generate_and_truth": cpu(lambda: compute_truth(config, generate(config))),
        }
        try:
            from streams.sim.publish import _encode_records, _records, _truth_of_chunks
        except ImportError:
            pass
        else:

            def encode(chunk: list[Any]) -> None:
                _encode_records(chunk)

            per["writer_process"] = cpu(
                lambda: write_file(config, placement, Settings(), out, also=encode)
            )
            encoded = [_encode_records(c) for c in _records(config, placement, None)]

            def truth_process() -> None:
                orjson.dumps(_truth_of_chunks(config, encoded), option=orjson.OPT_INDENT_2)

            per["truth_process"] = cpu(truth_process)
        return {"records": n, "minutes": minutes, "cpu_seconds_per_million_records": per}


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def source(code: Path | None, label: str) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "code": str(code) if code else "this tree",
        "label": label,
        "commit_of_this_tree": git("rev-parse", "HEAD") or "unknown",
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def markdown(result: dict[str, Any]) -> str:
    run, split = result["command"], result["parts"]
    per = split["cpu_seconds_per_million_records"]
    return "\n".join(
        [
            f"# livepulse simulate ({result['source']['label'] or result['source']['code']})",
            "",
            f"`{run['command']}`: {run['records']:,} records in {run['wall_seconds']} s = "
            f"**{run['records_per_s']:,} records/s** (wall); CPU {run['cpu_seconds']} s "
            f"(command and its children) = {run['records_per_cpu_s']:,} records per CPU-second.",
            "",
            f"Parts, CPU seconds per million records ({split['records']:,} records, "
            f"{split['minutes']} minutes, best of 3):",
            "",
            "| part | CPU s / M records |",
            "|---|---|",
            *(f"| {name.replace('_', ' ')} | {value} |" for name, value in per.items()),
            "",
            f"Machine: {result['machine']['cpu_model']}, {result['machine']['cores']} cores, "
            f"load average at start {result['machine']['loadavg_at_start']}.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, help="a directory holding another tree's streams/")
    parser.add_argument("--label", default="", help="added to the result file names")
    parser.add_argument("--parts-minutes", type=float, default=5.0)
    parser.add_argument("--parts-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.parts_only:  # the child measuring the parts
        sys.stdout.write(orjson.dumps(parts(args.parts_minutes)).decode())
        return
    result: dict[str, Any] = {
        "source": source(args.code, args.label),
        "machine": machine(),
        "command": run_command(args.code),
    }
    how = ("--parts-only", "--parts-minutes", str(args.parts_minutes))
    child = subprocess.run(
        [sys.executable, "-m", "bench.simulate", *how],
        env=_env(args.code),
        cwd=tempfile.gettempdir(),  # not this tree: ``-m`` puts the working directory first
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    result["parts"] = orjson.loads(child.stdout)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-simulate" + (f"-{args.label}" if args.label else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    text = markdown(result)
    (RESULTS / f"{name}.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()

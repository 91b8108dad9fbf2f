"""``livepulse simulate --out --truth``: the truth, computed beside the records in a process of
its own, is the truth of exactly the records written."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import orjson
import pytest

from streams.settings import Settings
from streams.sim import SimConfig, compute_truth, generate
from streams.sim.generate import generate_slices
from streams.sim.publish import (
    Placement,
    TruthInBackground,
    _encode_records,
    _truth_of_chunks,
    write_file,
)
from tests.support.cli import one_line_error, run

SMALL = ("--rooms", "2", "--minutes", "1", "--rate", "40", "--speed", "max")


def test_the_truth_file_is_the_truth_of_the_records_file(tmp_path: Path) -> None:
    out, truth_path = tmp_path / "s.jsonl", tmp_path / "t.json"
    proc = run("simulate", *SMALL, "--out", str(out), "--truth", str(truth_path))
    assert proc.returncode == 0, proc.stderr
    assert "room windows" in proc.stdout and "records/s" in proc.stdout
    truth = orjson.loads(truth_path.read_bytes())
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in truth["config"].items()}
    config = SimConfig(**fields)
    assert truth == orjson.loads(orjson.dumps(compute_truth(config, generate(config))))
    again = tmp_path / "again.jsonl"
    write_file(config, Placement(config.end_ms or 0, None), Settings(), again)
    assert out.read_bytes() == again.read_bytes()
    assert truth["totals"]["emitted"] == len(out.read_bytes().splitlines()) > 100


def test_an_unwritable_truth_is_one_line(tmp_path: Path) -> None:
    where = tmp_path / "missing" / "t.json"
    line = one_line_error(
        run("simulate", *SMALL, "--out", str(tmp_path / "s.jsonl"), "--truth", str(where))
    )
    assert f"{where}: cannot write" in line


def test_a_truth_process_gone_mid_session_is_an_error_not_a_hang(tmp_path: Path) -> None:
    config = SimConfig(seed=1, rooms=2, minutes=1, rate=40, end_ms=1_700_000_000_000)
    background = TruthInBackground(config, tmp_path / "t.json")
    background._process.kill()
    background._process.join()
    chunks = list(generate_slices(config)) * 20  # more than the hand-over holds

    def feed() -> None:
        for chunk in chunks:
            background.feed(chunk)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    feeder.join(60)
    assert not feeder.is_alive(), "feed() blocks on a truth process that is gone"
    with pytest.raises(OSError, match="the truth process ended with code"):
        background.result()
    assert not (tmp_path / "t.json").exists()


def test_the_truth_leaves_no_reference_cycles() -> None:
    """The truth process pauses the garbage collector: only right if its work leaves no cycles
    behind (malformed, late and duplicate records included)."""
    config = SimConfig(seed=1, rooms=2, minutes=1, rate=400, end_ms=1_700_000_000_000)
    chunks = [_encode_records(chunk) for chunk in generate_slices(config)]
    gc.collect()
    truth = _truth_of_chunks(config, chunks)
    assert truth["malformed"] and truth["late"] and truth["duplicates"]
    assert gc.collect() == 0

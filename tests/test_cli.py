"""Bad options and files: one readable line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.cli import one_line_error, run


def test_produce_reports_the_bad_line_before_sending(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text('{"type": "enter", "room_id": "r1"}\n{"type": "enter", "room_id": \n')
    # an unreachable broker: nothing is attempted because the file is checked first
    line = one_line_error(run("produce", str(f), "--broker", "kafka://127.0.0.1:1"))
    assert f"{f}:2: not JSON" in line


def test_produce_unknown_type(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text('{"type": "shipped", "room_id": "r1"}\n')
    assert "unknown event type 'shipped'" in one_line_error(run("produce", str(f)))


def test_produce_missing_file(tmp_path: Path) -> None:
    line = one_line_error(run("produce", str(tmp_path / "nope.jsonl")))
    assert "cannot read" in line


def test_produce_unreachable_broker(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text('{"type": "enter", "room_id": "r1"}\n')
    line = one_line_error(run("produce", str(f), "--broker", "kafka://127.0.0.1:1"))
    assert "cannot reach Kafka at kafka://127.0.0.1:1" in line


def test_bad_setting_from_the_environment() -> None:
    line = one_line_error(run("worker", env={"LIVEPULSE_GRACE_SECONDS": "soon"}))
    assert "LIVEPULSE_GRACE_SECONDS" in line


def test_replay_unreadable_file(tmp_path: Path) -> None:
    line = one_line_error(run("replay", str(tmp_path / "missing.jsonl")))
    assert "cannot read" in line


def test_replay_bad_line(tmp_path: Path) -> None:
    f = tmp_path / "rec.jsonl"
    f.write_text('{"topic": "t", "partition": 0, "timestamp": 1, "value": "x"}\n{"topic": 3}\n')
    assert f"{f}:2: not a recorded record" in one_line_error(run("replay", str(f)))


def test_replay_unreachable_broker(tmp_path: Path) -> None:
    f = tmp_path / "rec.jsonl"
    f.write_text('{"topic": "t", "partition": 0, "timestamp": 1, "value": "x"}\n')
    line = one_line_error(run("replay", str(f), "--broker", "kafka://127.0.0.1:1"))
    assert "cannot reach Kafka" in line


def test_record_unreachable_broker(tmp_path: Path) -> None:
    line = one_line_error(
        run("record", "-o", str(tmp_path / "x"), "--broker", "kafka://127.0.0.1:1")
    )
    assert "cannot reach Kafka" in line


def test_replay_bad_speed(tmp_path: Path) -> None:
    f = tmp_path / "rec.jsonl"
    f.write_text("")
    assert "--speed" in one_line_error(run("replay", str(f), "--speed", "fast"))


def test_commands_need_no_test_dependencies() -> None:
    """`make demo` installs runtime dependencies only: no command may import pytest."""
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "import streams.cli, streams.sim.publish, streams.commands.recording, streams.worker.app, "
        "streams.commands.demo"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

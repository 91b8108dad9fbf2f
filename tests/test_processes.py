"""streams/processes.py: a child is asked to stop first, killed when it does not, and reaped."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from streams.processes import NotReady, free_port, serving, stop

IGNORES_SIGTERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_child_that_stops_when_asked_is_not_killed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop(proc, 10) == -signal.SIGTERM


def test_a_child_that_ignores_the_signal_is_killed_after_the_timeout() -> None:
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert stop(proc, 0.2) == -signal.SIGKILL


def test_an_exited_child_gets_no_signal() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    assert stop(proc) == 3


def test_a_server_that_exits_before_it_is_ready_fails_with_its_log(tmp_path: Path) -> None:
    args = [sys.executable, "-c", "print('bad flag'); raise SystemExit(2)"]
    url = f"http://127.0.0.1:{free_port()}"
    with (
        pytest.raises(NotReady, match="exited with 2\nbad flag"),
        serving(args, url, tmp_path / "server.log", timeout=10),
    ):
        pass

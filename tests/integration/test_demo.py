"""`livepulse demo` end to end: it gets ready, and its rooms update soon after."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from streams.processes import alive, stop, tree
from tests.support.stack import free_port, wait_until


def _open_windows(url: str) -> dict[str, tuple[int, int]]:
    """room -> (open window start, enters so far)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            rooms = orjson.loads(resp.read())["rooms"]
    except OSError:
        return {}
    return {
        r["room_id"]: (r["open"]["window_start"], r["open"]["enters"]) for r in rooms if r["open"]
    }


def _env(tmp_path: Path, web: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPULSE_")}
    env.update(
        LIVEPULSE_BROKER=f"kafka://127.0.0.1:{free_port()}",
        LIVEPULSE_WEB_PORT=str(web),
        LIVEPULSE_STATE_DIR=str(tmp_path / "state"),
        LIVEPULSE_APP_ID="livepulse-demo-test",
        COLUMNS="160",
    )
    return env


def test_demo_rooms_update_within_ten_seconds_of_ready(tmp_path: Path) -> None:
    web = free_port()
    env = _env(tmp_path, web)
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo", "--duration", "12"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: b"ready after" in out.read_bytes() or demo.poll() is not None,
            60,
            "the demo to be ready",
        )
        assert demo.poll() is None, out.read_text()
        ready_at = time.monotonic()
        assert f"http://127.0.0.1:{web}/metrics" in out.read_text()
        # the live screen's address is the first thing the demo says
        assert out.read_text().splitlines()[0].startswith(f"live screen: http://127.0.0.1:{web}/")
        url = f"http://127.0.0.1:{web}/rooms"
        first = wait_until(lambda: _open_windows(url), 10, "demo rooms with an open window")
        assert any(enters > 0 for _, enters in first.values())
        # updating: some room's open window moves on (more enters, or the next window)
        wait_until(
            lambda: any(_open_windows(url).get(r, w) != w for r, w in first.items()),
            10,
            "a room's open window to change",
        )
        assert time.monotonic() - ready_at < 10
        assert demo.wait(60) == 0, out.read_text()
    finally:
        stop(demo)
    assert "demo-room-" in out.read_text()


def test_sigterm_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo"],
            env=_env(tmp_path, free_port()),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    started: list[int] = []
    try:
        wait_until(
            lambda: b"ready after" in out.read_bytes() or demo.poll() is not None,
            60,
            "the demo to be ready",
        )
        started = tree(demo.pid)
        assert len(started) == 4, started  # the demo, the broker, the worker, its ingest
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0, out.read_text()[-2000:]
        wait_until(lambda: not [p for p in started if alive(p)], 30, "what the demo started to end")
    finally:
        stop(demo)
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

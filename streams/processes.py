"""Child processes: the one way to stop one, and to start a server that answers ``/-/ready``.

Used for everything the package, its tests and the benchmark start (the embedded broker,
workers, Prometheus, Alertmanager), so a child is always asked first, then killed, and always
reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path


class NotReady(RuntimeError):
    """A server exited or did not answer ``/-/ready`` in time (the message ends with its log)."""


def stop(proc: subprocess.Popen, timeout: float = 10, sig: int = signal.SIGTERM) -> int:
    """Ask ``proc`` to stop with ``sig``, wait up to ``timeout`` seconds, then kill it; returns
    its exit code (nothing is sent to a process that has already exited)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):  # exited meanwhile
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie waiting to be reaped has)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def tree(pid: int) -> list[int]:
    """``pid`` and its living descendants (a worker and its ingest process), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its living descendants (Linux /proc)."""
    total = 0
    for p in tree(pid):
        fields = _stat(p)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 30) -> float:
    """Poll ``url``/-/ready until it answers 200; returns the seconds it took. Raises
    :class:`NotReady` if ``proc`` exits first or ``timeout`` passes."""
    started = time.monotonic()
    while not _ready(url):
        if proc.poll() is not None:
            raise NotReady(f"{Path(proc.args[0]).name} exited with {proc.returncode}\n{tail(log)}")
        if time.monotonic() - started > timeout:
            raise NotReady(f"{Path(proc.args[0]).name} not ready after {timeout} s\n{tail(log)}")
        time.sleep(0.1)
    return time.monotonic() - started


def tail(log: Path, chars: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@contextlib.contextmanager
def serving(
    args: Sequence[str], url: str, log: Path, timeout: float | None = 30, stop_timeout: float = 20
) -> Iterator[subprocess.Popen]:
    """Run ``args`` (output to ``log``) and yield it once ``url`` is ready (at once when
    ``timeout`` is None: call :func:`wait_ready` later); stopped on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT)
    try:
        if timeout is not None:
            wait_ready(proc, url, log, timeout)
        yield proc
    finally:
        stop(proc, stop_timeout)

"""Child processes, their CPU time and memory from /proc, and small HTTP helpers.

Every process the benchmark starts goes through :func:`child`, which stops it on the way out
(normal end, failure or Ctrl-C) and asks the kernel to signal it if the benchmark itself dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streams.processes import stop, tree

_PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """A benchmark failure worth one line (plus where the logs are)."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM if the benchmark is killed without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:  # exited meanwhile
        pass
    return 0


def rss_mb(pid: int) -> float:
    """Resident set size now, of a process and its descendants."""
    return sum(_status_kb(p, "VmRSS") for p in tree(pid)) / 1024


def peak_rss_mb(pid: int) -> float:
    """Sum of the largest resident set sizes (VmHWM) of a process and its descendants (an
    upper bound of their peak together)."""
    return sum(_status_kb(p, "VmHWM") for p in tree(pid)) / 1024


def freeze(pid: int, sig: int = signal.SIGSTOP) -> None:
    """SIGSTOP (or ``sig``) to a process and its descendants."""
    for p in tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)


class Child:
    """A process the benchmark started, with its log file."""

    def __init__(self, name: str, proc: subprocess.Popen, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        """Raise if the process has exited: waiting on a dead worker helps nobody."""
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} exited with code {self.proc.returncode}; log: {self.log}\n"
                + self.tail()
            )

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        stop(self.proc, timeout)


@contextlib.contextmanager
def child(name: str, args: list[str], env: dict[str, str], log: Path) -> Iterator[Child]:
    """Start ``python <args>``; always stopped when the block ends, however it ends."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which stops it in order
            preexec_fn=_die_with_parent,  # no threads exist at this point
        )
    proc_child = Child(name, proc, log)
    try:
        yield proc_child
    finally:
        proc_child.stop()


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without LIVEPULSE_ variables (so only ours apply), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPULSE_")}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, TimeoutError):
        return 0, b""


def wait_for(url: str, proc: Child, timeout: float, what: str) -> bytes:
    """Poll ``url`` until it answers 200; fail early if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        proc.check()
        status, body = http_get(url, timeout=5)
        if status == 200:
            return body
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}; log: {proc.log}")
        time.sleep(0.25)


def metric_values(text: str, names: tuple[str, ...]) -> dict[str, list[tuple[dict, float]]]:
    """Samples of the named metric families only, parsed with prometheus_client.

    The full exposition has tens of samples per room; only the few wanted lines are handed
    to the (slow, pure-Python) parser.
    """
    keep = []
    for line in text.splitlines():
        bare = line[7:] if line.startswith(("# HELP ", "# TYPE ")) else line
        if bare.startswith(names):
            keep.append(line)
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families("\n".join(keep) + "\n"):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out

"""A real Prometheus server on loopback: the one launcher of the rules evaluation and the tests."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.processes import free_port, serving, tail


@dataclass(frozen=True)
class Prometheus:
    url: str
    process: subprocess.Popen
    log: Path

    def tail(self) -> str:
        return tail(self.log, 4000)


@contextlib.contextmanager
def running_prometheus(
    binary: str,
    config: Path,
    data: Path,
    log: Path,
    flags: Sequence[str] = (),
    ready_timeout: float | None = 60,
) -> Iterator[Prometheus]:
    """``binary`` with ``config`` over the TSDB directory ``data`` on a free loopback port,
    yielded once ready (at once with ``ready_timeout`` None: see
    :func:`streams.processes.wait_ready`); stopped on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        *flags,
    ]
    with serving(args, url, log, ready_timeout) as proc:
        yield Prometheus(url, proc, log)

"""The ingest stage in a child process, so it has a core of its own beside the Faust agent.

The stage already talks to the agent only through Kafka (envelopes on the internal topic), so
moving it out of the worker's process changes no number. What the worker shows of it (ready,
broker up, consumer lag, its counters) comes from one status line the child writes to a pipe
at most every 0.1 s when something changed and at least once a second.

The parent starts the child (``python -m streams.worker.ingest_process --status-fd N``), writes
its settings to the child's standard input and keeps that open: the child stops when it
closes (the worker is gone, however it ended) and on SIGTERM (not SIGINT: Ctrl-C reaches the
worker, which stops it). A child that exits is started again after a pause (1 s, doubling to
30 s), with one log line each time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import SecretStr, ValidationError

from streams.settings import Settings, explain
from streams.worker.ingest import Ingest
from streams.worker.metrics import PipelineMetrics

log = logging.getLogger(__name__)

#: Shortest and longest pause before a child that exited is started again.
_RESTART_S = (1.0, 30.0)
#: The child's status: at most this often when something changed, at least once a second.
_STATUS_S = 0.1
_STATUS_IDLE_S = 1.0


def settings_payload(settings: Settings) -> bytes:
    """The settings as JSON for the child, secrets included (they travel through a pipe)."""

    def default(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError(type(value).__name__)

    return orjson.dumps(settings.model_dump(), default=default)


class Counts:
    """What the child's ingest stage counted since its last status line."""

    def __init__(self) -> None:
        self.consumed: dict[str, int] = {}
        self.invalid: dict[str, dict[str, int]] = {}
        self.retries = 0

    def read(self, topic: str, records: int, invalid: Mapping[str, int]) -> None:
        if records:
            self.consumed[topic] = self.consumed.get(topic, 0) + records
        if invalid:
            mine = self.invalid.setdefault(topic, {})
            for reason, n in invalid.items():
                mine[reason] = mine.get(reason, 0) + n

    def retried(self, steps: int = 1) -> None:
        self.retries += steps

    def take(self) -> dict[str, Any]:
        """The counts so far, which start again from zero."""
        taken = {"consumed": self.consumed, "invalid": self.invalid, "retries": self.retries}
        self.consumed, self.invalid, self.retries = {}, {}, 0
        return taken

    def __bool__(self) -> bool:
        return bool(self.consumed or self.invalid or self.retries)


class IngestProcess:
    """The worker's side: starts the child, keeps it running, shows what it reports.

    Has the in-process :class:`~streams.worker.ingest.Ingest`'s face for the worker: ``ready``,
    ``broker_up``, ``consumer_lag()`` and ``run()``."""

    def __init__(self, settings: Settings, metrics: PipelineMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.ready = asyncio.Event()
        self.broker_up = True
        self.lag: dict[tuple[str, int], int] = {}

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        return dict(self.lag)

    async def run(self) -> None:
        pause = _RESTART_S[0]
        while True:
            started = time.monotonic()
            try:
                code: int | str | None = await self._run_child()
            except Exception as exc:  # a LivePulse bug: the worker keeps going, the child too
                code = f"unknown ({type(exc).__name__}: {exc})"
            self.ready.clear()
            self.lag.clear()
            if time.monotonic() - started > 60:
                pause = _RESTART_S[0]
            log.error(
                "ingest process exited with code %s; starting it again in %.0f s", code, pause
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RESTART_S[1])

    async def _run_child(self) -> int | None:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                "--status-fd",
                str(write_fd),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(write_fd,),
            )
        except OSError as exc:
            os.close(read_fd)
            log.error("could not start the ingest process: %s", exc)
            return None
        finally:
            os.close(write_fd)
        reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        try:
            assert proc.stdin is not None
            proc.stdin.write(settings_payload(self.settings) + b"\n")
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
            while line := await reader.readline():
                self._status(line)
            return await proc.wait()
        finally:
            transport.close()
            if proc.returncode is None:
                await _stop(proc)

    def _status(self, line: bytes) -> None:
        try:
            status = orjson.loads(line)
            self.broker_up = bool(status["broker_up"])
            self.lag = {(t, int(p)): int(n) for t, p, n in status["lag"]}
            for topic, n in status["consumed"].items():
                self.metrics.read(topic, n, status["invalid"].get(topic, {}))
            for topic, invalid in status["invalid"].items():
                if topic not in status["consumed"]:
                    self.metrics.read(topic, 0, invalid)
            if status["retries"]:
                self.metrics.retried(int(status["retries"]))
            if status["ready"]:
                self.ready.set()
            else:
                self.ready.clear()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a bug, not input
            log.warning("unreadable status line from the ingest process (%s): %.200r", exc, line)


async def _stop(proc: asyncio.subprocess.Process, timeout: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class _Reporter:
    """The child's side of the pipe: a status line when something changed (at most every
    0.1 s) or a second passed. The pipe is non-blocking: while the worker does not read it
    (frozen), counts add up here instead of stalling the ingest stage."""

    def __init__(self, ingest: Ingest, counts: Counts, fd: int) -> None:
        self.ingest, self.counts, self.fd = ingest, counts, fd
        os.set_blocking(fd, False)
        self._unsent = b""
        self._last: tuple[object, ...] = ()
        self._sent_at = 0.0

    def state(self) -> tuple[object, ...]:
        lag = sorted((t, p, n) for (t, p), n in self.ingest.lag.items())
        return (self.ingest.ready.is_set(), self.ingest.broker_up, lag)

    def tick(self) -> None:
        """Raises BrokenPipeError when the worker is gone."""
        if not self._unsent:
            state, now = self.state(), time.monotonic()
            if not self.counts and state == self._last and now - self._sent_at < _STATUS_IDLE_S:
                return
            ready, broker_up, lag = state
            line = {"ready": ready, "broker_up": broker_up, "lag": lag, **self.counts.take()}
            self._unsent = orjson.dumps(line) + b"\n"
            self._last, self._sent_at = state, now
        try:
            written = os.write(self.fd, self._unsent)
        except BlockingIOError:
            return
        self._unsent = self._unsent[written:]

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(_STATUS_S)


async def _serve(settings: Settings, status_fd: int) -> int:
    counts = Counts()
    ingest = Ingest(settings, counts)
    reporter = _Reporter(ingest, counts, status_fd)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)

    def parent_said() -> None:  # the worker writes nothing after the settings: only EOF counts
        with contextlib.suppress(OSError):
            if os.read(0, 4096):
                return
        loop.remove_reader(0)
        stopping.set()

    loop.add_reader(0, parent_said)
    tasks = {
        asyncio.create_task(ingest.run(), name="ingest"),
        asyncio.create_task(reporter.run(), name="status"),
        asyncio.create_task(stopping.wait(), name="stop"),
    }
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.get_name() != "stop" and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, BrokenPipeError):
                return 0  # the worker is gone
            log.error("ingest process stopped: %s: %s", type(exc).__name__, exc)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the worker stops this process
    # itself as it shuts down (a child stopping first would be started again meanwhile)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m streams.worker.ingest_process")
    parser.add_argument("--status-fd", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        settings = Settings(**orjson.loads(sys.stdin.buffer.readline()))
    except ValidationError as exc:
        print(f"ingest process: {explain(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"ingest process: unreadable settings from the worker: {exc}", file=sys.stderr)
        return 2
    from mode.utils.logging import setup_logging

    from streams.worker.logs import thin_repeats

    setup_logging(loglevel=settings.loglevel, logfile=None)
    thin_repeats(logging.getLogger())
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(settings, args.status_fd))
    return uvloop.run(_serve(settings, args.status_fd))


if __name__ == "__main__":
    sys.exit(main())

"""A partition processor without a broker, and the changelog it writes, for unit tests."""

from __future__ import annotations

from streams.core.changelog import MARKER
from streams.core.contract import Ev, Kind
from streams.core.currencies import CURRENCIES
from streams.core.processor import PartitionProcessor, ProcessorConfig
from streams.core.rooms import RoomConfig, RoomState

BASE = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
FLUSH_AT = BASE + 30 * 60_000
CNY = CURRENCIES["CNY"][0]


def config(retention: int = 60) -> ProcessorConfig:
    return ProcessorConfig(room=RoomConfig(size_ms=60_000, retention=retention), grace_ms=5_000)


class Harness:
    """A processor, and the changelog it writes (a list of records, as the broker has it)."""

    def __init__(self, retention: int = 60) -> None:
        self.config = config(retention)
        self.proc = PartitionProcessor(0, self.config)
        self.log: list[tuple[str, bytes | None]] = []
        self.flushes: list[tuple[int, int]] = []  # (log length, envelopes covered) per flush
        self.fed = 0
        self.closed = 0

    def feed(self, events: list[Ev], idle: int = 0) -> None:
        out = self.proc.process(events, None, idle)
        self.closed += out.tally.windows_closed
        self.fed += 1

    def flush(self) -> None:
        """A group commit: the changes, then the end-of-flush marker."""
        self.log += self.proc.changes()
        self.log.append((MARKER, None))
        self.flushes.append((len(self.log), self.fed))

    def recover(self, records: int) -> PartitionProcessor:
        """What a new worker restores from the first ``records`` records of the changelog."""
        table: dict[str, bytes] = {}
        for key, value in self.log[:records]:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return PartitionProcessor.restore(0, self.config, table)

    @property
    def table(self) -> dict[str, RoomState]:
        return self.proc.rooms


def flush(offsets: list[int], at: int = FLUSH_AT) -> list[Ev]:
    return [
        Ev(src, offsets[src] + 1000, at, "flush", int(kind), "f")
        for src, kind in ((0, Kind.ENTER), (1, Kind.PRODUCT_CLICK), (2, Kind.ORDER_CREATED))
    ]

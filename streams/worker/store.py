"""The rooms table's storage: per changelog partition, the changelog's records as bytes.

A Faust store (registered as ``livepulse://memory`` and ``livepulse://rocksdb``) that holds
exactly what the changelog holds, for every partition this worker owns or stands by for:

* Faust's recovery and its standby reader apply changelog records here
  (:meth:`PartitionStore.apply_changelog_batch`); the worker applies its own records once the
  broker has acknowledged them (:meth:`PartitionStore.write`). Either way the store knows the
  offset of the last record it holds per partition (:meth:`persisted_offset`), so a standby
  that becomes active, or a worker restarted with its RocksDB state directory, reads only the
  changelog's tail. A partition the store does not hold reports -1: read from the start.
* Partitions this worker neither owns nor stands by for leave memory at the next rebalance
  (RocksDB files stay on disk for a later assignment).
* Values stay encoded here; a :class:`~streams.core.processor.PartitionProcessor` decodes a
  partition once, when the worker starts serving it, and works on objects from then on.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from faust.stores import STORES
from faust.stores.memory import Store as MemoryStore
from faust.types import TP, EventT

from streams.core.changelog import NO_FENCE, Fence, admit, is_room_record

log = logging.getLogger(__name__)

#: A RocksDB partition's own keys for the offset of the last changelog record it holds and its
#: current fence (a control character first: no table key looks like them).
_OFFSET_KEY = b"\x00offset"
_FENCE_KEY = b"\x00fence"


class _Partition:
    """One partition's records and the offset of the last one, in memory."""

    def __init__(self) -> None:
        self.records: MutableMapping[str, bytes] = {}
        self.offset = -1
        self.fence = NO_FENCE  # the current fence (streams.core.changelog.admit)
        self.rooms = 0  # room records among them (the standby gauge)

    def apply(
        self,
        items: Iterable[tuple[str, bytes | None]],
        offset: int,
        fence: Fence = NO_FENCE,
    ) -> None:
        self.fence = _later(self.fence, fence)
        records = self.records
        for key, value in items:
            had = key in records
            if value is None:
                if had:
                    del records[key]
                    self.rooms -= is_room_record(key)
            else:
                records[key] = value
                if not had:
                    self.rooms += is_room_record(key)
        self.offset = max(self.offset, offset)

    def read(self, records: Iterable[tuple[int, str, bytes | None, Any]]) -> int:
        """Records read back from the changelog, in log order, as (offset, key, value,
        headers): each applied if it names the current fence
        (:func:`streams.core.changelog.admit`). Returns how many were not."""
        fence, offset, skipped = self.fence, self.offset, 0
        items: list[tuple[str, bytes | None]] = []
        for at, key, value, headers in records:
            applies, fence = admit(fence, at, headers)
            if applies:
                items.append((key, value))
            else:
                skipped += 1
            offset = max(offset, at)
        self.apply(items, offset, fence)
        return skipped

    def items(self) -> Iterator[tuple[str, bytes]]:
        return iter(list(self.records.items()))

    def close(self) -> None:
        self.records = {}


class _RocksPartition(_Partition):
    """One partition in a RocksDB database of its own (rocksdict); writes are atomic batches
    that carry the offset with the records."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict  # only a RocksDB worker needs it

        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), Options(raw_mode=True))
        raw = self._db.get(_OFFSET_KEY)
        self.offset = int(raw) if raw is not None else -1
        self.fence = _parse_fence(self._db.get(_FENCE_KEY))
        self.rooms = sum(1 for key in self._db.keys() if key not in _OWN_KEYS and _room_key(key))  # noqa: SIM118

    def apply(
        self,
        items: Iterable[tuple[str, bytes | None]],
        offset: int,
        fence: Fence = NO_FENCE,
    ) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        db = self._db
        for key, value in items:
            raw = key.encode()
            room = is_room_record(key)
            had = room and db.get(raw) is not None
            if value is None:
                batch.delete(raw)
                self.rooms -= had
            else:
                batch.put(raw, value)
                self.rooms += room and not had
        self.offset = max(self.offset, offset)
        self.fence = _later(self.fence, fence)
        batch.put(_OFFSET_KEY, str(self.offset).encode())
        batch.put(_FENCE_KEY, f"{self.fence.offset}:{self.fence.taken_ms}".encode())
        db.write(batch)

    def items(self) -> Iterator[tuple[str, bytes]]:
        for key, value in self._db.items():
            if key not in _OWN_KEYS:
                yield key.decode(), value

    def close(self) -> None:
        self._db.close()


_OWN_KEYS = (_OFFSET_KEY, _FENCE_KEY)


def _parse_fence(raw: bytes | None) -> Fence:
    try:
        offset, taken = raw.split(b":")  # type: ignore[union-attr]
        return Fence(int(offset), int(taken))
    except (AttributeError, ValueError):  # none yet, or unreadable: read as unfenced
        return NO_FENCE


def _later(a: Fence, b: Fence) -> Fence:
    return b if b.taken_ms > a.taken_ms else a


def _room_key(raw: bytes) -> bool:
    return is_room_record(raw.decode(errors="replace"))


class PartitionStore(MemoryStore):
    """See the module docstring. ``url``: ``livepulse://memory`` or ``livepulse://rocksdb``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parts: dict[int, _Partition] = {}
        self.restored = 0  # changelog records read back (recovery and standby), ever
        self.fenced = 0  # of them, records ignored: written after their writer was fenced
        #: Awaited with each new assignment before Faust's recovery reads the changelog's
        #: end offsets (the worker ends the partitions it will own with a marker there).
        self.before_recovery: Callable[[set[TP]], Awaitable[None]] | None = None
        #: Awaited when Faust's recovery has read the owned partitions (their changelog TPs).
        self.after_recovery: Callable[[set[TP]], Awaitable[None]] | None = None

    @property
    def durable(self) -> bool:
        return self.url.host == "rocksdb"

    # -- what the worker uses --------------------------------------------------------------
    def partition(self, partition: int) -> _Partition:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = (
                _RocksPartition(self._path(partition)) if self.durable else _Partition()
            )
        return part

    def write(
        self,
        partition: int,
        records: Iterable[tuple[str, bytes | None]],
        offset: int,
        fence: Fence = NO_FENCE,
    ) -> None:
        """The worker's own records, acknowledged by the broker up to ``offset``, written
        behind its ``fence``."""
        self.partition(partition).apply(records, offset, fence)

    def standby_rooms(self, active: set[int]) -> int:
        return sum(part.rooms for p, part in self.parts.items() if p not in active)

    def _path(self, partition: int) -> Path:
        return Path(self.app.conf.tabledir) / f"{self.table_name}-{partition}.rocksdict"

    def _changelog(self, tps: Iterable[TP]) -> set[int]:
        topic = self.table.changelog_topic_name
        return {tp.partition for tp in tps if tp.topic == topic}

    # -- what Faust calls ------------------------------------------------------------------
    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Any, to_value: Any) -> None:
        """Records read back (recovery, standby), in log order (see :meth:`_Partition.read`)."""
        by_partition: dict[int, list[tuple[int, str, bytes | None, Any]]] = {}
        for event in batch:
            message = event.message
            by_partition.setdefault(message.partition, []).append(
                (message.offset, to_key(event.key), message.value, message.headers)
            )
            self.restored += 1
        for partition, records in by_partition.items():
            self.fenced += self.partition(partition).read(records)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop these partitions' records (and RocksDB files): what this worker wrote there
        last may have been fenced, so only a read of the changelog can say what they hold."""
        for partition in partitions:
            part = self.parts.pop(partition, None)
            if part is not None:
                part.close()
            if self.durable:
                shutil.rmtree(self._path(partition), ignore_errors=True)

    def persisted_offset(self, tp: TP) -> int:
        """The offset of the last record held (-1: none, read the changelog from its start)."""
        if tp.partition not in self.parts and self.durable and self._path(tp.partition).exists():
            self.partition(tp.partition)
        part = self.parts.get(tp.partition)
        return -1 if part is None else part.offset

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Ignored: Faust calls it on each acknowledgement, before the worker has applied the
        whole flush to the store; :meth:`write` records the offset with the records."""

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        keep = self._changelog(assigned)
        for partition in [p for p in self.parts if p not in keep]:
            self.parts.pop(partition).close()
        if self.before_recovery is not None:
            await self.before_recovery(assigned)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Keeps standby partitions (Faust's memory store would delete them here)."""
        if self.after_recovery is not None:
            await self.after_recovery(active_tps)

    def reset_state(self) -> None:
        """``faust reset``: forget every partition (RocksDB files included)."""
        import shutil

        for partition, part in list(self.parts.items()):
            part.close()
            if self.durable:
                shutil.rmtree(self._path(partition), ignore_errors=True)
        self.parts.clear()

    async def on_stop(self) -> None:
        for part in self.parts.values():
            part.close()
        self.parts.clear()


STORES.aliases["livepulse"] = "streams.worker.store:PartitionStore"

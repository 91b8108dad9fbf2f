"""Kafka's default partitioner for keyed records: ``(murmur2(key) & 0x7fffffff) % partitions``.

The one definition of where a room lives. The hash is aiokafka's port of the Java client's
``Utils.murmur2``, which kafka-python, kafkajs and the Java client share; librdkafka's default
(``consistent_random``, crc32) differs, which is why the ingest stage checks every record.
Results are cached per key: a partition has few rooms, and the pure-Python hash costs ~2.5 µs.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=65_536)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions

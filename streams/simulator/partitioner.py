"""Kafka's default partitioner for keyed records: ``murmur2(key) & 0x7fffffff % partitions``.

The hash is aiokafka's pure-Python port of the Java client's ``Utils.murmur2`` (the same as
``DefaultPartitioner``); results are cached per key since a session has only a few keys.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition the default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions

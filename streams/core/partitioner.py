"""Kafka's default partitioner for keyed records: ``(murmur2(key) & 0x7fffffff) % partitions``.

The one definition of where a room lives. The hash is the Java client's ``Utils.murmur2``,
which kafka-python, kafkajs and aiokafka share (here so that the domain imports no Kafka
client; a test compares it with aiokafka's on arbitrary keys); librdkafka's default
(``consistent_random``, crc32) differs, which is why the ingest stage checks every record.
Results are cached per key: a partition has few rooms.
"""

from __future__ import annotations

from functools import lru_cache

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as Kafka's Java client computes it (seed 0x9747b28c), unsigned 32 bits."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest >= 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=65_536)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions

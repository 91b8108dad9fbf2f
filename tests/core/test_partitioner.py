"""The one partitioner: Kafka's default for keyed records, as aiokafka and the Java client."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.partitioner import murmur2, partition_of


def test_partitions_are_kafkas_default() -> None:
    default = DefaultPartitioner()
    for i in range(200):
        key = f"room-{i:04d}".encode()
        assert partition_of(key, 4) == default(key, [0, 1, 2, 3], [0, 1, 2, 3])
        assert partition_of(key, 7) == default(key, list(range(7)), list(range(7)))


def test_known_values_of_the_java_client() -> None:
    # murmur2 values from Apache Kafka's own UtilsTest.testMurmur2, placed as the Java
    # producer places a keyed record: toPositive(murmur2(key)) % partitions
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, murmur in cases.items():
        for partitions in (1, 4, 7, 12):
            assert partition_of(key, partitions) == (murmur & 0x7FFFFFFF) % partitions, key


@settings(max_examples=2_000)
@given(st.binary(max_size=300))
def test_the_hash_is_aiokafkas_murmur2(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)

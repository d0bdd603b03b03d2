"""Which partition a key lands on: the producer's partitioner, computed, so a reader scans one partition, not all.

Every OrderFlow event is keyed by its order id, so all of one order's events on a topic sit in one partition —
the one the producing client's partitioner chose. librdkafka's default is ``consistent_random`` (CRC-32 of the
key); Java clients and ``partitioner=murmur2_random`` use Kafka's murmur2. The services take the partitioner
from ``ORDERFLOW_KAFKA_PARTITIONER`` like any librdkafka setting, so the reader reads the same variable. For a
partitioner that is not a function of the key (``random``) there is no answer, and the caller scans every
partition.
"""

from __future__ import annotations

import zlib
from typing import Final

DEFAULT: Final = "consistent_random"  # librdkafka's default, which the services use unless configured otherwise

_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as an unsigned 32-bit value."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def fnv1a(data: bytes) -> int:
    """32-bit FNV-1a as librdkafka's ``fnv1a`` partitioner computes it: the absolute value of the signed hash
    (Sarama's ``NewHashPartitioner`` compatibility)."""
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & _MASK
    signed = h - (1 << 32) if h & 0x80000000 else h
    return abs(signed) & _MASK


def partition_for(key: bytes, partitions: int, partitioner: str = DEFAULT) -> int | None:
    """The partition ``partitioner`` gives ``key`` among ``partitions``; ``None`` when it does not depend on the key."""
    if partitions <= 0:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    if partitioner in ("consistent", "consistent_random"):
        return zlib.crc32(key) % partitions
    if partitioner in ("murmur2", "murmur2_random"):
        return (murmur2(key) & 0x7FFFFFFF) % partitions
    if partitioner in ("fnv1a", "fnv1a_random"):
        return fnv1a(key) % partitions
    return None

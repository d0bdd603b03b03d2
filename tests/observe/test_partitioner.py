"""The computed partition of a key is where librdkafka's producer really put it, for each keyed partitioner."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from orderflow.events import new_order_id
from orderflow.observe import partitioner


def test_murmur2_matches_kafkas_reference_values() -> None:
    # Values of org.apache.kafka.common.utils.Utils.murmur2 (Kafka's UtilsTest), as unsigned 32-bit integers.
    assert partitioner.murmur2(b"21") == (-973932308) & 0xFFFFFFFF
    assert partitioner.murmur2(b"foobar") == (-790332482) & 0xFFFFFFFF
    assert partitioner.murmur2(b"a-little-bit-long-string") == (-985981536) & 0xFFFFFFFF
    assert partitioner.murmur2(b"a-little-bit-longer-string") == (-1486304829) & 0xFFFFFFFF
    assert partitioner.murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == (-58897971) & 0xFFFFFFFF
    assert partitioner.murmur2(b"abc") == 479470107


def test_a_random_partitioner_has_no_answer() -> None:
    assert partitioner.partition_for(b"k", 3, "random") is None
    with pytest.raises(ValueError):
        partitioner.partition_for(b"k", 0)


@pytest.mark.kafka
@pytest.mark.parametrize("name", ["consistent_random", "consistent", "murmur2_random", "murmur2", "fnv1a_random"])
def test_the_computed_partition_is_where_the_producer_put_the_key(
    name: str, kafka_admin: AdminClient, kafka_bootstrap: str, unique_prefix: str
) -> None:
    topic = f"{unique_prefix}.keys"
    kafka_admin.create_topics([NewTopic(topic, num_partitions=7, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": name})
    placed: dict[bytes, int] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        placed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    keys = [new_order_id().encode() for _ in range(200)]
    for key in keys:
        producer.produce(topic, key=key, value=b"x", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert {k: partitioner.partition_for(k, 7, name) for k in keys} == placed
    assert len(set(placed.values())) == 7  # the keys really spread, so a wrong hash could not pass by luck

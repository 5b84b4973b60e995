"""The cached key partitioner gives exactly the partitions aiokafka's default one gives."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from aforo.shared.kafka import CachedKeyPartitioner, murmur2


@given(st.binary(max_size=1024))
def test_murmur2_is_aiokafkas_for_any_bytes(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


def test_murmur2_is_aiokafkas_for_every_length_up_to_300_bytes() -> None:
    data = bytes(range(256)) * 2
    for length in range(301):
        assert murmur2(data[:length]) == aiokafka_murmur2(data[:length])


@given(st.lists(st.binary(max_size=80), min_size=1, max_size=200), st.integers(min_value=1, max_value=64))
def test_same_partition_as_aiokafka_for_any_key(keys: list[bytes], partitions: int) -> None:
    cached = CachedKeyPartitioner(max_keys=16)  # small: eviction is exercised too
    default = DefaultPartitioner()
    all_partitions = list(range(partitions))
    for key in keys + keys:  # every key twice: a miss, then (usually) a hit
        assert cached(key, all_partitions, all_partitions) == default(key, all_partitions, all_partitions)


def test_same_partition_for_ten_thousand_tenant_customer_keys() -> None:
    cached = CachedKeyPartitioner()
    default = DefaultPartitioner()
    for partitions in (1, 3, 12, 50):
        all_partitions = list(range(partitions))
        for n in range(10_000):
            key = f"tenant-{n % 37}:customer-{n}".encode()
            assert cached(key, all_partitions, all_partitions) == default(key, all_partitions, all_partitions)


def test_keyless_records_go_to_an_available_partition() -> None:
    cached = CachedKeyPartitioner()
    assert cached(None, [0, 1, 2], [2]) == 2
    assert cached(None, [0, 1, 2], []) in (0, 1, 2)


def test_the_cache_stays_bounded() -> None:
    cached = CachedKeyPartitioner(max_keys=100)
    for n in range(1000):
        cached(str(n).encode(), [0, 1], [0, 1])
    assert len(cached._hashes) == 100


@given(st.lists(st.binary(max_size=80), min_size=1, max_size=100), st.integers(min_value=1, max_value=64))
def test_a_partition_handed_to_send_is_the_one_aiokafka_would_choose(
    keys: list[bytes], partitions: int
) -> None:
    cached = CachedKeyPartitioner()
    default = DefaultPartitioner()
    ids = list(range(partitions))
    for key in keys:
        assert cached.partition_for(key, ids) == default(key, ids, ids)

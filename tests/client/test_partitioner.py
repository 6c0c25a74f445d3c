"""Partitioners: SipHash-2-4 against reference vectors and spu.md §9.1's table; round robin."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.client.partitioner import (
    RoundRobinPartitioner, SiphashRoundRobinPartitioner, SpecificPartitioner, key_hash,
    partition_for_key, siphash24,
)

# spu.md §9.1: key, hash, partitions for n = 1, 2, 3, 4, 5, 8
TABLE = [
    (b"", 0xE849E8BB6FFE2567, [0, 1, 2, 3, 4, 7]),
    (b"k", 0x9178E6D5B39EB48A, [0, 0, 1, 2, 3, 2]),
    (b"key", 0x1BF94D5174027FCA, [0, 0, 2, 2, 1, 2]),
    (b"hello", 0xD17F96BD0852CE12, [0, 0, 2, 2, 4, 2]),
    (b"a", 0xFEB15081B68CA86B, [0, 1, 1, 3, 2, 3]),
    (b"b", 0xCAA506B8C1EBD37C, [0, 0, 0, 0, 0, 4]),
]

# SipHash-2-4 reference vectors (Aumasson & Bernstein): key 00..0f, message 00..(n-1).
REF_K0 = int.from_bytes(bytes(range(8)), "little")
REF_K1 = int.from_bytes(bytes(range(8, 16)), "little")
REF = {
    0: 0x726FDB47DD0E0E31,
    1: 0x74F839C593DC67FD,
    7: 0xAB0200F58B01D137,
    8: 0x93F5F5799A932462,
    15: 0xA129CA6149BE45E5,
    63: 0x958A324CEB064572,
}


@pytest.mark.parametrize("n,expected", REF.items())
def test_siphash_reference_vectors(n, expected):
    assert siphash24(bytes(range(n)), REF_K0, REF_K1) == expected


@pytest.mark.parametrize("key,hashed,parts", TABLE, ids=[repr(t[0]) for t in TABLE])
def test_fluvio_partition_table(key, hashed, parts):
    assert key_hash(key) == hashed
    assert siphash24(struct.pack("<Q", len(key)) + key) == hashed  # length prefix, then bytes
    assert [partition_for_key(key, n) for n in (1, 2, 3, 4, 5, 8)] == parts
    assert key_hash(bytearray(key)) == hashed


@settings(max_examples=100)
@given(st.binary(max_size=600), st.integers(1, 1000))
def test_cached_and_long_keys_agree_with_the_plain_hash(key, n):
    expected = siphash24(struct.pack("<Q", len(key)) + key)
    assert key_hash(key) == expected
    assert key_hash(key) == expected  # again, from the cache when short
    assert partition_for_key(key, n) == expected % n


def test_round_robin_counts_from_zero_for_every_record():
    p = RoundRobinPartitioner()
    assert [p.partition(None, 3) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert p.partition(b"key", 3) == 1  # keys are ignored


def test_siphash_round_robin_hashes_keys_and_rotates_the_rest():
    p = SiphashRoundRobinPartitioner()
    assert p.partition(b"", 5) == 4
    assert p.partition(None, 5) == 0
    assert p.partition(b"hello", 5) == 4
    assert p.partition(None, 5) == 1  # keyed records do not advance the counter
    assert p.partition(None, 5) == 2
    assert p.partition(b"b", 8) == 4


def test_specific_partitioner():
    p = SpecificPartitioner(2)
    assert [p.partition(k, 3) for k in (None, b"a", b"b")] == [2, 2, 2]
    with pytest.raises(ValueError, match="does not exist"):
        p.partition(None, 2)
    with pytest.raises(ValueError):
        SpecificPartitioner(-1)


def test_partition_count_must_be_positive():
    with pytest.raises(ValueError):
        partition_for_key(b"k", 0)
    with pytest.raises(ValueError):
        RoundRobinPartitioner().partition(None, 0)

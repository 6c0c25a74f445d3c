"""Offset resolution (spu.md §9.2) and the small value conversions of ``fluvial.client.types``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.client.types import (
    Compression, Isolation, Offset, Record, compression_from, isolation_from,
    topic_compression_from,
)
from fluvial.errors import ConfigError
from fluvial.protocol.sc_objects import CompressionAlgorithm


@pytest.mark.parametrize("offset, expected", [
    (Offset.beginning(), 10),
    (Offset.from_beginning(5), 15),
    (Offset.from_beginning(100), 50),  # clamped to hw
    (Offset.end(), 50),
    (Offset.from_end(1), 49),
    (Offset.from_end(100), 10),  # clamped to start
    (Offset.absolute(7), 7),  # absolute is never clamped
    (Offset.absolute(1000), 1000),
])
def test_resolve_worked_examples_start_10_hw_50(offset, expected):
    assert offset.resolve(10, 50) == expected


@pytest.mark.parametrize("offset, expected", [
    (Offset.beginning(), 21),
    (Offset.from_beginning(4), 25),
    (Offset.end(), 21),  # the stored consumer offset replaces hw as the base too
    (Offset.from_end(3), 18),
    (Offset.absolute(3), 3),
])
def test_a_stored_consumer_offset_is_the_base_of_relative_offsets(offset, expected):
    assert offset.resolve(10, 50, consumer_offset=21) == expected


def test_a_consumer_offset_past_the_end_is_clamped():
    assert Offset.beginning().resolve(0, 5, consumer_offset=9) == 5


@settings(max_examples=200)
@given(start=st.integers(0, 1000), extra=st.integers(0, 1000), n=st.integers(0, 3000),
       kind=st.sampled_from(["from_beginning", "from_end"]),
       stored=st.one_of(st.none(), st.integers(0, 3000)))
def test_relative_offsets_always_land_between_start_and_hw(start, extra, n, kind, stored):
    hw = start + extra
    got = getattr(Offset, kind)(n).resolve(start, hw, stored)
    assert start <= got <= hw


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None])
def test_offsets_refuse_negative_or_non_int_values(bad):
    with pytest.raises(ValueError):
        Offset.absolute(bad)
    with pytest.raises(ValueError):
        Offset.from_end(bad)


def test_offsets_compare_and_print_by_value():
    assert Offset.beginning() == Offset.from_beginning(0)
    assert Offset.end() == Offset.from_end(0)
    assert Offset.absolute(3) != Offset.from_beginning(3)
    assert repr(Offset.end()) == "Offset.end()"
    assert repr(Offset.from_end(2)) == "Offset.from_end(2)"


def test_record_fields_and_strings():
    r = Record((1, 5, None, "héllo".encode(), 123))
    assert (r.partition, r.offset, r.key, r.value, r.timestamp) == (1, 5, None, "héllo".encode(), 123)
    assert r.value_string() == "héllo"
    assert r.key_string() == ""
    assert Record((0, 0, b"k", b"", -1)).key_string() == "k"


def test_compression_names():
    assert compression_from(None) is None
    assert compression_from("GZIP") is Compression.Gzip
    assert compression_from("none") is Compression.None_
    assert compression_from(Compression.Zstd) is Compression.Zstd
    with pytest.raises(ConfigError, match="unknown compression"):
        compression_from("brotli")
    assert topic_compression_from(None) is CompressionAlgorithm.Any
    assert topic_compression_from("any") is CompressionAlgorithm.Any
    assert topic_compression_from("zstd") is CompressionAlgorithm.Zstd
    assert topic_compression_from(Compression.Lz4) is CompressionAlgorithm.Lz4


def test_isolation_names():
    assert isolation_from(None) is Isolation.ReadUncommitted
    assert isolation_from("read_committed") is Isolation.ReadCommitted
    assert isolation_from(Isolation.ReadUncommitted) is Isolation.ReadUncommitted
    with pytest.raises(ConfigError):
        isolation_from("serializable")


def test_record_is_a_tuple_with_named_fields():
    r = Record((2, 9, b"k", b"v", 77))
    assert r == (2, 9, b"k", b"v", 77) and isinstance(r, tuple)
    assert r._asdict() == {"partition": 2, "offset": 9, "key": b"k", "value": b"v", "timestamp": 77}
    assert repr(r) == "Record(partition=2, offset=9, key=b'k', value=b'v', timestamp=77)"
    import pickle

    assert pickle.loads(pickle.dumps(r)) == r and type(pickle.loads(pickle.dumps(r))) is Record

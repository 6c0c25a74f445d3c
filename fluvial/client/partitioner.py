"""Choosing a partition for each produced record, as Fluvio's producer does (spu.md §9.1).

* Key present: SipHash-2-4 with k0 = k1 = 0 over ``u64_le(len(key)) || key`` (Rust's ``Hash`` for a
  byte slice writes the length first), then ``hash % partition_count``.
* No key: round robin, a per-producer counter starting at 0 (``counter++ % partition_count``).
* ``SpecificPartitioner(p)`` sends everything to partition ``p``.

Worked example: ``siphash24(b"")`` is ``0xe849e8bb6ffe2567``; with 5 partitions an empty key goes to
partition ``0xe849e8bb6ffe2567 % 5 = 4``. The official Python client always sends a key (``b""`` for
``send_string``), so all its ``send_string`` records of a producer land in that one partition.
"""

from __future__ import annotations

import functools
import struct

_M = 0xFFFF_FFFF_FFFF_FFFF
# "somepseudorandomlygeneratedbytes" XOR the zero key
_V0 = 0x736F6D6570736575
_V1 = 0x646F72616E646F6D
_V2 = 0x6C7967656E657261
_V3 = 0x7465646279746573
_WORDS: dict[int, struct.Struct] = {}


def _sip_rounds(v0: int, v1: int, v2: int, v3: int, data, total_len: int,
                first_words: tuple[int, ...] = ()) -> int:
    """Absorb ``first_words`` then ``data`` into the state, finalize; ``total_len`` is the whole
    message's length (for the last block)."""
    n = len(data)
    whole = n & ~7
    nwords = whole >> 3
    st = _WORDS.get(nwords)
    if st is None:
        st = _WORDS[nwords] = struct.Struct(f"<{nwords}Q")
    tail = (total_len & 0xFF) << 56 | int.from_bytes(data[whole:], "little")
    m = _M
    for w in (*first_words, *st.unpack_from(data), tail):
        v3 ^= w
        for _ in (0, 1):  # c = 2 compression rounds
            v0 = (v0 + v1) & m
            v1 = ((v1 << 13) | (v1 >> 51)) & m ^ v0
            v0 = ((v0 << 32) | (v0 >> 32)) & m
            v2 = (v2 + v3) & m
            v3 = ((v3 << 16) | (v3 >> 48)) & m ^ v2
            v0 = (v0 + v3) & m
            v3 = ((v3 << 21) | (v3 >> 43)) & m ^ v0
            v2 = (v2 + v1) & m
            v1 = ((v1 << 17) | (v1 >> 47)) & m ^ v2
            v2 = ((v2 << 32) | (v2 >> 32)) & m
        v0 ^= w
    v2 ^= 0xFF
    for _ in (0, 1, 2, 3):  # d = 4 finalization rounds
        v0 = (v0 + v1) & m
        v1 = ((v1 << 13) | (v1 >> 51)) & m ^ v0
        v0 = ((v0 << 32) | (v0 >> 32)) & m
        v2 = (v2 + v3) & m
        v3 = ((v3 << 16) | (v3 >> 48)) & m ^ v2
        v0 = (v0 + v3) & m
        v3 = ((v3 << 21) | (v3 >> 43)) & m ^ v0
        v2 = (v2 + v1) & m
        v1 = ((v1 << 17) | (v1 >> 47)) & m ^ v2
        v2 = ((v2 << 32) | (v2 >> 32)) & m
    return v0 ^ v1 ^ v2 ^ v3


def siphash24(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-2-4 of ``data`` with the 128-bit key (k0, k1), as an unsigned 64-bit int."""
    return _sip_rounds(_V0 ^ k0, _V1 ^ k1, _V2 ^ k0, _V3 ^ k1, data, len(data))


_CACHED_KEY_BYTES = 256


@functools.lru_cache(maxsize=4096)
def _key_hash_cached(key: bytes) -> int:
    return _sip_rounds(_V0, _V1, _V2, _V3, key, len(key) + 8, (len(key),))


def key_hash(key: bytes) -> int:
    """Rust's ``Hash`` of a byte slice through ``SipHasher::new()``: SipHash-2-4 (zero key) of
    ``u64_le(len(key)) || key``. Short keys are cached (producers tend to repeat keys)."""
    if len(key) <= _CACHED_KEY_BYTES:
        return _key_hash_cached(key if type(key) is bytes else bytes(key))
    return _sip_rounds(_V0, _V1, _V2, _V3, key, len(key) + 8, (len(key),))


def partition_for_key(key: bytes, partition_count: int) -> int:
    """The partition Fluvio's default partitioner gives a keyed record.

    Raises:
        ValueError: ``partition_count`` < 1.
    """
    if partition_count < 1:
        raise ValueError(f"partition_count must be at least 1, not {partition_count}")
    return key_hash(key) % partition_count


class RoundRobinPartitioner:
    """Every record, keyed or not, to the next partition in turn, starting at 0."""

    __slots__ = ("_counter",)

    def __init__(self) -> None:
        self._counter = 0

    def partition(self, key: bytes | None, partition_count: int) -> int:
        if partition_count < 1:
            raise ValueError(f"partition_count must be at least 1, not {partition_count}")
        c = self._counter
        self._counter = c + 1
        return c % partition_count

    def take_turns(self, count: int, partition_count: int) -> int:
        """Take ``count`` turns at once, as ``count`` calls of ``partition`` would; returns the
        first one's partition (record ``k`` of them goes to ``(first + k) % partition_count``).

        Example: counter at 4, ``take_turns(5, 3)`` -> 1 (partitions 1, 2, 0, 1, 2), counter 9.
        """
        if partition_count < 1:
            raise ValueError(f"partition_count must be at least 1, not {partition_count}")
        c = self._counter
        self._counter = c + count
        return c % partition_count


class SiphashRoundRobinPartitioner(RoundRobinPartitioner):
    """Fluvio's default: keyed records by SipHash, records without a key round robin."""

    __slots__ = ()

    def partition(self, key: bytes | None, partition_count: int) -> int:
        if key is None:
            return super().partition(None, partition_count)
        return partition_for_key(key, partition_count)


class SpecificPartitioner:
    """Everything to one partition (``set_specific_partitioner``)."""

    __slots__ = ("partition_id",)

    def __init__(self, partition_id: int) -> None:
        if partition_id < 0:
            raise ValueError(f"partition must not be negative, not {partition_id}")
        self.partition_id = partition_id

    def partition(self, key: bytes | None, partition_count: int) -> int:
        """``partition_id``; a ``ValueError`` if the topic has no such partition."""
        if self.partition_id >= partition_count:
            raise ValueError(f"partition {self.partition_id} does not exist "
                             f"(the topic has {partition_count})")
        return self.partition_id


__all__ = [
    "RoundRobinPartitioner", "SiphashRoundRobinPartitioner", "SpecificPartitioner", "key_hash",
    "partition_for_key", "siphash24",
]

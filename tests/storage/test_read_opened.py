"""ReadResult.opened: a read's batches as pieces on duplicated descriptors, for sendfile.

The descriptors must keep naming the files the read counted, whatever retention, compaction,
truncation or closing do to the replica meanwhile; ``intact()`` says whether the log still
holds those bytes where the read found them.
"""

from __future__ import annotations

import os

import pytest

from fluvial.protocol.record import encode_batch
from fluvial.protocol.record_headers import ATTR_HEADERS, encode_headers_batch
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.errors import OffsetOutOfRange
from fluvial.storage.replica import OpenSlice, Replica


def open_log(tmp_path, **kw) -> Replica:
    return Replica.open(tmp_path, "t", 0, ReplicaConfig(segment_max_bytes=kw.pop("segment", 10_000), **kw))


def fill(r: Replica, n: int, size: int = 3000) -> None:
    for i in range(n):
        r.append(encode_batch([bytes([i % 251]) * size]), leader_epoch=1)
    r.flush()
    r.set_hw(r.leo)


def pieces_bytes(pieces) -> bytes:
    out = []
    for p in pieces:
        if isinstance(p, OpenSlice):
            data = os.pread(p.fd, p.length, p.position)
            assert len(data) == p.length
            out.append(data)
        else:
            out.append(p)
    return b"".join(out)


def test_opened_pieces_hold_the_bytes_of_the_read_across_segments(tmp_path):
    r = open_log(tmp_path)
    fill(r, 20)
    assert len(r.segments) > 3
    for start, max_bytes in ((0, 1 << 20), (5, 9000), (7, 1), (19, 1 << 20)):
        read = r.read(start, max_bytes)
        with read.opened() as pieces:
            assert pieces_bytes(pieces) == read.read_bytes()
    r.close()


@pytest.mark.parametrize("change", ["close", "empty", "retention"])
def test_opened_descriptors_outlive_what_happens_to_the_segments(tmp_path, change):
    """The replica closes (or deletes) the segment files under an open read: the pieces still
    read the bytes the read counted, never another file that got the same descriptor number."""
    r = open_log(tmp_path, retention_seconds=1)
    fill(r, 20)
    read = r.read(0, 1 << 20)
    with read.opened() as pieces:
        want = pieces_bytes(pieces)
        if change == "close":
            r.close()
        elif change == "empty":
            r.truncate_fully_and_start_at(1000)
        else:
            deleted = r.enforce_retention(now=10**12)
            assert deleted
        # new files take the lowest free descriptor numbers, those the replica just closed
        others = [os.open(os.devnull, os.O_RDONLY) for _ in range(8)]
        try:
            assert pieces_bytes(pieces) == want
        finally:
            for fd in others:
                os.close(fd)
        assert read.intact() is (change == "retention")
    if change != "close":
        r.close()


def test_a_truncation_makes_the_read_stale(tmp_path):
    r = open_log(tmp_path)
    fill(r, 10)
    read = r.read(6, 1 << 20)
    assert read.intact()
    r.truncate_to(8)
    assert not read.intact()
    with pytest.raises(OffsetOutOfRange):
        with read.opened():
            pass
    r.close()


def test_the_read_says_whether_any_batch_carries_headers(tmp_path):
    r = open_log(tmp_path, segment=1 << 20)
    r.append(encode_batch([b"a"]), leader_epoch=1)
    r.append(encode_headers_batch([(None, b"b", [("h", b"v")])], first_timestamp=1), leader_epoch=1)
    r.append(encode_batch([b"c"]), leader_epoch=1)
    r.flush()
    assert not r.read(0, 1).attributes & ATTR_HEADERS
    assert r.read(0, 1 << 20).attributes & ATTR_HEADERS
    assert r.read(1, 1).attributes & ATTR_HEADERS
    assert not r.read(2, 1 << 20).attributes & ATTR_HEADERS
    r.close()

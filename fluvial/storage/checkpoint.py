"""Checkpoint files: written whole, atomically, and durably.

``replication.chk`` (Fluvio's name and format) holds the high watermark::

    hw  i64 BE   8 bytes, nothing else

``leader-epoch.chk`` (Kafka's text format) holds the leader-epoch cache::

    0                      version
    2                      number of entries
    1 0                    epoch start_offset
    3 150

``replication-offset-checkpoint`` (one per SPU data directory, Kafka's name; binary, all
integers big-endian) holds the HW of every replica of the SPU, so that one file write per interval
checkpoints them all::

    magic b"FHWC"  version i16 (0)  count i32
    count x (topic_len i16, topic utf-8, partition i32, topic_id i64, hw i64)
    crc32c u32     over every byte before it

A file that is torn, truncated, of another version, or whose CRC does not match decodes to None
and is treated as absent (each replica then falls back to its own ``replication.chk``).

``write_atomic`` writes ``<name>.tmp``, fsyncs it, renames it over ``<name>`` and fsyncs the
directory, so a reader sees either the old file or the new one, never a mix, and after a crash
or a power cut the newest completed checkpoint survives. A stray ``.tmp`` left by a crash is
ignored and overwritten next time (``Replica.open`` deletes it). Segment indexes are written the
same way (``fluvial.durable.replace_durably``).
"""

from __future__ import annotations

import struct

from crc32c import crc32c

from fluvial.durable import replace_durably
from fluvial.storage.epochs import EpochEntry, LeaderEpochCache
from fluvial.storage.errors import os_error

HW_CHECKPOINT = "replication.chk"
EPOCH_CHECKPOINT = "leader-epoch.chk"
SHARED_HW_CHECKPOINT = "replication-offset-checkpoint"

_HW = struct.Struct(">q")
_EPOCH_FILE_VERSION = 0
_SHARED_MAGIC = b"FHWC"
_SHARED_HEAD = struct.Struct(">4shi")
_SHARED_ENTRY = struct.Struct(">iqq")  # partition, topic_id, hw (after the topic)
_TOPIC_LEN = struct.Struct(">h")
_CRC = struct.Struct(">I")
_SHARED_VERSION = 0

#: (topic, partition) -> (topic incarnation id, hw): what the shared HW checkpoint holds.
SharedHws = dict[tuple[str, int], tuple[int, int]]


def write_atomic(path: str, data: bytes) -> None:
    """``replace_durably`` for checkpoints, with typed errors.

    Raises:
        DiskFull, StorageIOError: the old file is left as it was (unless only the final
            directory fsync failed).
    """
    try:
        replace_durably(path, data)
    except OSError as exc:
        raise os_error(exc, f"writing checkpoint {path}") from exc


def read_file(path: str) -> bytes | None:
    """The file's bytes, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def encode_hw(hw: int) -> bytes:
    return _HW.pack(hw)


def decode_hw(data: bytes) -> int | None:
    """The HW in a replication.chk, or None if the bytes are not one."""
    if len(data) != _HW.size:
        return None
    (hw,) = _HW.unpack(data)
    return hw if hw >= 0 else None


def encode_epochs(cache: LeaderEpochCache) -> bytes:
    lines = [str(_EPOCH_FILE_VERSION), str(len(cache.entries))]
    lines += [f"{e.epoch} {e.start_offset}" for e in cache.entries]
    return ("\n".join(lines) + "\n").encode("ascii")


def decode_epochs(data: bytes) -> LeaderEpochCache | None:
    """The cache in a leader-epoch.chk, or None if the bytes are not one (wrong version, count,
    syntax, or entries that do not increase)."""
    try:
        lines = data.decode("ascii").split("\n")
    except UnicodeDecodeError:
        return None
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 2 or lines[0] != str(_EPOCH_FILE_VERSION):
        return None
    try:
        count = int(lines[1])
        entries = [EpochEntry(*map(int, line.split(" "))) for line in lines[2:]]
    except (ValueError, TypeError):
        return None
    if count != len(entries):
        return None
    for prev, cur in zip(entries, entries[1:]):
        if cur.epoch <= prev.epoch or cur.start_offset <= prev.start_offset:
            return None
    if any(e.epoch < 0 or e.start_offset < 0 for e in entries):
        return None
    return LeaderEpochCache(entries)


def encode_shared_hws(entries: SharedHws) -> bytes:
    """The bytes of a ``replication-offset-checkpoint`` holding ``entries`` (sorted by key)."""
    parts = [_SHARED_HEAD.pack(_SHARED_MAGIC, _SHARED_VERSION, len(entries))]
    for (topic, partition), (topic_id, hw) in sorted(entries.items()):
        name = topic.encode("utf-8")
        parts += [_TOPIC_LEN.pack(len(name)), name, _SHARED_ENTRY.pack(partition, topic_id, hw)]
    body = b"".join(parts)
    return body + _CRC.pack(crc32c(body))


def decode_shared_hws(data: bytes) -> SharedHws | None:
    """The entries of a ``replication-offset-checkpoint``, or None if the bytes are not one
    (torn, truncated, bad CRC, other version, trailing bytes, negative HW, duplicate keys)."""
    if len(data) < _SHARED_HEAD.size + _CRC.size:
        return None
    body, (crc,) = data[:-_CRC.size], _CRC.unpack(data[-_CRC.size:])
    if crc32c(body) != crc:
        return None
    magic, version, count = _SHARED_HEAD.unpack_from(body)
    if magic != _SHARED_MAGIC or version != _SHARED_VERSION or count < 0:
        return None
    out: SharedHws = {}
    pos = _SHARED_HEAD.size
    try:
        for _ in range(count):
            (n,) = _TOPIC_LEN.unpack_from(body, pos)
            if n < 0 or pos + _TOPIC_LEN.size + n > len(body):
                return None
            topic = body[pos + _TOPIC_LEN.size:pos + _TOPIC_LEN.size + n].decode("utf-8")
            pos += _TOPIC_LEN.size + n
            partition, topic_id, hw = _SHARED_ENTRY.unpack_from(body, pos)
            pos += _SHARED_ENTRY.size
            if hw < 0 or partition < 0 or (topic, partition) in out:
                return None
            out[(topic, partition)] = (topic_id, hw)
    except (struct.error, UnicodeDecodeError):
        return None
    return out if pos == len(body) else None

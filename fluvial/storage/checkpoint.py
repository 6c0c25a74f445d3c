"""Checkpoint files: written whole, atomically, and durably.

``replication.chk`` (Fluvio's name and format) holds the high watermark::

    hw  i64 BE   8 bytes, nothing else

``leader-epoch.chk`` (Kafka's text format) holds the leader-epoch cache::

    0                      version
    2                      number of entries
    1 0                    epoch start_offset
    3 150

``write_atomic`` writes ``<name>.tmp``, fsyncs it, renames it over ``<name>`` and fsyncs the
directory, so a reader sees either the old file or the new one, never a mix, and after a crash
or a power cut the newest completed checkpoint survives. A stray ``.tmp`` left by a crash is
ignored and overwritten next time (``Replica.open`` deletes it). Segment indexes are written the
same way (``fluvial.durable.replace_durably``).
"""

from __future__ import annotations

import struct

from fluvial.durable import replace_durably
from fluvial.storage.epochs import EpochEntry, LeaderEpochCache
from fluvial.storage.errors import os_error

HW_CHECKPOINT = "replication.chk"
EPOCH_CHECKPOINT = "leader-epoch.chk"

_HW = struct.Struct(">q")
_EPOCH_FILE_VERSION = 0


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

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
same way (``replace_durably``).
"""

from __future__ import annotations

import os
import struct

from fluvial.storage.epochs import EpochEntry, LeaderEpochCache
from fluvial.storage.errors import os_error

HW_CHECKPOINT = "replication.chk"
EPOCH_CHECKPOINT = "leader-epoch.chk"
TMP_SUFFIX = ".tmp"

_HW = struct.Struct(">q")
_EPOCH_FILE_VERSION = 0


def fsync_dir(path: str) -> None:
    """fsync a directory so that creations, renames and deletions in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, and fsync the parent of every directory it
    creates: a directory whose entry in its parent was never fsynced can vanish, with every
    file in it, at a power cut."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    make_dirs_durable(parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    fsync_dir(parent)


def replace_durably(path: str, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``: write ``<path>.tmp``, fsync, rename, fsync
    the directory. Raises OSError; the temp file is removed and the old file left as it was,
    unless only the final directory fsync failed."""
    tmp = path + TMP_SUFFIX
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or ".")


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

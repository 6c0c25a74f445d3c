"""Durable file updates: a file replaced whole (write, fsync, rename, fsync the directory), and
directories whose creation survives a power cut.

Neutral ground for every layer that keeps state on disk: storage's checkpoints and segment
indexes, the SC's metadata files, the SPU's incarnation files. A file written with
``replace_durably`` is, after a crash or a power cut, either the old file or the new one, never a
mix. Plain ``OSError`` comes out; callers give it their own type.
"""

from __future__ import annotations

import os
import threading

__all__ = ["ENV_VAR", "TMP_SUFFIX", "fsync_dir", "make_dirs_durable", "record_durable", "replace_durably",
           "use_journal", "write_synced"]

#: What ``replace_durably`` appends to the path it writes first; a stray one is a crash's leftover.
TMP_SUFFIX = ".tmp"


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


def write_synced(path: str | os.PathLike[str], data: bytes) -> None:
    """Create or truncate the file at ``path``, write all of ``data`` and fsync it (its name is
    not durable until its directory is fsynced). Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: str, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``: write ``<path>.tmp``, fsync, rename, fsync
    the directory. Raises OSError; the temp file is removed and the old file left as it was,
    unless only the final directory fsync failed."""
    tmp = path + TMP_SUFFIX
    try:
        write_synced(tmp, data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or ".")


# ------------------------------------------------------------------------- the sync journal
# A test facility (fluvial.storage.journal describes it): one line per fsync of a file whose
# unsynced tail a simulated power cut drops (segments, the SC's metadata journal).

ENV_VAR = "FLUVIAL_SYNC_JOURNAL"

_UNREAD = object()
_fd: object = _UNREAD  # _UNREAD, None (no journal) or an int descriptor
_open_lock = threading.Lock()


def use_journal(path: str | None) -> None:
    """Journal to ``path`` from now on (None: stop journaling). For in-process tests; a server
    reads ``FLUVIAL_SYNC_JOURNAL`` at its first fsync instead."""
    global _fd
    with _open_lock:
        if isinstance(_fd, int):
            os.close(_fd)
        _fd = None if path is None else os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _journal_fd() -> int | None:
    global _fd
    if _fd is _UNREAD:
        with _open_lock:
            if _fd is _UNREAD:
                path = os.environ.get(ENV_VAR)
                _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None
    return _fd  # type: ignore[return-value]


def record_durable(path: str, size: int) -> None:
    """Journal that the first ``size`` bytes of the file ``path`` are durable (nothing when no
    journal is configured)."""
    fd = _fd if _fd is not _UNREAD else _journal_fd()
    if fd is not None:
        os.write(fd, f"{os.path.abspath(path)}\t{size}\n".encode())

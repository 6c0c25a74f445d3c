"""Where the SC keeps its objects between restarts.

``MetadataBackend`` is the small interface (two methods, below); ``FileBackend`` is the embedded
one. Objects are stored in the wire encoding at version 19, the version the Fluvio client
speaks, plus fluvial's replication record (``StoredObject.meta``) as JSON.

``save(batch, changed)`` semantics, for every implementation: ``batch`` maps each kind (label) the
transaction touched to *every* object of that kind after it; ``changed`` maps the same labels to
the names written or deleted (a name in ``changed`` but not in ``batch[label]`` was deleted).
``changed=None`` means "unknown: store the batch whole". The call persists the whole transaction
or raises, and then nothing of it may be visible after a restart (as far as the medium allows). A
backend may use either argument: write only the changed objects (this one, an etcd one) or
rewrite the kinds whole.

``FileBackend`` keeps one snapshot file per kind (``<label>.meta``) and a journal,
``changes.log``: each transaction with a ``changed`` set is one appended, CRC-checked entry
holding the new version of every changed object (or its deletion), fsynced before ``save``
returns; so the cost of a change is the size of the change, not of the cluster. When the journal
passes ``compact_bytes`` (or a save comes without ``changed``) every kind is rewritten as a
snapshot (write + fsync under a temporary name, then renames and a directory fsync) and the
journal is emptied. Loading a kind reads its snapshot and replays the journal over it, in order.

Why a crash anywhere is safe: an entry is appended whole or is a torn tail (short or bad CRC),
which loading ignores and cuts off (its save had not returned). Every journal entry predates the
snapshots of a compaction, and replaying entries in order ends, for every name they touch, at its
last journaled version, which is what a snapshot taken after them holds: replaying an old journal
over new (or half-renamed) snapshots changes nothing. A snapshot file starts with a magic, a
CRC-32C and a length, so a torn or corrupt file is detected and reported instead of silently read.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from crc32c import crc32c

from fluvial.metadata.store import StoredObject
from fluvial.durable import fsync_dir, record_durable, write_synced
from fluvial.protocol.codec import BOOL, BYTES, I64, STR, DecodeError, Reader, Vec, message, wire

log = logging.getLogger("fluvial.sc")

STORE_VERSION = 19
_MAGIC = b"FLVMETA1"
_HEAD = struct.Struct(">8sII")  # magic, crc32c(body), len(body)
_TMP = ".tmp"


@message
class _Record:
    name: str = wire(STR)
    epoch: int = wire(I64)
    spec: bytes = wire(BYTES)
    status: bytes = wire(BYTES)
    meta: str = wire(STR)  # JSON; "" for kinds without a record


_RECORDS = Vec(_Record)

# builds an object's record from its stored JSON and its decoded spec; None: the kind has none
MetaReader = Callable[[dict, Any], Any]


class CorruptMetadata(Exception):
    pass


def decode_records(data: bytes, where: str) -> list[_Record]:
    """The records of one snapshot (``FileBackend.encode``'s format); CorruptMetadata naming
    ``where`` when it is torn or corrupt."""
    if len(data) < _HEAD.size:
        raise CorruptMetadata(f"{where}: truncated header")
    magic, crc, n = _HEAD.unpack_from(data)
    body = data[_HEAD.size:]
    if magic != _MAGIC or n != len(body) or crc32c(body) != crc:
        raise CorruptMetadata(f"{where}: bad magic, length or CRC")
    try:
        return _RECORDS.decode(Reader(body), 0)
    except DecodeError as e:
        raise CorruptMetadata(f"{where}: {e}") from e


def decode_record(r: _Record, spec_cls: type, status_cls: type,
                  read_meta: MetaReader | None = None) -> StoredObject:
    spec = spec_cls.decode(r.spec, STORE_VERSION)
    raw = json.loads(r.meta) if r.meta else {}
    meta = read_meta(raw, spec) if read_meta else None
    return StoredObject(r.name, spec, status_cls.decode(r.status, STORE_VERSION), r.epoch, meta)


def decode_objects(data: bytes, where: str, spec_cls: type, status_cls: type,
                   read_meta: MetaReader | None = None) -> list[StoredObject]:
    """The objects in ``data`` (``FileBackend.encode``'s format); CorruptMetadata naming
    ``where`` when it is torn or corrupt."""
    try:
        return [decode_record(r, spec_cls, status_cls, read_meta) for r in decode_records(data, where)]
    except (DecodeError, ValueError, TypeError, AttributeError) as e:
        raise CorruptMetadata(f"{where}: {e}") from e


class MetadataBackend(Protocol):
    def load(self, label: str, spec_cls: type, status_cls: type,
             read_meta: MetaReader | None = None) -> list[StoredObject]:
        """Every stored object of kind ``label``."""

    def save(self, batch: Mapping[str, list[StoredObject]],
             changed: Mapping[str, set[str]] | None = None) -> None:
        """Persist one transaction: ``batch`` is label -> all its objects now, ``changed`` label
        -> the names written or deleted (None: unknown, store ``batch`` whole); all or none as
        far as the medium allows; raises on failure (module docstring)."""


@message
class _Change:
    label: str = wire(STR)
    deleted: bool = wire(BOOL)
    record: _Record = wire(_Record)  # the deleted object's name only, when ``deleted``


_CHANGES = Vec(_Change)
JOURNAL = "changes.log"
_JOURNAL_MAGIC = b"FLVJRNL1"
_ENTRY = struct.Struct(">II")  # crc32c(body), len(body); body = Vec(_Change) at version 0
COMPACT_BYTES = 4 << 20


class FileBackend:
    def __init__(self, directory: str | os.PathLike, compact_bytes: int = COMPACT_BYTES):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.compact_bytes = compact_bytes
        self._replay: dict[str, list[_Change]] | None = None  # the journal's changes, by label
        self._journal_size = 0
        self._journal_broken = False  # an append failed half-way: compact before appending again

    @property
    def journal_path(self) -> Path:
        return self.dir / JOURNAL

    def _path(self, label: str) -> Path:
        return self.dir / f"{label}.meta"

    def load(self, label: str, spec_cls: type, status_cls: type,
             read_meta: MetaReader | None = None) -> list[StoredObject]:
        try:
            return [decode_record(r, spec_cls, status_cls, read_meta) for r in self._records(label)]
        except (DecodeError, ValueError, TypeError, AttributeError) as e:
            raise CorruptMetadata(f"{label}: {e}") from e

    def _records(self, label: str) -> list[_Record]:
        """The records of ``label``: its snapshot with the journal replayed over it, in order."""
        objects = {r.name: r for r in self._load_snapshot(label)}
        for change in self._journal_changes().get(label, []):
            if change.deleted:
                objects.pop(change.record.name, None)
            else:
                objects[change.record.name] = change.record
        return list(objects.values())

    def _journal_changes(self) -> dict[str, list[_Change]]:
        """The journal's changes by label, read once; a torn tail (an append that never
        returned) is cut off so the next entry follows the last whole one."""
        if self._replay is not None:
            return self._replay
        replay: dict[str, list[_Change]] = {}
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            data = b""
        good = 0
        if data:
            if not data.startswith(_JOURNAL_MAGIC):
                raise CorruptMetadata(f"{JOURNAL}: bad magic")
            pos = good = len(_JOURNAL_MAGIC)
            while pos + _ENTRY.size <= len(data):
                crc, n = _ENTRY.unpack_from(data, pos)
                body = data[pos + _ENTRY.size:pos + _ENTRY.size + n]
                if len(body) < n or crc32c(body) != crc:
                    break  # torn tail
                try:
                    changes = _CHANGES.decode(Reader(body), 0)
                except DecodeError as e:
                    raise CorruptMetadata(f"{JOURNAL}: entry at {pos}: {e}") from e
                for c in changes:
                    replay.setdefault(c.label, []).append(c)
                pos = good = pos + _ENTRY.size + n
            if good < len(data):
                with open(self.journal_path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
        self._journal_size = good
        self._replay = replay
        return replay

    def _load_snapshot(self, label: str) -> list[_Record]:
        path = self._path(label)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        return decode_records(data, path.name)

    @staticmethod
    def _record(o: StoredObject) -> _Record:
        return _Record(o.name, o.epoch, o.spec.encode(STORE_VERSION), o.status.encode(STORE_VERSION),
                       json.dumps(o.meta.to_json(), sort_keys=True) if o.meta is not None else "")

    @classmethod
    def encode(cls, objects: list[StoredObject]) -> bytes:
        return cls._encode_records([cls._record(o) for o in objects])

    @staticmethod
    def _encode_records(records: list[_Record]) -> bytes:
        w = bytearray()
        _RECORDS.encode(w, records, 0)
        return _HEAD.pack(_MAGIC, crc32c(w), len(w)) + bytes(w)

    def save(self, batch: Mapping[str, list[StoredObject]],
             changed: Mapping[str, set[str]] | None = None) -> None:
        self._journal_changes()  # a fresh backend appends after what is there
        if changed is None or self._journal_broken:
            self._compact(batch)
            return
        changes = []
        for label, names in changed.items():
            now = {o.name: o for o in batch.get(label, [])}
            for name in sorted(names):
                o = now.get(name)
                changes.append(_Change(label, True, _Record(name, 0, b"", b"", "")) if o is None
                               else _Change(label, False, self._record(o)))
        if changes:
            self._append(changes)
        if self._journal_size > self.compact_bytes:
            try:
                self._compact({})
            except OSError as e:  # the journal holds the change: compaction is retried later
                log.warning("metadata compaction failed (retried at the next save): %s", e)

    def _append(self, changes: list[_Change]) -> None:
        """One journal entry for one transaction, fdatasynced before this returns (and the
        size recorded for the power-loss tests, which cut ``changes.log`` back to it)."""
        w = bytearray()
        _CHANGES.encode(w, changes, 0)
        entry = _ENTRY.pack(crc32c(w), len(w)) + bytes(w)
        path = self.journal_path
        fresh = self._journal_size == 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            try:
                os.lseek(fd, self._journal_size, os.SEEK_SET)
                data = memoryview((_JOURNAL_MAGIC if fresh else b"") + entry)
                while data:
                    data = data[os.write(fd, data):]
                size = self._journal_size + len(entry) + (len(_JOURNAL_MAGIC) if fresh else 0)
                os.fdatasync(fd)
                record_durable(str(path), size)
                if fresh:
                    fsync_dir(str(self.dir))
            except OSError:
                try:  # no half entry may stay where the next one goes
                    os.ftruncate(fd, self._journal_size)
                except OSError:
                    self._journal_broken = True
                raise
        finally:
            os.close(fd)
        self._journal_size = size
        for c in changes:
            self._replay.setdefault(c.label, []).append(c)

    def _compact(self, batch: Mapping[str, list[StoredObject]]) -> None:
        """Write the kinds of ``batch`` and every kind the journal touches as snapshots, then
        empty the journal. Raises OSError (the journal is then left as it was)."""
        blobs = {label: self._encode_records(self._records(label)) for label in self._journal_changes()
                 if label not in batch}
        blobs.update({label: self.encode(objects) for label, objects in batch.items()})
        self._write_snapshots(blobs)
        write_synced(self.journal_path, b"")
        record_durable(str(self.journal_path), 0)
        self._journal_size = 0
        self._journal_broken = False
        self._replay = {}

    def _write_snapshots(self, blobs: Mapping[str, bytes]) -> None:
        """Each ``<label>.meta`` replaced by its blob: all written and fsynced first (a full disk
        or an I/O error changes nothing), then renamed, then the directory fsynced."""
        written: list[Path] = []
        try:
            for label, blob in blobs.items():
                tmp = self._path(label).with_suffix(_TMP)
                written.append(tmp)
                write_synced(tmp, blob)
        except OSError:
            for tmp in written:
                tmp.unlink(missing_ok=True)
            raise
        for label in blobs:
            os.replace(self._path(label).with_suffix(_TMP), self._path(label))
        fsync_dir(str(self.dir))

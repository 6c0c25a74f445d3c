"""Where the SC keeps its objects between restarts.

``MetadataBackend`` is the small interface; ``FileBackend`` is the embedded one: one file per kind
in the SC's data dir, rewritten whole on every change. A file starts with a magic, a CRC-32C and a
length, so a torn or corrupt file is detected and reported instead of silently read. Objects are
stored in the wire encoding at version 19, the version the Fluvio client speaks, plus fluvial's
replication record (``StoredObject.meta``) as JSON.

``save`` takes every kind one change touched (a topic and its partitions) and writes them in two
phases: first each new file is written and fsynced under a temporary name (where a full disk or
an I/O error shows up: then nothing is renamed and the old files stand), then all are renamed into
place and the directory is fsynced. Only a crash or a failing rename between the renames can
leave some kinds new and others old.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from crc32c import crc32c

from fluvial.metadata.store import StoredObject
from fluvial.protocol.codec import BYTES, I64, STR, DecodeError, Reader, Vec, message, wire
from fluvial.durable import fsync_dir, write_synced

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


def decode_objects(data: bytes, where: str, spec_cls: type, status_cls: type,
                   read_meta: MetaReader | None = None) -> list[StoredObject]:
    """The objects in ``data`` (``FileBackend.encode``'s format); CorruptMetadata naming
    ``where`` when it is torn or corrupt."""
    if len(data) < _HEAD.size:
        raise CorruptMetadata(f"{where}: truncated header")
    magic, crc, n = _HEAD.unpack_from(data)
    body = data[_HEAD.size:]
    if magic != _MAGIC or n != len(body) or crc32c(body) != crc:
        raise CorruptMetadata(f"{where}: bad magic, length or CRC")
    try:
        out = []
        for r in _RECORDS.decode(Reader(body), 0):
            spec = spec_cls.decode(r.spec, STORE_VERSION)
            raw = json.loads(r.meta) if r.meta else {}
            meta = read_meta(raw, spec) if read_meta else None
            out.append(StoredObject(r.name, spec, status_cls.decode(r.status, STORE_VERSION),
                                    r.epoch, meta))
        return out
    except (DecodeError, ValueError, TypeError, AttributeError) as e:
        raise CorruptMetadata(f"{where}: {e}") from e


class MetadataBackend(Protocol):
    def load(self, label: str, spec_cls: type, status_cls: type,
             read_meta: MetaReader | None = None) -> list[StoredObject]: ...

    def save(self, batch: Mapping[str, list[StoredObject]]) -> None:
        """Persist every kind in ``batch`` (label -> all its objects), all or none as far as
        the medium allows; raises on failure."""


class FileBackend:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, label: str) -> Path:
        return self.dir / f"{label}.meta"

    def load(self, label: str, spec_cls: type, status_cls: type,
             read_meta: MetaReader | None = None) -> list[StoredObject]:
        path = self._path(label)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        return decode_objects(data, path.name, spec_cls, status_cls, read_meta)

    @staticmethod
    def encode(objects: list[StoredObject]) -> bytes:
        records = [
            _Record(o.name, o.epoch, o.spec.encode(STORE_VERSION), o.status.encode(STORE_VERSION),
                    json.dumps(o.meta.to_json(), sort_keys=True) if o.meta is not None else "")
            for o in objects
        ]
        w = bytearray()
        _RECORDS.encode(w, records, 0)
        return _HEAD.pack(_MAGIC, crc32c(w), len(w)) + bytes(w)

    def save(self, batch: Mapping[str, list[StoredObject]]) -> None:
        blobs = {label: self.encode(objects) for label, objects in batch.items()}
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

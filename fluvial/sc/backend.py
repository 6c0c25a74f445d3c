"""Where the SC keeps its objects between restarts.

``MetadataBackend`` is the small interface; ``FileBackend`` is the embedded one: one file per kind
in the SC's data dir, rewritten whole on every change (atomic: write a temp file, fsync, rename,
fsync the directory). A file starts with a magic, a CRC-32C and a length, so a torn or corrupt file
is detected and reported instead of silently read. Objects are stored in the wire encoding at
version 19, the version the Fluvio client speaks, plus fluvial's ``extra`` as JSON.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Protocol

from crc32c import crc32c

from fluvial.metadata.store import StoredObject
from fluvial.protocol.codec import BYTES, I64, STR, DecodeError, Reader, Vec, message, wire
from fluvial.storage.checkpoint import write_atomic

STORE_VERSION = 19
_MAGIC = b"FLVMETA1"
_HEAD = struct.Struct(">8sII")  # magic, crc32c(body), len(body)


@message
class _Record:
    name: str = wire(STR)
    epoch: int = wire(I64)
    spec: bytes = wire(BYTES)
    status: bytes = wire(BYTES)
    extra: str = wire(STR)


_RECORDS = Vec(_Record)


class CorruptMetadata(Exception):
    pass


class MetadataBackend(Protocol):
    def load(self, label: str, spec_cls: type, status_cls: type) -> list[StoredObject]: ...
    def save(self, label: str, objects: list[StoredObject]) -> None: ...


class FileBackend:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, label: str) -> Path:
        return self.dir / f"{label}.meta"

    def load(self, label: str, spec_cls: type, status_cls: type) -> list[StoredObject]:
        path = self._path(label)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        if len(data) < _HEAD.size:
            raise CorruptMetadata(f"{path.name}: truncated header")
        magic, crc, n = _HEAD.unpack_from(data)
        body = data[_HEAD.size:]
        if magic != _MAGIC or n != len(body) or crc32c(body) != crc:
            raise CorruptMetadata(f"{path.name}: bad magic, length or CRC")
        try:
            records = _RECORDS.decode(Reader(body), 0)
            return [
                StoredObject(
                    r.name,
                    spec_cls.decode(r.spec, STORE_VERSION),
                    status_cls.decode(r.status, STORE_VERSION),
                    r.epoch,
                    json.loads(r.extra) if r.extra else {},
                )
                for r in records
            ]
        except (DecodeError, ValueError) as e:
            raise CorruptMetadata(f"{path.name}: {e}") from e

    def save(self, label: str, objects: list[StoredObject]) -> None:
        records = [
            _Record(o.name, o.epoch, o.spec.encode(STORE_VERSION), o.status.encode(STORE_VERSION),
                    json.dumps(o.extra, sort_keys=True) if o.extra else "")
            for o in objects
        ]
        w = bytearray()
        _RECORDS.encode(w, records, 0)
        blob = _HEAD.pack(_MAGIC, crc32c(w), len(w)) + bytes(w)
        write_atomic(str(self._path(label)), blob)

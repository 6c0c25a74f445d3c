"""Producer ids for idempotent producers, handed out by the SC and never reused.

Ids are reserved in blocks (``BLOCK``): the SC durably records the end of the block it hands
out from (``replace_durably``: the old file or the new, never a mix) before it gives out the
block's first id, so after a restart, a crash included, it starts at the end of the last recorded
block. Some ids of a block are skipped by a restart; none is given twice. The file is 8 bytes
(u64 big endian, the reserved end) and a CRC-32C of them.

Example: a fresh SC records 1000 and hands out 0, 1, 2; restarted, it records 2000 and hands
out 1000, 1001, ...
"""

from __future__ import annotations

import os
import struct

from crc32c import crc32c

from fluvial.durable import make_dirs_durable, replace_durably

BLOCK = 1000
_FILE = struct.Struct(">QI")  # reserved end, crc32c of its 8 bytes


class ProducerIdsCorrupt(Exception):
    pass


class ProducerIdAllocator:
    """Hands out producer ids from the file at ``path`` (created on first use).

    Raises (from the constructor):
        ProducerIdsCorrupt: the file is not 12 bytes or its CRC is wrong.
    """

    def __init__(self, path: str | os.PathLike, block: int = BLOCK):
        self.path = os.fspath(path)
        self.block = block
        self._next = self._reserved = self._read()

    def _read(self) -> int:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return 0
        if len(data) != _FILE.size:
            raise ProducerIdsCorrupt(f"{self.path}: {len(data)} bytes, expected {_FILE.size}")
        end, crc = _FILE.unpack(data)
        if crc32c(data[:8]) != crc:
            raise ProducerIdsCorrupt(f"{self.path}: CRC mismatch")
        return end

    def _reserve(self) -> tuple[int, int]:
        """Record the next block durably; returns it as (first id, end)."""
        end = self._next + self.block
        body = struct.pack(">Q", end)
        make_dirs_durable(os.path.dirname(os.path.abspath(self.path)))
        replace_durably(self.path, body + struct.pack(">I", crc32c(body)))
        return self._next, end

    def allocate(self) -> int:
        """A fresh producer id. Raises OSError when a new block cannot be recorded (then no id
        is given)."""
        if self._next >= self._reserved:
            self._next, self._reserved = self._reserve()
        pid = self._next
        self._next += 1
        return pid


class SharedProducerIds(ProducerIdAllocator):
    """Producer ids for several SCs sharing one metadata store (etcd): each block comes from
    ``reserve(block) -> (first id, end)``, which the store hands out by compare-and-swap, so no
    two SCs ever give out the same id (``EtcdBackend.reserve_producer_ids``)."""

    def __init__(self, reserve, block: int = BLOCK):
        self.reserve_in_store = reserve
        self.block = block
        self._next = self._reserved = 0

    def _reserve(self) -> tuple[int, int]:
        return self.reserve_in_store(self.block)

"""Replay a power cut on a data directory, from the storage layer's sync journal.

``kill -9`` keeps the page cache: every byte a process wrote survives it, fsynced or not, so a
test that only kills processes never sees a missing fsync. A power cut loses what was not
fsynced. To test that, run the servers with ``FLUVIAL_SYNC_JOURNAL`` naming a file: storage then
journals, after every fsync of a segment file and before it counts the data durable, the file's
path and the size now durable (``fluvial.storage.journal``). After killing the servers::

    report = apply_power_loss(journal_path, data_dir, mode="reorder", seed=7)

and restart them on the same directory: they see what a disk would hold after a power cut.

For every ``*.log`` file under ``data_dir`` (recursively; the journal itself is never touched),
the unsynced region is everything past the last size journaled for that path (0 when the path
was never journaled). Modes:

* ``"cut"``: the file is cut at the journaled size (everything unsynced is lost).
* ``"torn"``: a random prefix of the unsynced region is kept, the rest cut (a write torn at an
  arbitrary byte).
* ``"reorder"``: each 4 KiB page of the unsynced region (aligned to the file's pages) is kept or
  zeroed at random, and the file keeps its length (pages reached the disk out of order).

A file shorter than its journaled size is left alone: it was truncated after its last fsync, and
only a later fsync can make its bytes durable. Every random choice comes from
``random.Random(seed)``, over the files in sorted order, so one seed replays one cut.

What this does not model: a file whose creation or deletion was never made durable by a directory
fsync (it is still there, or still gone, after the replay), and damage to bytes that were
fsynced (bit rot; the storage tests corrupt files for that).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["cut", "torn", "reorder"]
MODES: tuple[str, ...] = ("cut", "torn", "reorder")
PAGE_BYTES = 4096
SEGMENT_SUFFIX = ".log"


@dataclass
class PowerLossReport:
    """What ``apply_power_loss`` changed.

    Attributes:
        bytes_dropped: per changed file (absolute path), the bytes lost: cut away, or zeroed in
            ``"reorder"`` mode.
    """

    bytes_dropped: dict[str, int] = field(default_factory=dict)

    @property
    def files_changed(self) -> list[str]:
        return sorted(self.bytes_dropped)

    @property
    def total_bytes_dropped(self) -> int:
        return sum(self.bytes_dropped.values())


def read_journal(journal: str | os.PathLike) -> dict[str, int]:
    """The last journaled durable size of each path. A missing journal means nothing was ever
    fsynced; a malformed line (there should be none: each is one ``os.write``) is skipped."""
    sizes: dict[str, int] = {}
    try:
        with open(journal, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return sizes
    for line in data.decode("utf-8", "replace").splitlines():
        path, sep, size = line.rpartition("\t")
        if sep and size.isdigit():
            sizes[os.path.realpath(path)] = int(size)
    return sizes


def unsynced_plan(durable: int, file_size: int, mode: Mode, rng: random.Random) -> list[tuple[int, int]]:
    """The byte ranges ``(start, end)`` of a file of ``file_size`` bytes to lose when the first
    ``durable`` are durable. In ``"cut"`` and ``"torn"`` mode one range that runs to the end of
    the file (cut it); in ``"reorder"`` mode the pages to zero.

    Example: durable 5000, size 13000, "cut" -> [(5000, 13000)]; "reorder" may give
    [(5000, 8192), (12288, 13000)] (pages 1 and 3 lost, page 2 kept).
    """
    if file_size <= durable:
        return []
    if mode == "cut":
        return [(durable, file_size)]
    if mode == "torn":
        keep = rng.randint(0, file_size - durable - 1)
        return [(durable + keep, file_size)]
    if mode == "reorder":
        ranges = []
        start = durable
        while start < file_size:
            end = min(file_size, (start // PAGE_BYTES + 1) * PAGE_BYTES)
            if rng.random() < 0.5:
                ranges.append((start, end))
            start = end
        return ranges
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def segment_files(data_dir: str | os.PathLike) -> list[str]:
    """Every ``*.log`` file under ``data_dir``, recursively, as sorted real paths."""
    found = []
    for root, _, names in os.walk(data_dir):
        found += [os.path.realpath(os.path.join(root, n)) for n in names if n.endswith(SEGMENT_SUFFIX)]
    return sorted(found)


def apply_power_loss(journal: str | os.PathLike, data_dir: str | os.PathLike, *, mode: Mode = "cut",
                     seed: int = 0) -> PowerLossReport:
    """Make the segment files under ``data_dir`` hold what a power cut would have left (module
    docstring). Call it only while no process writes them."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    durable = read_journal(journal)
    journal_path = os.path.realpath(journal)
    rng = random.Random(seed)
    report = PowerLossReport()
    for path in segment_files(data_dir):
        if path == journal_path:
            continue
        size = os.path.getsize(path)
        ranges = unsynced_plan(durable.get(path, 0), size, mode, rng)
        if not ranges:
            continue
        with open(path, "r+b") as f:
            if mode == "reorder":
                for start, end in ranges:
                    f.seek(start)
                    f.write(bytes(end - start))
            else:
                f.truncate(ranges[0][0])
        report.bytes_dropped[path] = sum(end - start for start, end in ranges)
    return report

"""The idempotent producer's leader-side state: which sequences each producer has written.

Theory of operation
-------------------
Pure: no trio, no I/O. An idempotent producer (Kafka semantics, KIP-98) stamps every batch with
its producer id, its epoch and the sequence number of the batch's first record on that partition
(``first_sequence``; the next batch starts at ``first_sequence + record_count``, wrapping after
``2**31 - 1`` to 0). The batch header already has those fields; an ordinary producer writes -1.

The leader keeps, per producer id, its epoch and the last ``MAX_REMEMBERED`` (5) *runs* it
appended: ``(first_sequence, count, base_offset)``, where a run is a batch, or consecutive
batches whose sequences and offsets both follow on (so sequence ``first_sequence + d`` is at
offset ``base_offset + d``; a producer alone on a partition makes one long run). A batch is then:

* **new** when its first sequence follows the producer's last one (or the producer is unknown and
  the sequence is 0, or the producer shows a newer epoch starting at 0): append it;
* a **duplicate** when its sequences lie inside one of the remembered runs: do not append, answer
  with the offsets they were stored at (a retry after a lost acknowledgement);
* **out of order** otherwise (a gap: an earlier batch was lost), or **fenced** when its epoch is
  older than the producer's: refuse it.

An unknown producer whose first sequence is not 0 is accepted only when the log no longer starts
at offset 0 (retention removed the batches that described it): otherwise it is out of order.

The state lives in the batches themselves, so it is replicated with them: a replica that becomes
leader (after a restart or a failover) rebuilds it from its log's batch headers
(``ProducerStateTable.rebuild``), and a retry sent to the new leader is recognised there.

Worked example: producer 7, epoch 0; batches of 3 and 2 records appended at offsets 10 and 13
make one run (0, 5, 10). A retry of the second (first_sequence 3, 2 records) is
``Duplicate(13, 14)``; a batch at sequence 5 is new; one at sequence 6 is out of order. Had
another producer's record landed at 13 (the second batch at 14), the runs would be (0, 3, 10)
and (3, 2, 14).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from fluvial.protocol.batch import PRODUCER_OFFSET
from fluvial.protocol.producer_api import (  # shared with the producer
    MAX_REMEMBERED, OUT_OF_ORDER, SEQUENCE_MODULUS, next_sequence,
)

NO_PRODUCER_ID = -1
_PRODUCER_ID = struct.Struct(">q")
_PRODUCER_ID_OFFSET = PRODUCER_OFFSET


class SeqRun(NamedTuple):
    """``count`` records from ``first_sequence`` (wrapping), stored from ``base_offset`` on."""

    first_sequence: int
    count: int
    base_offset: int

    def find(self, first_sequence: int, count: int) -> int | None:
        """The offset of ``first_sequence`` when all ``count`` records lie in this run."""
        d = (first_sequence - self.first_sequence) % SEQUENCE_MODULUS
        return self.base_offset + d if d + count <= self.count else None


class Append(NamedTuple):
    """The batch is new: append it."""


class Duplicate(NamedTuple):
    """The batch was appended before: answer with these offsets, append nothing."""

    base_offset: int
    last_offset: int


class Refused(NamedTuple):
    """Out of order or fenced: refuse it. ``reason`` names which and why."""

    reason: str


APPEND = Append()
Verdict = Append | Duplicate | Refused


@dataclass
class _Producer:
    epoch: int
    runs: deque = field(default_factory=lambda: deque(maxlen=MAX_REMEMBERED))


class ProducerStateTable:
    """Per producer id: the epoch and the last appended batches (see the module docstring).

    Args:
        log_start_offset: where the log starts; above 0, an unknown producer may show any
            sequence (its earlier batches were removed by retention).
        compacted: the log is compacted: the cleaner rewrites batches without their producer
            fields, so an unknown producer may show any sequence too (Kafka before KIP-360 the
            same; a retry of a batch the cleaner rewrote can then be stored twice, which on a
            compacted topic only repeats a key's value).
    """

    def __init__(self, log_start_offset: int = 0, compacted: bool = False):
        self.log_start_offset = log_start_offset
        self.compacted = compacted
        self._producers: dict[int, _Producer] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def check(self, producer_id: int, epoch: int, first_sequence: int, count: int) -> Verdict:
        """What to do with a batch of ``count`` records (nothing is changed; ``record`` after
        appending)."""
        if producer_id < 0:
            return APPEND
        p = self._producers.get(producer_id)
        if p is None:
            if first_sequence == 0 or self.log_start_offset > 0 or self.compacted:
                return APPEND
            return Refused(f"out of order sequence: producer {producer_id} is unknown here and "
                           f"its batch starts at sequence {first_sequence}, not 0")
        if epoch < p.epoch:
            return Refused(f"producer {producer_id} is fenced: epoch {epoch} is older than "
                           f"{p.epoch}")
        if epoch > p.epoch:
            if first_sequence == 0:
                return APPEND
            return Refused(f"out of order sequence: producer {producer_id} epoch {epoch} starts "
                           f"at sequence {first_sequence}, not 0")
        for run in p.runs:
            at = run.find(first_sequence, count)
            if at is not None:
                return Duplicate(at, at + count - 1)
        last = p.runs[-1] if p.runs else None
        expected = next_sequence(last.first_sequence, last.count) if last else 0
        if first_sequence == expected:
            return APPEND
        return Refused(f"out of order sequence: producer {producer_id} sent sequence "
                       f"{first_sequence}, expected {expected}")

    def record(self, producer_id: int, epoch: int, first_sequence: int, count: int,
               base_offset: int) -> None:
        """Remember an appended batch (its records at ``base_offset ..``)."""
        if producer_id < 0:
            return
        p = self._producers.get(producer_id)
        if p is None or epoch > p.epoch:
            p = self._producers[producer_id] = _Producer(epoch)
        last = p.runs[-1] if p.runs else None
        if (last is not None and next_sequence(last.first_sequence, last.count) == first_sequence
                and last.base_offset + last.count == base_offset):
            p.runs[-1] = last._replace(count=last.count + count)
        else:
            p.runs.append(SeqRun(first_sequence, count, base_offset))

    @classmethod
    def rebuild(cls, headers: Iterable, log_start_offset: int = 0,
                compacted: bool = False) -> ProducerStateTable:
        """The state a log's batches describe: ``headers`` are its ``BatchHeader``s in offset
        order (anything with producer_id, producer_epoch, first_sequence, base_offset and
        record_count)."""
        table = cls(log_start_offset, compacted)
        for h in headers:
            if h.producer_id >= 0:
                table.record(h.producer_id, h.producer_epoch, h.first_sequence, h.record_count,
                             h.base_offset)
        return table


class AppendPlan(NamedTuple):
    """What to do with one partition's record set (``plan_append``).

    * ``skip``: bytes at the front of the record set that are duplicates (not appended);
    * ``duplicate``: the (base, last) offsets of those duplicates, or None when there are none;
    * ``refused``: a reason to refuse the whole record set, or None.

    The rest of the record set (``record_set[skip:]``) is appended when it is not empty.
    """

    skip: int
    duplicate: tuple[int, int] | None
    refused: str | None


def plan_append(table: ProducerStateTable, batches: list, leo: int) -> AppendPlan:
    """Decide a record set: ``batches`` are its ``(position, header)`` pairs, ``leo`` the log end.

    A retried record set may be all duplicates (answered with their offsets), all new, or, after
    a failover that kept only some of the batches of a request, duplicates followed by new
    batches. The new ones are then appended only when the duplicates end exactly at the LEO, so
    that the record set's offsets stay consecutive (the answer gives one base offset); otherwise
    the record set is refused. New batches after the first are checked as if the earlier ones had
    been appended.

    Example: remembered (0, 2, 10, 12), leo 13; a retry of [seq 0..2][seq 3..4] -> skip the first
    batch's bytes, duplicate (10, 12), append the second at 13: the answer's base offset is 10.
    """
    skip = 0
    dup: tuple[int, int] | None = None
    pending: dict[int, tuple[int, int]] = {}  # producer id -> (epoch, next sequence), this set
    new_seen = False
    for pos, h in batches:
        pid = h.producer_id
        if pid < 0:
            new_seen = True
            continue
        count = h.record_count
        if pid in pending:
            epoch, expected = pending[pid]
            if h.producer_epoch != epoch or h.first_sequence != expected:
                return AppendPlan(0, None, f"out of order sequence: producer {pid} sent "
                                           f"sequence {h.first_sequence}, expected {expected}")
            verdict: Verdict = APPEND
        else:
            verdict = table.check(pid, h.producer_epoch, h.first_sequence, count)
        if isinstance(verdict, Refused):
            return AppendPlan(0, None, verdict.reason)
        if isinstance(verdict, Duplicate):
            if new_seen:
                return AppendPlan(0, None, f"out of order sequence: producer {pid} resent "
                                           f"sequence {h.first_sequence} after new batches")
            if dup is not None and verdict.base_offset != dup[1] + 1:
                return AppendPlan(0, None, "duplicate batches that were not stored together")
            dup = (verdict.base_offset if dup is None else dup[0], verdict.last_offset)
            skip = pos + h.size
            continue
        new_seen = True
        pending[pid] = (h.producer_epoch, next_sequence(h.first_sequence, count))
    if dup is not None and new_seen and dup[1] + 1 != leo:
        return AppendPlan(0, None, "a retry mixing stored and new batches, and records were "
                                   "appended after the stored ones")
    return AppendPlan(skip, dup, None)


def has_producer_ids(record_set) -> bool:
    """Whether the first batch of a record set carries a producer id (an idempotent producer's
    record set; ordinary producers write -1). One read, no decoding."""
    if len(record_set) < _PRODUCER_ID_OFFSET + _PRODUCER_ID.size:
        return False
    return _PRODUCER_ID.unpack_from(record_set, _PRODUCER_ID_OFFSET)[0] >= 0


def record_appended(table: ProducerStateTable, batches: list, skip: int, base_offset: int) -> None:
    """Remember the batches of a record set that were appended (those at or after byte ``skip``)
    from ``base_offset`` on."""
    offset = base_offset
    for pos, h in batches:
        if pos < skip:
            continue
        table.record(h.producer_id, h.producer_epoch, h.first_sequence, h.record_count, offset)
        offset += h.record_count


__all__ = [
    "OUT_OF_ORDER", "has_producer_ids", "record_appended",
    "APPEND", "MAX_REMEMBERED", "NO_PRODUCER_ID", "Append", "AppendPlan", "Duplicate",
    "ProducerStateTable", "Refused", "SeqRun", "next_sequence", "plan_append",
]

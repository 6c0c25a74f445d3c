"""What a failure-test workload did and saw: record ids, sends, acknowledgements, reads.

Each record's value starts with a unique id, ``p<partition>w<writer>-<seq>``. A send answered OK is
*acknowledged* at the offset the answer gives; every send and every acknowledgement lands in a
``History``, and so does every (offset, value) a ReadCommitted consumer was served.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

_ID = re.compile(rb"^p(\d+)w(\d+)-(\d+)$")



def record_id(value: bytes) -> bytes:
    """The id at the start of a workload value (``b"p0w1-17"`` or ``b"p0w1-17|padding"``)."""
    return value.split(b"|", 1)[0]


def make_id(partition: int, writer: int, seq: int) -> bytes:
    return b"p%dw%d-%d" % (partition, writer, seq)


def parse_id(rid: bytes) -> tuple[int, int, int] | None:
    """(partition, writer, seq) of a workload id, or None for anything else."""
    m = _ID.match(rid)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


@dataclass
class History:
    """Everything the workload did and saw.

    Attributes:
        attempts: id -> how many times it was sent.
        acked: id -> (partition, offset) of the acknowledged send.
        writers: writer key (partition, writer) -> its ids in sequence order.
        observed: partition -> offset -> value served to a ReadCommitted consumer.
        observed_conflicts: (partition, offset, first value, later value) when consumers were
            served two values at one offset.
        ack_times: (monotonic time acknowledged, partition, spu, monotonic time sent) of every
            acknowledged send.
        errors: error kind -> count of failed sends.
    """

    attempts: dict[bytes, int] = field(default_factory=dict)
    acked: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    writers: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)
    observed: dict[int, dict[int, bytes]] = field(default_factory=lambda: defaultdict(dict))
    observed_conflicts: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)
    ack_times: list[tuple[float, int, int, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def attempt(self, partition: int, writer: int, ids: Sequence[bytes]) -> None:
        seq = self.writers.setdefault((partition, writer), [])
        for rid in ids:
            n = self.attempts.get(rid, 0)
            if n == 0:
                seq.append(rid)
            self.attempts[rid] = n + 1

    def ack(self, partition: int, base_offset: int, ids: Sequence[bytes], spu: int,
            sent_at: float, now: float) -> None:
        for i, rid in enumerate(ids):
            self.acked[rid] = (partition, base_offset + i)
        self.ack_times.append((now, partition, spu, sent_at))

    def observe(self, partition: int, offset: int, value: bytes) -> None:
        seen = self.observed[partition]
        old = seen.get(offset)
        if old is None:
            seen[offset] = value
        elif old != value:
            self.observed_conflicts.append((partition, offset, old, value))

    def acks_since(self, t: float, partition: int | None = None) -> int:
        return sum(1 for (at, p, _, _) in self.ack_times
                   if at > t and (partition is None or p == partition))

    def acks_sent_after(self, t: float, partition: int | None = None) -> list[tuple[float, int, int, float]]:
        """The acknowledged sends that started after ``t``."""
        return [a for a in self.ack_times if a[3] > t and (partition is None or a[1] == partition)]

    def failover_time(self, partition: int, killed_at: float, killed_spu: int) -> float | None:
        """Seconds from ``killed_at`` to the first acknowledgement on ``partition`` by another SPU."""
        for at, p, spu, _ in self.ack_times:
            if at > killed_at and p == partition and spu != killed_spu:
                return at - killed_at
        return None

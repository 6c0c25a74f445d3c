"""The history checker: did a failure-test run keep the replication promise?

The promise (docs/replication.md): *with ReadCommitted produce, an acknowledged record is never lost
while one in-sync replica survives, and replicas never diverge.* ``check_history(history, logs)`` is
a pure function. ``logs`` holds each replica's final log, read from disk with
``harness.disklogs.read_replica_log`` after the cluster has healed and shut down (plus, optionally,
what a ReadCommitted read-back over the network returned). It verifies:

1. every acknowledged record is at its acknowledged offset in the final log, and a record sent
   only once is stored exactly once;
2. per writer, acknowledged offsets grow with the writer's sequence (order preserved);
3. no offset holds different records on different replicas, and no two records were
   acknowledged at one offset;
4. a record stored more than once had an unacknowledged send (duplicates only from retries),
   and never more copies than sends; nothing is stored that was never sent;
5. every record a ReadCommitted consumer saw is in the final log at the same offset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.history import History, record_id


Log = Sequence[tuple[int, bytes]]


@dataclass
class CheckResult:
    """What ``check_history`` found. ``ok`` is True when no rule was broken."""

    acknowledged: int = 0
    attempted: int = 0
    duplicates: int = 0  # extra stored copies of ids that had an unacknowledged send (allowed)
    lost: list[str] = field(default_factory=list)
    inconsistent_offsets: list[str] = field(default_factory=list)
    ack_conflicts: list[str] = field(default_factory=list)
    bad_duplicates: list[str] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)
    unknown_records: list[str] = field(default_factory=list)
    consumer_violations: list[str] = field(default_factory=list)
    replica_ends: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """Every replica of every partition ends at the same offset (a healed cluster)."""
        return all(len(set(ends.values())) <= 1 for ends in self.replica_ends.values())

    @property
    def ok(self) -> bool:
        return not (self.lost or self.inconsistent_offsets or self.ack_conflicts
                    or self.bad_duplicates or self.order_violations or self.unknown_records
                    or self.consumer_violations)

    def summary(self, limit: int = 10) -> str:
        lines = [f"acknowledged {self.acknowledged} of {self.attempted} attempted ids, "
                 f"lost {len(self.lost)}, inconsistent offsets {len(self.inconsistent_offsets)}, "
                 f"duplicates {self.duplicates}, replica ends {self.replica_ends}"]
        for name in ("lost", "inconsistent_offsets", "ack_conflicts", "bad_duplicates",
                     "order_violations", "unknown_records", "consumer_violations"):
            items = getattr(self, name)
            if items:
                lines.append(f"{name} ({len(items)}): " + "; ".join(items[:limit])
                             + (" ..." if len(items) > limit else ""))
        return "\n".join(lines)


def check_history(history: History, logs: Mapping[int, Mapping[str, Log]],
                  reference: Mapping[int, str] | None = None) -> CheckResult:
    """Check a run against the promise (see the module docstring for the five rules).

    Args:
        history: what the workload sent, had acknowledged and saw.
        logs: partition -> replica label (``"spu-5001"``, ``"read-back"``...) -> that replica's
            final records as (offset, value), in offset order.
        reference: partition -> the label whose log is *the* log (the final leader). By default
            the union of all replicas' logs (they must agree wherever they overlap anyway).

    Returns:
        A ``CheckResult``; nothing is raised for a broken rule.

    Example: writer p0w0 sent a (once, acked at 0) and b (twice: a timeout, then acked at 2); the
    replicas hold [(0, a), (1, b), (2, b)] -> ok, duplicates 1. With only [(0, a), (1, b)], b is
    lost (not at its acknowledged offset 2).
    """
    res = CheckResult(acknowledged=len(history.acked), attempted=len(history.attempts))
    partitions = set(logs) | {p for p, _ in history.acked.values()}

    # the final log of each partition, and rule 3 across replicas
    final: dict[int, dict[int, bytes]] = {}
    for p in sorted(partitions):
        replicas = logs.get(p, {})
        res.replica_ends[p] = {label: (recs[-1][0] + 1 if recs else 0)
                               for label, recs in replicas.items()}
        merged: dict[int, dict[str, bytes]] = defaultdict(dict)
        for label, recs in replicas.items():
            for offset, value in recs:
                merged[offset][label] = value
        for offset in sorted(merged):
            values = merged[offset]
            if len(set(values.values())) > 1:
                res.inconsistent_offsets.append(
                    f"{p}@{offset}: " + ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())))
        ref = reference.get(p) if reference else None
        if ref is not None:
            final[p] = dict(replicas.get(ref, ()))
        else:
            final[p] = {offset: next(iter(vs.values())) for offset, vs in merged.items()}

    # where each id is stored
    stored: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for p, recs in final.items():
        for offset, value in recs.items():
            rid = record_id(value)
            stored[rid].append((p, offset))
            if rid not in history.attempts:
                res.unknown_records.append(f"{p}@{offset}: {value[:40]!r} was never sent")

    # rules 1 and 3 (acknowledgements)
    by_offset: dict[tuple[int, int], bytes] = {}
    for rid, (p, offset) in sorted(history.acked.items()):
        other = by_offset.setdefault((p, offset), rid)
        if other != rid:
            res.ack_conflicts.append(f"{p}@{offset}: acknowledged for both {other!r} and {rid!r}")
        value = final.get(p, {}).get(offset)
        if value is None or record_id(value) != rid:
            where = stored.get(rid)
            res.lost.append(f"{rid!r} acknowledged at {p}@{offset}, "
                            f"final log has {value[:40] if value else None!r} there"
                            + (f"; the id is stored at {where}" if where else "; the id is gone"))

    # rule 4: duplicates
    for rid, places in stored.items():
        sends = history.attempts.get(rid, 0)
        if len(places) > 1:
            if sends <= 1 or len(places) > sends:
                res.bad_duplicates.append(f"{rid!r} stored {len(places)} times at {places} "
                                          f"but sent {sends} time(s)")
            else:
                res.duplicates += len(places) - 1

    # rule 2: per-writer order of acknowledgements
    for (p, w), ids in sorted(history.writers.items()):
        last: tuple[int, bytes] | None = None
        for rid in ids:
            at = history.acked.get(rid)
            if at is None:
                continue
            if at[0] != p:
                res.order_violations.append(f"{rid!r} of partition {p} acknowledged on {at[0]}")
            elif last is not None and at[1] <= last[0]:
                res.order_violations.append(f"writer p{p}w{w}: {rid!r} at {at[1]} after "
                                            f"{last[1]!r} at {last[0]}")
            last = (at[1], rid)

    # rule 5: what ReadCommitted consumers saw
    for p, seen in sorted(history.observed.items()):
        recs = final.get(p, {})
        for offset, value in sorted(seen.items()):
            now = recs.get(offset)
            if now != value:
                res.consumer_violations.append(f"{p}@{offset}: consumer saw {value[:40]!r}, final "
                                               f"log has {now[:40] if now else None!r}")
    for p, offset, a, b in history.observed_conflicts:
        res.consumer_violations.append(f"{p}@{offset}: consumers were served both {a[:40]!r} "
                                       f"and {b[:40]!r}")
    return res

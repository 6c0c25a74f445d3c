"""Replica placement for computed topics, and validation of assigned replica maps.

Theory of operation
-------------------
A computed topic (``TopicReplicaParam``: partitions, replication_factor, ignore_rack_assignment)
gets its replica map here; an assigned topic's map is checked by ``validate_assigned``. Both are
pure and deterministic: the same inputs always give the same map.

``place_replicas`` follows Kafka's ``AdminUtils.assignReplicasToBrokers``, with one change: the
leader (first replica) of each partition is chosen greedily by load.

* The SPUs are put in a fixed order: by id, or, when racks count, alternating between racks
  (racks by name, SPUs by id within a rack: ``a1, b1, c1, a2, b2, a3``). The input order does not
  matter.
* Leaders: a cursor walks that order round robin, starting at ``start_index``. Each partition goes
  to the first SPU from the cursor that has the fewest leaders so far, counting ``existing_load``
  (leaders it already has for other topics), and the cursor moves past it. With no existing load
  this is exactly round robin.
* Followers: Kafka's shifted walk. The j-th follower of a partition whose leader sits at position
  ``i`` is at ``(i + 1 + (shift + j) % (n - 1)) % n``, where ``shift`` grows by one every ``n``
  partitions, so the same SPU pairs do not repeat block after block. With racks, the walk skips
  SPUs on a rack that already has a replica of the partition until every rack has one.

Guarantees (checked by the property tests):

1. Each partition gets exactly ``replication_factor`` distinct SPUs from ``spus``.
2. Leader balance ("water filling"): if an SPU received at least one new leader, its total leader
   count (existing + new) is at most one more than any other SPU's. Without ``existing_load`` the
   new leader counts therefore differ by at most 1, whatever the partition and SPU counts.
3. Without racks and existing load, each run of ``n`` consecutive partitions puts exactly
   ``replication_factor`` replicas on every SPU; so when ``partitions`` is a multiple of ``n``
   every SPU holds ``partitions * replication_factor / n`` replicas, and otherwise replica
   counts differ by at most ``replication_factor``.
4. With racks, each partition spans ``min(replication_factor, number of racks)`` racks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SpuInfo:
    """An SPU as placement sees it: its id and optional rack (``SpuSpec.id``, ``SpuSpec.rack``)."""

    id: int
    rack: str | None = None


class PlacementError(ValueError):
    """The replicas cannot be placed; the message is fit for ``TopicStatus.reason``."""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _rack_alternated(spus: Sequence[SpuInfo]) -> list[SpuInfo]:
    by_rack: dict[str, list[SpuInfo]] = {}
    for s in sorted(spus, key=lambda s: s.id):
        by_rack.setdefault(s.rack or "", []).append(s)
    columns = [by_rack[r] for r in sorted(by_rack)]
    out: list[SpuInfo] = []
    for depth in range(max(len(c) for c in columns)):
        out.extend(c[depth] for c in columns if depth < len(c))
    return out


def _replica_index(first: int, shift: int, j: int, n: int) -> int:
    """Kafka's ``replicaIndex``: position of the j-th follower, never ``first`` itself."""
    return (first + 1 + (shift + j) % (n - 1)) % n


def place_replicas(partitions: int, replication_factor: int, spus: Sequence[SpuInfo], *,
                   existing_load: Mapping[int, int] | None = None, ignore_rack: bool = True,
                   start_index: int | None = None) -> dict[int, list[int]]:
    """Compute the replica map of a topic: partition id -> SPU ids, leader first.

    Args:
      partitions: partition count, >= 1.
      replication_factor: replicas per partition, >= 1 and <= ``len(spus)``.
      spus: the live SPUs to place on.
      existing_load: SPU id -> partitions it already leads; new leaders go to the least loaded.
        Ids not in ``spus`` are ignored.
      ignore_rack: place without regard to racks (``TopicReplicaParam.ignore_rack_assignment``).
        Racks are also ignored when no SPU has one.
      start_index: position in the SPU order where the leader cursor starts (default 0); callers
        that place many topics without ``existing_load`` can rotate it per topic.

    Returns:
      ``{0: [leader, follower, ...], 1: [...], ...}`` for every partition.

    Raises:
      PlacementError: ``partitions`` or ``replication_factor`` below 1, duplicate SPU ids, more
        replicas than SPUs, or (racks counting) some SPUs with a rack and some without.

    Worked examples (SPUs 1, 2, 3, no racks)::

      place_replicas(3, 2, spus)  == {0: [1, 2], 1: [2, 3], 2: [3, 1]}
      place_replicas(6, 2, spus)  == {0: [1, 2], 1: [2, 3], 2: [3, 1],
                                      3: [1, 3], 4: [2, 1], 5: [3, 2]}   shift 1 from partition 3
      place_replicas(3, 1, spus, existing_load={1: 2, 3: 1})
                                  == {0: [2], 1: [3], 2: [2]}           totals 2, 2, 2
    """
    if partitions < 1:
        raise PlacementError(f"partition count must be at least 1, got {partitions}")
    if replication_factor < 1:
        raise PlacementError(f"replication factor must be at least 1, got {replication_factor}")
    ids = [s.id for s in spus]
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        raise PlacementError(f"duplicate SPU ids {dups}")
    n = len(spus)
    if n == 0:
        raise PlacementError("no live SPUs to place replicas on")
    if replication_factor > n:
        raise PlacementError(f"replication factor {replication_factor} exceeds the {_count(n, 'live SPU')}")

    rack_aware = not ignore_rack and any(s.rack is not None for s in spus)
    if rack_aware:
        rackless = sorted(s.id for s in spus if s.rack is None)
        if rackless:
            raise PlacementError(
                f"SPUs {rackless} have no rack while others do; give every SPU a rack "
                "or ignore rack assignment")
        ordered = [s.id for s in _rack_alternated(spus)]
        rack_of = {s.id: s.rack for s in spus}
        n_racks = len(set(rack_of.values()))
    else:
        ordered = sorted(ids)

    loads = existing_load or {}
    load = [loads.get(spu, 0) for spu in ordered]
    start = 0 if start_index is None else start_index % n
    cursor = start
    out: dict[int, list[int]] = {}
    for p in range(partitions):
        shift = start + p // n
        # the first SPU from the cursor with the fewest leaders (min keeps the first of equals)
        first = min(((cursor + k) % n for k in range(n)), key=lambda i: load[i])
        load[first] += 1
        cursor = (first + 1) % n
        replicas = [ordered[first]]
        if not rack_aware:
            replicas += [ordered[_replica_index(first, shift, j, n)] for j in range(replication_factor - 1)]
        else:
            racks = {rack_of[ordered[first]]}
            for _ in range(replication_factor - 1):
                for k in range(n - 1):
                    spu = ordered[_replica_index(first, shift * n_racks, k, n)]
                    if spu not in replicas and (rack_of[spu] not in racks or len(racks) == n_racks):
                        replicas.append(spu)
                        racks.add(rack_of[spu])
                        break
                else:  # pragma: no cover - the walk visits every other SPU, and one is eligible
                    raise AssertionError(f"no eligible SPU for partition {p}: {replicas}")
        out[p] = replicas
    return out


def validate_assigned(maps: Mapping[int, Sequence[int]] | Iterable[tuple[int, Sequence[int]]],
                      known_spus: Iterable[int]) -> str | None:
    """Check an assigned topic's replica map (``ReplicaSpec::Assigned``).

    Args:
      maps: partition id -> replica SPU ids, as a mapping or as ``(id, replicas)`` pairs (the wire's
        ``PartitionMaps`` list, where a partition can appear twice).
      known_spus: the SPU ids registered with the SC.

    Returns:
      None if the map is valid, else the first problem as one sentence (for
      ``TopicStatus.reason``). Rules: at least one partition; ids run 0..N-1 without gaps or
      repeats; every partition has a non-empty replica list with no SPU twice; every SPU is
      known; every partition has the same replication factor.

    Example: ``validate_assigned({0: [1, 2], 1: [2, 2]}, {1, 2})`` is
    ``"partition 1 lists SPU 2 more than once"``.
    """
    pairs = list(maps.items()) if isinstance(maps, Mapping) else [(p, r) for p, r in maps]
    known = set(known_spus)
    if not pairs:
        return "no partitions assigned"
    seen: set[int] = set()
    for pid, _ in pairs:
        if pid < 0:
            return f"partition id {pid} is negative"
        if pid in seen:
            return f"partition {pid} is assigned more than once"
        seen.add(pid)
    missing = set(range(len(pairs))) - seen
    if missing:
        return f"partition {min(missing)} is missing: ids must run 0..{len(pairs) - 1} without gaps"
    rf = None
    for pid, replicas in sorted(pairs, key=lambda pr: pr[0]):
        replicas = list(replicas)
        if not replicas:
            return f"partition {pid} has no replicas"
        for i, spu in enumerate(replicas):
            if spu in replicas[:i]:
                return f"partition {pid} lists SPU {spu} more than once"
        unknown = [spu for spu in replicas if spu not in known]
        if unknown:
            return f"partition {pid} uses unknown SPU {unknown[0]}"
        if rf is None:
            rf = len(replicas)
        elif len(replicas) != rf:
            return (f"partition {pid} has {_count(len(replicas), 'replica')} but partition 0 has {rf}; "
                    "every partition needs the same replication factor")
    return None

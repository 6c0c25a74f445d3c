"""Which SC changes reach the SPUs, as plain decisions (no trio).

The SC pushes an SPU its complete desired state (``controller.assignments_for``) whenever that
state may have changed. Most changes cannot change it: a partition's *status* (the LEOs, HW and
resolution the leaders report, many times a second under load) is not part of any assignment.
Pushing on those made every report cost a push of every assignment to every SPU, and every SPU
a re-apply of all its replicas. So:

* ``changes_assignments`` says whether one object's change can change some assignment (a
  partition's or topic's spec or replication record, an SPU's address or liveness);
* ``same_push`` says whether a push would tell an SPU nothing new (then it is not sent).
"""

from __future__ import annotations

from typing import Any

from fluvial.protocol import internal_api as ia
from fluvial.sc.cluster import ASSIGNMENT_KINDS


def changes_assignments(label: str, before: Any, after: Any) -> bool:
    """Whether replacing ``before`` by ``after`` (StoredObjects; None: absent) in kind ``label``
    can change what some SPU is assigned.

    >>> from fluvial.metadata.store import StoredObject as O
    >>> changes_assignments("Partition", O("t-0", "spec", "Online"), O("t-0", "spec", "Offline"))
    False
    >>> changes_assignments("Partition", O("t-0", "spec", "s", meta="epoch 1"), O("t-0", "spec", "s", meta="epoch 2"))
    True
    >>> changes_assignments("SPU", O("s", "spec", "Online"), O("s", "spec", "Offline"))
    True
    >>> changes_assignments("SmartModule", None, O("m", "spec", "s"))
    False
    """
    if label not in ASSIGNMENT_KINDS:
        return False
    if before is None or after is None:
        return True
    if label == "SPU":  # its private address, and whether it is online (peers, failed followers)
        return before.spec != after.spec or before.status != after.status
    return before.spec != after.spec or before.meta != after.meta


def same_push(a: ia.WatchReplicasResponse | None, b: ia.WatchReplicasResponse) -> bool:
    """Whether push ``b`` tells an SPU nothing that ``a`` (the last one sent; None: none yet)
    did not: the same assignments, peers and consumer-offset leader (the epoch aside)."""
    return a is not None and (a.replicas, a.peers, a.offsets_leader) == (b.replicas, b.peers, b.offsets_leader)

"""Consumer groups: membership, sticky cooperative assignment and commit fencing, as pure state.

One ``Group`` per group name, kept by the coordinator (the leader of ``consumer-offset``-0,
``fluvial.spu.group_coordinator``), which feeds it requests with the current time and persists
what it returns. Nothing here sleeps, reads a clock or does I/O.

Assignment is done by the coordinator (as in Kafka's KIP-848), and it is incremental and
cooperative (KIP-429): a partition moves in two steps.

1. The target changes (``rebalance``: sticky, see ``sticky_assign``). The member that loses a
   partition is told so in its next heartbeat answer (``assigned`` no longer lists it); it stops
   reading it, commits what it processed, and reports it no longer ``owned``.
2. Only then is the partition free (``owners`` drops it) and granted to its new member, in that
   member's next heartbeat answer. Partitions a member keeps are listed in every answer, so it
   never pauses them.

So ``owners`` maps each partition to at most one member at a time: exactly one member of a
generation reads a partition, and only while it is granted. A member that misses its session
(``expire``) is dropped and its partitions are freed at once: it is a zombie from then on, and
its commits are refused because it is no member (``commit``: the fence). A commit is accepted
only from the member that owns the partition now; a member of an older generation that lost the
partition, or a zombie, cannot move the group's offsets backwards or forwards.

Worked example, 6 partitions: A joins (generation 1, A gets 0-5). B joins (generation 2): the
target is A {0,1,2}, B {3,4,5}. A's next heartbeat answer lists 0,1,2: A stops 3,4,5, commits
them, reports owned {0,1,2}; B's next heartbeat answer (after A's) lists 3,4,5. A read 0,1,2
throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class GroupError(IntEnum):
    """The outcome of a group request (``i16`` on the wire)."""

    NONE = 0
    NOT_COORDINATOR = 1  # this SPU does not lead consumer-offset-0 (retriable: find it again)
    UNKNOWN_MEMBER = 2  # no such member (expired, or left): rejoin
    FENCED = 3  # a commit for a partition the member does not own now
    GROUP_NOT_EMPTY = 4  # delete or reset while the group has members
    GROUP_NOT_FOUND = 5
    INCONSISTENT_TOPIC = 6  # a member joins for another topic than the group reads
    INVALID_REQUEST = 7
    STORAGE = 8  # the coordinator could not persist (retriable)


START_POLICIES = ("earliest", "latest")
MAX_PARTITIONS = 10_000  # a topic's partitions, as a member says: bounded, whoever asks
MIN_SESSION_MS, MAX_SESSION_MS = 10, 3_600_000


class GroupFailure(Exception):
    """A request the group refuses: ``code`` (GroupError) and a message."""

    def __init__(self, code: GroupError, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Member:
    member_id: str
    client_id: str
    host: str
    session_timeout_ms: int
    deadline: float  # coordinator clock (seconds); past it the member is dropped
    target: list[int] = field(default_factory=list)  # what the assignor wants it to own


@dataclass
class HeartbeatAnswer:
    generation: int
    assigned: list[int]  # what the member may read now: keep these, drop the rest
    offsets: dict[int, int]  # committed next offset of each assigned partition that has one


def sticky_assign(partitions: int, current: dict[str, list[int]]) -> dict[str, list[int]]:
    """A balanced assignment that moves as few partitions as possible.

    Every member gets ``partitions // members`` partitions or one more; the ones with one more
    are those that already hold the most (then the lowest id). Each member keeps what it had up
    to its quota; the rest go, lowest first, to members below quota (lowest id first).

    >>> sticky_assign(6, {"a": [0, 1, 2, 3, 4, 5], "b": []})
    {'a': [0, 1, 2], 'b': [3, 4, 5]}
    >>> sticky_assign(6, {"a": [0, 1, 2], "b": [3, 4, 5], "c": []})
    {'a': [0, 1], 'b': [3, 4], 'c': [2, 5]}
    >>> sticky_assign(5, {"a": [0, 1], "c": [2, 3, 4]})  # b left
    {'a': [0, 1], 'c': [2, 3, 4]}
    """
    if not current:
        return {}
    valid = set(range(partitions))
    held = {m: [p for p in sorted(set(ps)) if p in valid] for m, ps in current.items()}
    base, extra = divmod(partitions, len(held))
    order = sorted(held, key=lambda m: (-len(held[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}
    taken: set[int] = set()
    out: dict[str, list[int]] = {}
    for m in sorted(held):
        keep = [p for p in held[m] if p not in taken][:quota[m]]
        taken.update(keep)
        out[m] = keep
    free = sorted(valid - taken)
    for m in sorted(out):
        while len(out[m]) < quota[m] and free:
            out[m].append(free.pop(0))
        out[m].sort()
    return out


@dataclass
class Group:
    """One consumer group: who is in it, who owns which partition, what is committed."""

    name: str
    topic: str = ""
    partitions: int = 0
    start: str = "earliest"
    generation: int = 0
    members: dict[str, Member] = field(default_factory=dict)
    owners: dict[int, str] = field(default_factory=dict)  # partition -> the member reading it
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, p) -> next offset

    # -- membership ----------------------------------------------------------------------------

    def join(self, member_id: str, client_id: str, host: str, topic: str, partitions: int,
             session_timeout_ms: int, start: str, now: float) -> bool:
        """Add a member (idempotent for a member already in). True when the group changed.

        Raises:
            GroupFailure: INVALID_REQUEST (bad arguments), INCONSISTENT_TOPIC (members read
                another topic).
        """
        if not (self.name and member_id and topic and 0 < partitions <= MAX_PARTITIONS
                and MIN_SESSION_MS <= session_timeout_ms <= MAX_SESSION_MS):
            raise GroupFailure(GroupError.INVALID_REQUEST,
                               f"a group, a member id, a topic with 1 to {MAX_PARTITIONS} partitions and "
                               f"a session timeout of {MIN_SESSION_MS} to {MAX_SESSION_MS} ms are needed")
        if start not in START_POLICIES:
            raise GroupFailure(GroupError.INVALID_REQUEST, f"start must be one of {START_POLICIES}")
        if self.members and topic != self.topic:
            raise GroupFailure(GroupError.INCONSISTENT_TOPIC,
                               f"group {self.name!r} reads topic {self.topic!r}, not {topic!r}")
        m = self.members.get(member_id)
        if m is not None:
            m.deadline = now + session_timeout_ms / 1000
            return False
        if not self.members:
            self.topic, self.start = topic, start
            self.owners.clear()
        self.partitions = max(partitions, self.partitions if topic == self.topic else 0)
        self.members[member_id] = Member(member_id, client_id, host, session_timeout_ms,
                                         now + session_timeout_ms / 1000)
        self._rebalance()
        return True

    def leave(self, member_id: str) -> bool:
        """Remove a member; its partitions are free at once. True when it was a member."""
        if self.members.pop(member_id, None) is None:
            return False
        self._release_all(member_id)
        self._rebalance()
        return True

    def expire(self, now: float) -> list[str]:
        """Drop the members whose session ran out; returns their ids."""
        gone = [m for m, v in self.members.items() if v.deadline < now]
        for m in gone:
            del self.members[m]
            self._release_all(m)
        if gone:
            self._rebalance()
        return gone

    def next_deadline(self) -> float | None:
        return min((m.deadline for m in self.members.values()), default=None)

    def heartbeat(self, member_id: str, owned: list[int], now: float) -> HeartbeatAnswer:
        """A member is alive and reads ``owned``. Partitions granted to it that it no longer
        reads are freed (it revoked them); then every partition of its target that nobody owns
        is granted to it.

        Raises:
            GroupFailure: UNKNOWN_MEMBER.
        """
        m = self._member(member_id)
        m.deadline = now + m.session_timeout_ms / 1000
        reads = set(owned)
        for p, o in list(self.owners.items()):
            if o == member_id and p not in reads and p not in m.target:
                del self.owners[p]  # revoked by the member
        for p in m.target:
            if p not in self.owners:
                self.owners[p] = member_id
        assigned = sorted(p for p in m.target if self.owners.get(p) == member_id)
        offsets = {p: self.offsets[(self.topic, p)] for p in assigned if (self.topic, p) in self.offsets}
        return HeartbeatAnswer(self.generation, assigned, offsets)

    def pending(self, member_id: str, owned: list[int]) -> bool:
        """Would a heartbeat of this member change anything (a grant or a revocation)?"""
        m = self.members.get(member_id)
        if m is None:
            return True
        mine = {p for p, o in self.owners.items() if o == member_id}
        grantable = {p for p in m.target if self.owners.get(p) in (None, member_id)}
        return set(owned) != grantable or mine != grantable

    # -- offsets -------------------------------------------------------------------------------

    def check_commit(self, member_id: str, generation: int, topic: str, partition: int) -> None:
        """The fence: only the member that owns the partition now may commit it.

        Raises:
            GroupFailure: UNKNOWN_MEMBER (not a member: expired or left, a zombie), FENCED (it
                does not own the partition: a member of an older generation that lost it).
        """
        self._member(member_id)
        if generation > self.generation:
            raise GroupFailure(GroupError.INVALID_REQUEST, f"generation {generation} is in the future")
        if topic != self.topic or self.owners.get(partition) != member_id:
            raise GroupFailure(GroupError.FENCED,
                               f"{member_id} (generation {generation}) does not own {topic}-{partition} "
                               f"in generation {self.generation}")

    def set_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        """Reset committed offsets (administration).

        Raises:
            GroupFailure: GROUP_NOT_EMPTY while the group has members.
        """
        if self.members:
            raise GroupFailure(GroupError.GROUP_NOT_EMPTY,
                               f"group {self.name!r} has {len(self.members)} members; stop them first")
        for p, o in offsets.items():
            if o < 0:
                raise GroupFailure(GroupError.INVALID_REQUEST, f"offset {o} for partition {p}")
        for p, o in offsets.items():
            self.offsets[(topic, p)] = o

    # -- persistence ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Membership and ownership, as JSON-able data (offsets are stored one record each)."""
        return {"topic": self.topic, "partitions": self.partitions, "start": self.start,
                "generation": self.generation,
                "members": {m.member_id: {"client": m.client_id, "host": m.host,
                                          "session_ms": m.session_timeout_ms, "target": m.target}
                            for m in self.members.values()},
                "owners": {str(p): m for p, m in self.owners.items()}}

    def restore(self, data: dict[str, Any], now: float) -> None:
        """Take a snapshot back (a new coordinator replaying the log). Every member gets a
        fresh session from ``now``: a member that died meanwhile expires one session later."""
        self.topic = str(data["topic"])
        self.partitions = int(data["partitions"])
        self.start = str(data.get("start", "earliest"))
        self.generation = int(data["generation"])
        self.members = {
            mid: Member(mid, str(v["client"]), str(v["host"]), int(v["session_ms"]),
                        now + int(v["session_ms"]) / 1000, [int(p) for p in v["target"]])
            for mid, v in data["members"].items()}
        self.owners = {int(p): str(m) for p, m in data["owners"].items() if m in self.members}

    # -- inside --------------------------------------------------------------------------------

    def _member(self, member_id: str) -> Member:
        m = self.members.get(member_id)
        if m is None:
            raise GroupFailure(GroupError.UNKNOWN_MEMBER,
                               f"{member_id!r} is not a member of group {self.name!r}; rejoin")
        return m

    def _release_all(self, member_id: str) -> None:
        for p in [p for p, o in self.owners.items() if o == member_id]:
            del self.owners[p]

    def _rebalance(self) -> None:
        self.generation += 1
        targets = sticky_assign(self.partitions, {m: v.target for m, v in self.members.items()})
        for m, ps in targets.items():
            self.members[m].target = ps

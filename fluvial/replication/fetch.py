"""The batched replica fetch, as plain decisions: one request per pair of SPUs (no trio, no I/O).

A follower SPU sends its leader one ``FetchReplicasRequest`` that carries every partition it
replicates from that leader (Kafka's replica fetcher thread per broker pair), instead of one
long-poll per partition: the idle cost is one request per pair of SPUs per ``max_wait``, not one per
partition. fluvial.spu.replication moves the bytes; this module decides:

Leader side
    ``refusal``      whether one partition of a fetch is refused (not the leader, not a replica,
                     another epoch) -- the same checks, in the same order, as a single fetch;
    ``has_news``     whether a partition gives the follower a reason to answer now: records past
                     its offset, or a HW it can use and has not seen;
    ``answer_in``    how long a poll may still wait: not at all for records, ``HW_LINGER_MS``
                     when all the follower lacks is a HW (the next records carry it);
    ``byte_budget``  how much of the answer's ``max_bytes`` is left for the next partition.

Follower side
    ``build_request``  the request for the partitions followed, starting at a rotating position so
                       that, under a byte limit, no partition is always last;
    ``follower_step``  what one partition's answer means for the follower's log: append (and the
                       HW it may take), reconcile (KIP-279), start over at the leader's log start
                       (``OffsetEvicted``), or retry later. An answer naming another leader epoch
                       than the one followed is never appended.

Worked example (a follower of partitions a and b at epoch 3, durable LEOs 10 and 7)::

    build_request(5002, [a@10, b@7], epoch 3, hws [10, 7], start=1)
        -> partitions [b@7, a@10]                         (rotated: b first this round)
    leader: a has records 10..12, b has nothing, HW(b) = 7  -> has_news(a) -> answer now
    follower_step(3, 10, FetchedPartition(a, OK, epoch 3, hw 12, records 10..12))
        -> Step(APPEND, records, hw=12)    (the HW is then capped at the durable LEO)
    follower_step(3, 7, FetchedPartition(b, OK, epoch 4, ...))
        -> Step(RETRY, "an answer for epoch 4 while following epoch 3")
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fluvial.errors import Error, ErrorCode
from fluvial.protocol import internal_api as ia

FETCH_MAX_BYTES = 1 << 20
# How long an idle poll waits (Kafka: replica.fetch.wait.max.ms, 500). Longer here because
# nothing waits on an idle poll's end: records, HW moves, errors and leadership changes answer
# it at once, a new partition cancels it, and a caught-up follower stays in the ISR without
# fetching (fluvial.replication.isr, rule 3). What it costs is a dead leader's connection
# noticed that much later when no RST arrives (a network partition).
FETCH_MAX_WAIT_MS = 2000
# How long the leader holds a poll whose only news is a HW the follower has not seen, waiting for
# records to carry it (``answer_in``). Without it every record costs each follower a second round
# trip (records, then the HW they committed), answered at the very moment the leader acks the
# producer and wakes its consumers. A follower's HW is advisory (it only bounds what the follower
# would serve, and a new leader recomputes it), so holding it back a little costs no safety.
HW_LINGER_MS = 5


# ----------------------------------------------------------------------------- leader side


def refusal(*, leads: bool, replicas: Iterable[int], leader_epoch: int, self_id: int,
            follower_id: int, requested_epoch: int) -> ErrorCode | None:
    """Why the leader refuses one partition of a fetch, or None.

    >>> refusal(leads=False, replicas=[1, 2], leader_epoch=3, self_id=1, follower_id=2, requested_epoch=3)
    <ErrorCode.NotLeaderForPartition: 6>
    >>> refusal(leads=True, replicas=[1, 2], leader_epoch=3, self_id=1, follower_id=2, requested_epoch=2)
    <ErrorCode.NotLeaderForPartition: 6>
    >>> refusal(leads=True, replicas=[1, 2], leader_epoch=3, self_id=1, follower_id=2, requested_epoch=3) is None
    True

    A follower that is not a replica of the partition (or is the leader itself) is refused with
    PermissionDenied; a fetch carrying another epoch than the leader's with
    NotLeaderForPartition: a stale leader or a stale follower never exchanges records.
    """
    if not leads:
        return ErrorCode.NotLeaderForPartition
    if follower_id not in replicas or follower_id == self_id:
        return ErrorCode.PermissionDenied
    if requested_epoch != leader_epoch:
        return ErrorCode.NotLeaderForPartition
    return None


def has_news(fetch_offset: int, known_hw: int, log_end: int, hw: int) -> bool:
    """Whether a partition gives the leader a reason to answer now: the follower lacks records
    it has written, or the leader's HW lets the follower move its own HW (which is capped at
    what the follower holds, ``fetch_offset``).

    >>> has_news(10, 10, 10, 10)      # caught up, HW known
    False
    >>> has_news(10, 10, 12, 10)      # records 10..11 to send
    True
    >>> has_news(10, 8, 10, 10)       # the follower's HW can move 8 -> 10
    True
    >>> has_news(10, 10, 10, 12)      # a HW past what the follower holds is of no use yet
    False
    """
    return fetch_offset < log_end or min(hw, fetch_offset) > known_hw


def answer_in(fetch_offset: int, known_hw: int, log_end: int, hw: int,
              linger_ms: int = HW_LINGER_MS) -> float | None:
    """How long (ms) the leader may still hold a poll for this partition: 0 when the follower
    lacks records (answer now), ``linger_ms`` when all it lacks is a HW (``has_news``: let the
    next records carry it), None when it lacks nothing.

    >>> answer_in(10, 10, 12, 10), answer_in(10, 8, 10, 10), answer_in(10, 10, 10, 10)
    (0, 5, None)
    """
    if fetch_offset < log_end:
        return 0
    if has_news(fetch_offset, known_hw, log_end, hw):
        return linger_ms
    return None


def byte_budget(max_bytes: int, used: int) -> int:
    """What is left of an answer's ``max_bytes`` after ``used`` bytes; 0: send no more records
    (the first partition with records always gets at least one batch, see ``Replica.read``).

    >>> byte_budget(100, 30), byte_budget(100, 100), byte_budget(100, 130)
    (70, 0, 0)
    """
    return max(max_bytes - used, 0)


def fetched(p: ia.FetchPartition, error: Error, epoch: int = -1, hw: int = 0, leo: int = 0,
            log_start: int = 0, records: bytes = b"") -> ia.FetchedPartition:
    """One partition's answer."""
    return ia.FetchedPartition(p.topic, p.partition, error, epoch, hw, leo, log_start, records)


# --------------------------------------------------------------------------- follower side


@dataclass(frozen=True, slots=True)
class Followed:
    """One partition as the follower asks for it."""

    topic: str
    partition: int
    epoch: int
    fetch_offset: int  # the follower's durable LEO
    hw: int  # the follower's HW (the leader answers early when it can move it)


def build_request(follower_id: int, followed: Sequence[Followed], start: int,
                  max_bytes: int = FETCH_MAX_BYTES, max_wait_ms: int = FETCH_MAX_WAIT_MS
                  ) -> ia.FetchReplicasRequest:
    """The fetch for every partition in ``followed``, rotated to begin at ``start`` (mod len).

    >>> r = build_request(2, [Followed("t", 0, 1, 5, 5), Followed("t", 1, 1, 9, 8)], start=1)
    >>> [(p.partition, p.fetch_offset) for p in r.partitions], r.known_hws
    ([(1, 9), (0, 5)], [8, 5])
    """
    n = len(followed)
    order = [followed[(start + i) % n] for i in range(n)] if n else []
    return ia.FetchReplicasRequest(
        follower_id, [ia.FetchPartition(f.topic, f.partition, f.epoch, f.fetch_offset) for f in order],
        [f.hw for f in order], max_bytes, max_wait_ms)


class Action(enum.Enum):
    APPEND = "append"  # append ``records`` (maybe none), then take ``hw`` (capped at the durable LEO)
    RECONCILE = "reconcile"  # this log holds records the leader never wrote: KIP-279 again
    START_AT = "start_at"  # the leader's log starts past this log's end: empty it, start at ``offset``
    RETRY = "retry"  # nothing to do to the log now; ask again later (``reason``)


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    records: bytes = b""
    hw: int = 0
    offset: int = 0
    reason: str = ""


def follower_step(epoch: int, fetch_offset: int, answer: ia.FetchedPartition) -> Step:
    """What the follower of a partition at leader ``epoch``, which fetched from ``fetch_offset``,
    does with ``answer``. The epoch is checked first: an answer for another epoch (a stale leader
    process, or a leadership that moved) changes nothing.

    >>> ok = Error(ErrorCode.None_)
    >>> follower_step(3, 10, ia.FetchedPartition("t", 0, ok, 3, 12, 12, 0, b"x")).action
    <Action.APPEND: 'append'>
    >>> follower_step(3, 10, ia.FetchedPartition("t", 0, ok, 2, 12, 12, 0, b"x")).action
    <Action.RETRY: 'retry'>
    >>> evicted = Error(ErrorCode.OffsetEvicted, (10, 20))
    >>> follower_step(3, 10, ia.FetchedPartition("t", 0, evicted, 3, 25, 25, 20, b"")).offset
    20
    """
    code = answer.error_code.code
    if not answer.error_code.ok and code not in (ErrorCode.OffsetOutOfRange, ErrorCode.OffsetEvicted):
        return Step(Action.RETRY, reason=answer.error_code.message)
    if answer.leader_epoch != epoch:
        return Step(Action.RETRY, reason=f"an answer for epoch {answer.leader_epoch} while following epoch {epoch}")
    if code == ErrorCode.OffsetOutOfRange:
        return Step(Action.RECONCILE)
    if code == ErrorCode.OffsetEvicted:
        if fetch_offset >= answer.log_start_offset:
            return Step(Action.RETRY, reason=answer.error_code.message)
        return Step(Action.START_AT, offset=answer.log_start_offset)
    return Step(Action.APPEND, records=answer.records, hw=answer.hw)

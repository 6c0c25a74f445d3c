"""Leader election, and log reconciliation by leader epoch (Kafka KIP-101 and KIP-279).

Theory of operation
-------------------
**Election** (``elect_leader``) runs on the SC when a partition's leader is lost or unknown.

* A live leader that is still in the ISR is kept: elections never move a healthy leader.
* Otherwise the candidates are the *live* members of the *ISR*. Every ISR member holds every
  committed record (the HW is the minimum LEO over the ISR, ``fluvial.replication.offsets``), so
  any of them is a *clean* choice. We take the highest LEO, which keeps the most records that were
  written but not yet committed; ties go to the earlier replica in assignment order, so the
  preferred replica (``replicas[0]``) wins when it is as good as the others.
* If no ISR member is alive, the partition stays offline (Fluvio's ``LeaderOffline`` resolution)
  until one comes back, unless the topic opts into *unclean* election: then the live replica with
  the highest LEO leads, committed records it lacks are lost, and the result says so.

The ISR a clean election leaves behind is the old ISR minus dead members; after an unclean one it
is just the new leader. With no leader the ISR is left as it was, so the last in-sync replicas
are still known (and still electable) when they return.

**Leader epochs.** Every election starts a new leader epoch, a number larger than any before.
Each replica keeps an *epoch cache*: ``(epoch, start_offset)`` pairs in increasing order, where
``start_offset`` is the first offset written in that epoch. The leader records its own entry
``(epoch, leo)`` when it takes over (``assign_epoch``); followers learn entries from the
``partition_leader_epoch`` of the batches they copy.

**Truncation** replaces "truncate to my HW", which loses committed records or leaves diverged
logs (the two KIP-101 scenarios, replayed in ``tests/replication/test_election.py``). Before
fetching from a (new) leader a follower asks for the end offset of its latest epoch::

    follower                                   leader
      ask(E = my latest epoch)        ---->    end_offset_for_epoch(E) = (E', end)
                                                 E' = largest leader epoch <= E
                                                 end = start of the leader's next epoch after E'
                                                       (its LEO if E' is its latest)
      truncation_offset(...)  -> truncate to X, and maybe ask again

If ``E' == E`` the follower's epoch E and the leader's agree up to ``end``: truncate to
``min(end, my LEO)``, done. If ``E' < E`` the leader never saw some of the follower's epochs
(KIP-279): the follower cuts everything after its own copy of epoch ``E'`` and, if it does not
have ``E'`` itself, asks again for its largest epoch below it. Every round removes at least one
epoch, so the loop ends.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from fluvial.storage.epochs import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, EpochEntry, LeaderEpochCache

__all__ = [
    "UNDEFINED_EPOCH", "UNDEFINED_EPOCH_OFFSET", "ElectionResult", "EpochEntry", "TruncationStep",
    "assign_epoch", "elect_leader", "end_offset_for_epoch", "latest_epoch",
    "truncate_epochs_from_end", "truncate_epochs_from_start", "truncation_offset",
]


# -- election -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ElectionResult:
    """The outcome of ``elect_leader``.

    Attributes:
      leader: the elected SPU, or None: no eligible replica, the partition stays offline.
      unclean: True if the leader came from outside the ISR (committed records may be lost).
      reason: one line for logs and the partition status.
      isr: the ISR to record with this leadership (leader included).
    """

    leader: int | None
    unclean: bool
    reason: str
    isr: frozenset[int]

    @property
    def offline(self) -> bool:
        return self.leader is None


def elect_leader(replicas: Sequence[int], isr: Collection[int], live: Collection[int],
                 leos: Mapping[int, int], current_leader: int, allow_unclean: bool) -> ElectionResult:
    """Choose a partition leader.

    Args:
      replicas: the assigned replicas, preferred leader first.
      isr: the last recorded in-sync replicas.
      live: SPUs currently online.
      leos: the last LEO reported for each replica; a missing entry counts as -1 (lowest).
      current_leader: the leader now, or -1 for none.
      allow_unclean: the topic accepts an out-of-sync leader (and possible data loss) over staying
        offline.

    Returns:
      An ``ElectionResult``. ``leader == current_leader`` means nothing changes. Only members of
      ``replicas`` are ever chosen.

    Raises:
      ValueError: ``replicas`` is empty or has duplicates.

    Worked examples (replicas [1, 2, 3])::

      isr      live       leos               current  unclean  -> leader, unclean, isr
      {1,2,3}  {1,2,3}    -                  1        no       -> 1 (kept), no, {1,2,3}
      {1,2,3}  {2,3}      {2: 8, 3: 10}      1        no       -> 3 (highest leo), no, {2,3}
      {1,2,3}  {2,3}      {2: 10, 3: 10}     1        no       -> 2 (tie: replica order), no, {2,3}
      {1,2}    {3}        {3: 7}             1        no       -> None (offline), -, {1,2}
      {1,2}    {3}        {3: 7}             1        yes      -> 3, yes, {3}
    """
    if not replicas:
        raise ValueError("a partition needs at least one replica")
    if len(set(replicas)) != len(replicas):
        raise ValueError(f"duplicate replica ids in {list(replicas)}")
    isr_set = frozenset(isr) & frozenset(replicas)
    live_set = frozenset(live)

    if current_leader in isr_set and current_leader in live_set:
        return ElectionResult(current_leader, False, f"leader {current_leader} is live and in sync",
                              isr_set & live_set)

    def best(candidates: list[int]) -> int:
        # max() keeps the first of equal keys; candidates are in replica order
        return max(candidates, key=lambda r: leos.get(r, -1))

    clean = [r for r in replicas if r in isr_set and r in live_set]
    if clean:
        leader = best(clean)
        return ElectionResult(
            leader, False,
            f"{leader} elected from the live in-sync replicas {clean} (leo {leos.get(leader, -1)})",
            isr_set & live_set)

    alive = [r for r in replicas if r in live_set]
    lost = f"no live in-sync replica (isr {sorted(isr_set)}, live replicas {alive})"
    if not allow_unclean:
        return ElectionResult(None, False, f"{lost}; unclean election is disabled", isr_set)
    if not alive:
        return ElectionResult(None, False, f"{lost}; no replica is live", isr_set)
    leader = best(alive)
    return ElectionResult(
        leader, True,
        f"unclean election: {lost}; {leader} has the highest leo ({leos.get(leader, -1)}), "
        "committed records it lacks are lost",
        frozenset({leader}))


# -- the epoch cache ----------------------------------------------------------------------------
#
# One implementation of the cache rules and of the OffsetForLeaderEpoch lookup: storage's
# ``LeaderEpochCache``, which the leader answers with (``Replica.end_offset_for_epoch``). The
# functions below adapt it to plain lists of ``(epoch, start_offset)`` pairs, check their order,
# and refuse what a well-formed history never does, so the follower's side (``truncation_offset``)
# and the replication model in the tests run the very rules the log runs.


def _checked(epochs: Iterable[tuple[int, int]]) -> list[EpochEntry]:
    out = [EpochEntry(*e) for e in epochs]
    for prev, cur in zip(out, out[1:]):
        if cur.epoch <= prev.epoch or cur.start_offset <= prev.start_offset:
            raise ValueError(f"epoch cache out of order: {prev} then {cur}")
    for e in out[:1]:
        if e.epoch < 0 or e.start_offset < 0:
            raise ValueError(f"epoch cache entry with a negative value: {e}")
    return out


def _cache(epochs: Iterable[tuple[int, int]]) -> LeaderEpochCache:
    cache = LeaderEpochCache()
    cache.entries = _checked(epochs)
    return cache


def latest_epoch(epochs: Sequence[tuple[int, int]]) -> int:
    """The epoch a follower asks about: its latest, or ``UNDEFINED_EPOCH`` for an empty cache."""
    return epochs[-1][0] if epochs else UNDEFINED_EPOCH


def assign_epoch(epochs: Iterable[tuple[int, int]], epoch: int, start_offset: int) -> list[EpochEntry]:
    """Record that ``epoch`` starts at ``start_offset`` (a new leader, or a fetched batch's epoch).

    Returns the new cache (the input is not modified). Rules, as Kafka's ``LeaderEpochFileCache``
    (``LeaderEpochCache.assign``):

    * same epoch as the latest, at or after its start: unchanged (the epoch already started);
    * a newer epoch: appended; a latest entry that starts at the same offset held no records and
      is replaced. ``[(0, 0), (3, 10)] + (5, 10) -> [(0, 0), (5, 10)]``.

    Raises:
      ValueError: an epoch older than the latest, an earlier start offset than the latest entry's
        (truncate with ``truncate_epochs_from_end`` first), or negative values.
    """
    cache = _cache(epochs)
    if epoch < 0 or start_offset < 0:
        raise ValueError(f"negative epoch or offset: ({epoch}, {start_offset})")
    if cache.entries:
        last = cache.entries[-1]
        if epoch < last.epoch:
            raise ValueError(f"epoch {epoch} is older than the latest epoch {last.epoch}")
        if start_offset < last.start_offset:
            raise ValueError(f"epoch {epoch} at {start_offset} starts before the latest entry {tuple(last)}")
    cache.assign(epoch, start_offset)
    return cache.entries


def truncate_epochs_from_end(epochs: Iterable[tuple[int, int]], end_offset: int) -> list[EpochEntry]:
    """The cache after the log is truncated to ``end_offset``: entries starting at or after it go.

    ``truncate_epochs_from_end([(0, 0), (1, 4), (2, 9)], 4) == [(0, 0)]``
    """
    cache = _cache(epochs)
    cache.truncate_from_end(end_offset)
    return cache.entries


def truncate_epochs_from_start(epochs: Iterable[tuple[int, int]], start_offset: int) -> list[EpochEntry]:
    """The cache after retention removes every record below ``start_offset``.

    Entries wholly below it go; the one that covers it now starts there.
    ``truncate_epochs_from_start([(0, 0), (1, 4), (2, 9)], 6) == [(1, 6), (2, 9)]``
    """
    cache = _cache(epochs)
    cache.truncate_from_start(start_offset)
    return cache.entries


def end_offset_for_epoch(epochs: Sequence[tuple[int, int]], leo: int,
                         requested_epoch: int) -> tuple[int, int]:
    """The leader's answer to "where does epoch ``requested_epoch`` end?" (OffsetForLeaderEpoch),
    by ``LeaderEpochCache.end_offset_for``: the same lookup the leader's storage answers with.

    Args:
      epochs: this replica's epoch cache.
      leo: this replica's LEO.
      requested_epoch: the asker's latest epoch.

    Returns:
      ``(epoch, end_offset)``: ``epoch`` is the largest epoch <= ``requested_epoch`` in the cache,
      and ``end_offset`` is the start offset of the next epoch after it, or ``leo`` if it is the
      latest. When the cache has no epoch <= ``requested_epoch`` the answer is
      ``(requested_epoch, first entry's start)``: nothing the asker wrote in that epoch is here.
      ``(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`` when ``requested_epoch`` is undefined
      (negative), the cache is empty, or ``requested_epoch`` is newer than every epoch here (the
      asker knows a newer leader than this one).

      Kafka answers the "below the first epoch" case this way too, rather than UNDEFINED: UNDEFINED
      sends the follower back to truncating at its HW, the very thing epochs exist to avoid.

    Worked examples, cache ``[(1, 0), (2, 4), (4, 9)]``, LEO 12::

      requested 4 -> (4, 12)     latest epoch: ends at the LEO
      requested 3 -> (2, 9)      3 is unknown; 2 is the largest below, and 4 starts at 9
      requested 1 -> (1, 4)
      requested 0 -> (0, 0)      older than anything here
      requested 5 -> (-1, -1)    newer than anything here
    """
    cache = _cache(epochs)
    if requested_epoch < 0:
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    return tuple(cache.end_offset_for(requested_epoch, leo))


# -- the follower's side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TruncationStep:
    """What a follower does with the leader's answer.

    Attributes:
      truncate_to: truncate the log (and the epoch cache, ``truncate_epochs_from_end``) to this
        offset; equal to the follower's LEO when nothing needs cutting.
      ask_epoch: None when reconciliation is done (fetch from ``truncate_to``). Otherwise ask the
        leader for the end of this epoch, which is the follower's latest epoch once truncated, and
        call ``truncation_offset`` again with the answer.
    """

    truncate_to: int
    ask_epoch: int | None = None

    @property
    def done(self) -> bool:
        return self.ask_epoch is None


def truncation_offset(follower_epochs: Sequence[tuple[int, int]], follower_leo: int,
                      leader_end_offset_for_epoch: tuple[int, int], *,
                      follower_hw: int | None = None) -> TruncationStep:
    """One round of KIP-279 reconciliation, run by a follower before it fetches.

    The follower asked the leader about ``latest_epoch(follower_epochs)``; the leader answered
    ``leader_end_offset_for_epoch = (E', end)`` from ``end_offset_for_epoch``.

    * ``E' == asked``: truncate to ``min(end, follower_leo)``; done.
    * ``E' < asked``: look up the follower's own ``(e, own_end)`` for ``E'``. If ``e == E'`` both
      have epoch ``E'`` and agree up to ``min(end, own_end)``: truncate to ``min(end, own_end,
      follower_leo)``; done. If the follower lacks ``E'`` (``e < E'``), truncate to ``own_end``
      (its epochs after ``e`` never reached the leader) and ask again about ``e``.
    * An empty follower cache: truncate to ``min(end, follower_leo)``; done (Kafka's rule).
    * Answer ``(any, -1)`` (the leader cannot tell): fall back to the follower's HW if given,
      the pre-KIP-101 rule and unsafe, reachable only when the leader has no epoch history.
    * Answer ``(-1, end)`` (no epoch, KIP-101's first version): truncate to ``min(end, follower_leo)``.

    Worked example (KIP-279's case; one round is not enough for KIP-101)::

      follower [(0, 0), (1, 3), (3, 6)], leo 8      leader [(0, 0), (2, 4), (4, 9)], leo 12
      ask 3 -> leader (2, 9); follower's largest epoch <= 2 is 1, ending at 6
            -> TruncationStep(6, ask_epoch=1)
      ask 1 -> leader (0, 4); follower has epoch 0, ending at 3
            -> TruncationStep(3)      min(4, 3, 6): offsets 0..2 are epoch 0 on both

    Raises:
      ValueError: the answer is for an epoch newer than the follower asked about, or the answer
        is undefined and no ``follower_hw`` was given (the leader has no epoch history; refresh the
        leadership and retry).
    """
    cache = _checked(follower_epochs)
    leader_epoch, leader_end = leader_end_offset_for_epoch
    if leader_end == UNDEFINED_EPOCH_OFFSET:
        if follower_hw is None:
            raise ValueError(f"the leader has no end offset for epoch {latest_epoch(cache)} "
                             f"(answer {leader_end_offset_for_epoch})")
        return TruncationStep(min(follower_hw, follower_leo))
    if leader_epoch < 0 or not cache:
        return TruncationStep(min(leader_end, follower_leo))
    asked = cache[-1].epoch
    if leader_epoch > asked:
        raise ValueError(
            f"the leader answered for epoch {leader_epoch}, newer than the epoch asked about ({asked})")
    own_epoch, own_end = end_offset_for_epoch(cache, follower_leo, leader_epoch)
    if own_epoch == leader_epoch:
        return TruncationStep(min(leader_end, own_end, follower_leo))
    # the follower lacks E'; own_epoch < E' is its largest epoch below, and own_end is where its
    # next epoch starts, so after the cut own_epoch is its latest epoch
    return TruncationStep(min(own_end, follower_leo), own_epoch)

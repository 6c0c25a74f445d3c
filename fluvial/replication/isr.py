"""The leader's view of its followers: ISR membership by lag time, and the HW it implies.

Theory of operation
-------------------
``LeaderState`` is a plain object the leader SPU feeds with events and asks questions. It reads no
clock: every event carries ``now``, monotonic seconds supplied by the caller, and the object stays
correct if ``now`` stands still or goes backwards (times are only ever combined with ``max``).

Events: ``update_leader_leo(leo, now)`` when the leader's *durable* LEO moves (after an fsync),
``on_append(log_end)`` when the leader writes (not yet durable), ``on_follower_fetch(spu, offset,
now)`` when a follower reports its LEO (the offset it fetches from), ``set_recorded_isr(isr)`` when
the SC's ISR record changes, and a periodic ``maybe_shrink_isr(now, lag_time_max)``. Each returns
what changed; nothing is done behind the caller's back.

**Which LEO.** The leader's LEO here is its durable LEO: the HW counts only records that survive
a crash of every ISR member, and a follower's reported LEO is durable on its side (it fsyncs before
it fetches again). ``log_end`` is what the leader has written; a follower served written data may
report up to it, never beyond.

**Caught up.** A follower is *caught up at time t* if its LEO (as last reported) is >= the leader's
LEO at t. ``last_caught_up_time`` is the latest such t the leader can prove:

1. fetch at t with offset >= leader LEO                       -> caught up at t;
2. fetch at t with offset >= the leader LEO at its *previous* fetch (time t0)
                                                               -> caught up at t0 (Kafka's
   ``ReplicaState`` rule: it has just proved it held everything that existed at t0);
3. the leader appends at t while the follower's LEO >= the old leader LEO
                                                               -> caught up until t.

Rule 3 is ours. Kafka's followers poll, so their fetch times stay fresh while idle; a Fluvio-style
leader *pushes* records and an idle follower may stay silent for a long time. Without rule 3 the
first append after a quiet spell would make every silent, fully caught-up follower look
``lag_time_max`` late at once. With it, a follower that dies while caught up leaves the ISR
``lag_time_max`` after the first append it misses (Kafka: after its last fetch; the two agree
under steady traffic).

**Leaving the ISR** (``maybe_shrink_isr``): a follower leaves when its LEO < leader LEO *and*
``now - last_caught_up_time > lag_time_max`` (Kafka's ``replica.lag.time.max.ms``). A follower whose
LEO equals the leader's is in sync no matter how long ago it last spoke.

**Rejoining the ISR** (in ``on_follower_fetch``): a follower outside the ISR rejoins on a fetch
whose offset is >= the leader's HW *and* >= ``epoch_start_offset`` (the leader's LEO when it became
leader; Kafka's ``isFollowerInSync``, KAFKA-7128). "Has fetched within the lag time" holds
trivially: it is fetching now. The HW condition is what keeps the HW monotonic: a new ISR member
never holds less than the HW. The epoch-start condition stops a follower from rejoining on a new
leader's stale, lagging HW before it holds everything the previous leader may have committed. A
follower that rejoins while still short of the leader's LEO, and was not caught up within the lag
time, is dropped again at the next check, as in Kafka: safe, at the price of ISR churn while it
catches up.

**HW** is ``compute_hw(leo, LEOs of the HW members, current_hw=hw)``: the minimum, never
backwards. The HW members are the leader's ISR *plus* the ISR the SC has on record
(``recorded_isr``, Kafka's "maximal ISR", KIP-497): a shrink counts for the HW only once the SC
has recorded it, so an election, which picks from the SC's record, never chooses a replica that
misses a committed record. Conversely ``is_under_min_isr`` counts the members both agree on.
A lone leader (ISR = {leader}) commits each durable append at once. ``min_isr`` does not hold
the HW back: as in Kafka it only decides whether an ``acks=all`` produce is accepted. The recipe for the
produce handler::

    if state.is_under_min_isr(min_isr): reject before appending (not enough replicas)
    end = append(...); state.on_append(end)
    fsync; state.update_leader_leo(durable LEO, now)
    wait until state.committed(end)
    if state.is_under_min_isr(min_isr): answer "not enough replicas after append"

Where the ISR lives (leader or SC) is the caller's choice: ``out_of_sync`` answers the question
without changing anything, and ``isr_version`` increases with every ISR change, so a caller can
tell when to report the ISR.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from fluvial.replication.offsets import UNKNOWN_OFFSET, ReplicaOffsets, compute_hw, follower_hw


class FollowerAheadError(ValueError):
    """A follower reported a LEO beyond the leader's: it holds records the leader never wrote.

    It must run the leader-epoch truncation (``fluvial.replication.election.truncation_offset``)
    before fetching. The leader answers such a fetch with an offset-out-of-range error.
    """


@dataclass(frozen=True, slots=True)
class FollowerState:
    """What the leader knows about one follower.

    ``leo`` is ``UNKNOWN_OFFSET`` until its first report to this leader. The times are the
    caller's monotonic seconds; ``None`` means "never".
    """

    spu: int
    leo: int = UNKNOWN_OFFSET
    last_caught_up_time: float | None = None
    last_fetch_time: float | None = None
    last_fetch_leader_leo: int | None = None


def _later(a: float | None, b: float) -> float:
    return b if a is None or b > a else a


class LeaderState:
    """ISR and HW bookkeeping for one partition on its leader.

    Args:
      leader: this SPU's id.
      replicas: all replica ids, leader included, in assignment order.
      leo: the leader's LEO now.
      hw: the HW loaded from the checkpoint; clamped to ``leo`` (a checkpoint can be ahead of a log
        whose unflushed tail was lost).
      now: monotonic seconds. ISR followers start with ``last_caught_up_time = now``: each gets a
        full ``lag_time_max`` to report to the new leader before it can be dropped.
      isr: the ISR handed over with the leadership (by default every replica, as for a new
        partition). It must be a subset of ``replicas``; the leader is always added.
      epoch_start_offset: the leader's LEO when it became leader for this epoch; defaults to
        ``leo``. Followers rejoin the ISR only at or beyond it.
      recorded_isr: the ISR the SC has on record (see ``set_recorded_isr``); None: the SC's
        record is not tracked, only the leader's ISR counts.

    Raises:
      ValueError: duplicate replicas, the leader not among them, an ISR member that is not a
        replica, or a negative offset.

    Worked example (leader 1, followers 2 and 3, lag_time_max 10)::

      LeaderState(1, [1, 2, 3], leo=0, hw=0, now=0)   isr {1,2,3}, hw 0
      update_leader_leo(5, now=1)                     hw 0: followers 2, 3 unknown (-1)
      on_follower_fetch(2, 5, now=2) -> False         2 caught up at 2; hw still held by 3
      on_follower_fetch(3, 3, now=2) -> True          hw 3 = min(5, 5, 3)
      on_follower_fetch(3, 5, now=3) -> True          hw 5
      update_leader_leo(9, now=4)                     2 and 3 had leo 5 >= 5: caught up until 4
      on_follower_fetch(2, 9, now=5) -> False         hw held by 3 (leo 5)
      maybe_shrink_isr(now=14, 10) -> {}              3: 14 - 4 = 10, not > 10
      maybe_shrink_isr(now=15, 10) -> {3}             hw jumps to 9 (min over {1, 2})
      on_follower_fetch(3, 9, now=16) -> False        9 >= hw 9: 3 rejoins, isr {1,2,3}
    """

    __slots__ = ("leader", "replicas", "_leo", "_log_end", "_hw", "_isr", "_recorded", "_followers",
                 "epoch_start_offset", "isr_version")

    def __init__(self, leader: int, replicas: Iterable[int], *, leo: int, hw: int, now: float,
                 isr: Iterable[int] | None = None, epoch_start_offset: int | None = None,
                 recorded_isr: Iterable[int] | None = None):
        replicas = tuple(replicas)
        if len(set(replicas)) != len(replicas):
            raise ValueError(f"duplicate replica ids in {list(replicas)}")
        if leader not in replicas:
            raise ValueError(f"leader {leader} is not one of the replicas {list(replicas)}")
        if leo < 0 or hw < 0:
            raise ValueError(f"offsets must be >= 0, got leo={leo} hw={hw}")
        isr_set = set(replicas if isr is None else isr) | {leader}
        strangers = isr_set - set(replicas)
        if strangers:
            raise ValueError(f"isr members {sorted(strangers)} are not replicas {list(replicas)}")
        self.leader = leader
        self.replicas = replicas
        self._leo = self._log_end = leo
        self._hw = min(hw, leo)
        self._isr = frozenset(isr_set)
        self._recorded = None if recorded_isr is None else frozenset(recorded_isr) & set(replicas)
        self.epoch_start_offset = leo if epoch_start_offset is None else epoch_start_offset
        self.isr_version = 0
        self._followers = {
            r: FollowerState(r, last_caught_up_time=now if r in isr_set else None)
            for r in replicas if r != leader
        }
        self._advance_hw()  # a leader alone in the ISR commits its whole log at once

    # -- queries ------------------------------------------------------------------------------

    @property
    def leo(self) -> int:
        return self._leo

    @property
    def log_end(self) -> int:
        """What the leader has written (>= ``leo``, its durable LEO)."""
        return self._log_end

    @property
    def hw(self) -> int:
        return self._hw

    @property
    def isr(self) -> frozenset[int]:
        """The in-sync replicas, leader included."""
        return self._isr

    @property
    def followers(self) -> Mapping[int, FollowerState]:
        """Read-only view: follower id -> ``FollowerState``."""
        return MappingProxyType(self._followers)

    def committed(self, end_offset: int) -> bool:
        """Whether every record below ``end_offset`` is committed, i.e. ``hw >= end_offset``.

        Pass the LEO an append returned (its last offset + 1). Example: with hw 7, a batch at
        offsets 5..6 (``end_offset`` 7) is committed, one at 5..7 (8) is not.
        """
        return self._hw >= end_offset

    @property
    def recorded_isr(self) -> frozenset[int] | None:
        """The ISR the SC has on record, or None when not tracked."""
        return self._recorded

    def is_under_min_isr(self, min_isr: int) -> bool:
        """Whether fewer than ``min_isr`` replicas (leader included) are in the ISR by the
        leader's count and, when tracked, by the SC's record too."""
        agreed = self._isr if self._recorded is None else self._isr & self._recorded
        return len(agreed | {self.leader}) < min_isr

    def out_of_sync(self, now: float, lag_time_max: float) -> frozenset[int]:
        """The ISR followers that have lagged for more than ``lag_time_max`` seconds at ``now``.

        A follower is out of sync when its LEO < leader LEO and it has not been caught up since
        ``now - lag_time_max`` (or never was). Changes nothing.
        """
        late = set()
        for spu in self._isr:
            if spu == self.leader:
                continue
            f = self._followers[spu]
            if f.leo >= self._leo:
                continue
            if f.last_caught_up_time is None or now - f.last_caught_up_time > lag_time_max:
                late.add(spu)
        return frozenset(late)

    def replica_offsets(self) -> list[ReplicaOffsets]:
        """Leader first, then followers in replica order, for status reports (Fluvio's LRS).

        A follower's HW is the one the leader vouches for: ``min(leader hw, follower leo)``.
        """
        out = [ReplicaOffsets(self.leader, self._leo, self._hw)]
        for r in self.replicas:
            if r == self.leader:
                continue
            f = self._followers[r]
            hw = UNKNOWN_OFFSET if f.leo == UNKNOWN_OFFSET else follower_hw(self._hw, f.leo)
            out.append(ReplicaOffsets(r, f.leo, hw))
        return out

    # -- events -------------------------------------------------------------------------------

    def on_append(self, log_end: int) -> None:
        """The leader wrote up to ``log_end`` (not yet durable): followers may fetch up to it."""
        if log_end > self._log_end:
            self._log_end = log_end

    def update_leader_leo(self, leo: int, now: float) -> bool:
        """The leader's durable LEO is now ``leo`` (an fsync covered its appends).

        Followers whose LEO had reached the old leader LEO were caught up until ``now`` (rule 3 of
        the module docstring).

        Returns:
          True if the HW moved (only possible when no ISR follower holds it back, e.g. ISR =
          {leader}).

        Raises:
          ValueError: ``leo`` below the current LEO; a leader never truncates its own log.
        """
        if leo < self._leo:
            raise ValueError(f"leader leo cannot go back from {self._leo} to {leo}")
        if leo == self._leo:
            return False
        for spu, f in self._followers.items():
            if f.leo >= self._leo:
                self._followers[spu] = dataclasses.replace(
                    f, last_caught_up_time=_later(f.last_caught_up_time, now))
        self._leo = leo
        self._log_end = max(self._log_end, leo)
        return self._advance_hw()

    def set_recorded_isr(self, isr: Iterable[int]) -> bool:
        """The SC's ISR record is now ``isr`` (replicas only count). Returns True if the HW
        moved (a member the SC dropped no longer holds it)."""
        self._recorded = frozenset(isr) & set(self.replicas)
        return self._advance_hw()

    def on_follower_fetch(self, spu: int, fetch_offset: int, now: float) -> bool:
        """Follower ``spu`` fetches from ``fetch_offset``, i.e. reports that as its LEO.

        Updates its caught-up time (rules 1 and 2), lets it rejoin the ISR when ``fetch_offset >=
        max(hw, epoch_start_offset)``, and recomputes the HW. A lower offset than before is
        accepted (the follower truncated); it can only ever hold the HW, never lower it.

        Worked example (leader LEO 10, hw 6, follower 2 in the ISR at leo 6)::

          on_follower_fetch(2, 10, now=3)  -> True   caught up at 3, hw 10
          update_leader_leo(14, now=4)               caught up until 4
          on_follower_fetch(2, 12, now=5)  -> True   12 < 14, but 12 >= 10 (leader LEO at its fetch
                                                     at 3): caught up at 3 (stays 4); hw 12

        Returns:
          True if the HW moved. An ISR change shows in ``isr`` / ``isr_version``.

        Raises:
          ValueError: ``spu`` is not a follower of this partition, or a negative offset.
          FollowerAheadError: ``fetch_offset`` is beyond what the leader has written.
        """
        f = self._followers.get(spu)
        if f is None:
            raise ValueError(
                f"spu {spu} is not a follower of this partition (replicas {list(self.replicas)})")
        if fetch_offset < 0:
            raise ValueError(f"follower {spu}: negative fetch offset {fetch_offset}")
        if fetch_offset > self._log_end:
            raise FollowerAheadError(
                f"follower {spu} fetches from {fetch_offset}, beyond the leader's log end "
                f"{self._log_end}; it must truncate to the leader's epoch first")
        caught_up = f.last_caught_up_time
        if fetch_offset >= self._leo:
            caught_up = _later(caught_up, now)
        elif (f.last_fetch_leader_leo is not None and f.last_fetch_time is not None
              and fetch_offset >= f.last_fetch_leader_leo):
            caught_up = _later(caught_up, f.last_fetch_time)
        self._followers[spu] = FollowerState(
            spu, leo=fetch_offset, last_caught_up_time=caught_up,
            last_fetch_time=_later(f.last_fetch_time, now), last_fetch_leader_leo=self._leo)
        if spu not in self._isr and fetch_offset >= max(self._hw, self.epoch_start_offset):
            self._isr = self._isr | {spu}
            self.isr_version += 1
        return self._advance_hw()

    def maybe_shrink_isr(self, now: float, lag_time_max: float) -> frozenset[int]:
        """Drop the followers ``out_of_sync(now, lag_time_max)`` names from the ISR.

        The HW may then advance (a laggard no longer holds it); compare ``hw`` before and after.

        Returns:
          The ids removed (empty if none).
        """
        late = self.out_of_sync(now, lag_time_max)
        if late:
            self._isr = self._isr - late
            self.isr_version += 1
            self._advance_hw()
        return late

    def remove_from_isr(self, spus: Iterable[int]) -> frozenset[int]:
        """Drop ``spus`` from the ISR at once (the SC has declared them failed); the leader
        itself is never removed. Returns the ids removed; the HW may advance as a result."""
        gone = (frozenset(spus) & self._isr) - {self.leader}
        if gone:
            self._isr = self._isr - gone
            self.isr_version += 1
            self._advance_hw()
        return gone

    def hw_members(self) -> frozenset[int]:
        """The followers whose LEOs hold the HW: the leader's ISR plus the SC's record."""
        members = self._isr if self._recorded is None else self._isr | self._recorded
        return members - {self.leader}

    def _advance_hw(self) -> bool:
        leos = (self._followers[s].leo for s in self.hw_members())
        new = compute_hw(self._leo, leos, current_hw=self._hw)
        moved = new != self._hw
        self._hw = new
        return moved

    def __repr__(self) -> str:
        return (f"LeaderState(leader={self.leader}, leo={self._leo}, hw={self._hw}, "
                f"isr={sorted(self._isr)}, followers={[(f.spu, f.leo) for f in self._followers.values()]})")

"""Leader election and leader-epoch truncation, down to the KIP-101/KIP-279 failure scenarios.

The scenario tests run a tiny model of replicas (a log of ``(epoch, value)`` records, an epoch
cache and an HW) through the pure functions, and show what truncating to the HW would have done
instead. A seeded random walk drives two- and three-replica clusters through crashes, elections and
replication and checks that no committed record is ever lost and that logs never diverge; a
failure names the seed that replays it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluvial.replication.election import (
    UNDEFINED_EPOCH,
    EpochEntry,
    TruncationStep,
    assign_epoch,
    elect_leader,
    end_offset_for_epoch,
    latest_epoch,
    truncate_epochs_from_end,
    truncate_epochs_from_start,
    truncation_offset,
)
from fluvial.replication.isr import LeaderState
from fluvial.replication.offsets import follower_hw
from fluvial.storage.epochs import LeaderEpochCache

# -- elect_leader --------------------------------------------------------------------------------

R = [1, 2, 3]


@pytest.mark.parametrize(
    ("isr", "live", "leos", "current", "unclean", "leader", "was_unclean", "new_isr"),
    [
        ({1, 2, 3}, {1, 2, 3}, {}, 1, False, 1, False, {1, 2, 3}),  # healthy leader kept
        ({1, 2, 3}, {2, 3}, {2: 8, 3: 10}, 1, False, 3, False, {2, 3}),  # highest leo
        ({1, 2, 3}, {2, 3}, {2: 10, 3: 10}, 1, False, 2, False, {2, 3}),  # tie: replica order
        ({1, 2, 3}, {1, 2, 3}, {1: 5, 2: 5, 3: 5}, -1, False, 1, False, {1, 2, 3}),  # preferred first
        ({1, 2}, {3}, {3: 7}, 1, False, None, False, {1, 2}),  # offline, ISR remembered
        ({1, 2}, {3}, {3: 7}, 1, True, 3, True, {3}),  # unclean on opt-in
        ({1, 2}, {2, 3}, {2: 1, 3: 9}, 1, True, 2, False, {2}),  # clean beats a longer unclean log
        ({2, 3}, {1, 2, 3}, {1: 9, 2: 4, 3: 6}, 1, False, 3, False, {2, 3}),  # live leader not in ISR
        ({1}, set(), {}, 1, True, None, False, {1}),  # nobody alive
    ],
)
def test_elect_leader(isr, live, leos, current, unclean, leader, was_unclean, new_isr):
    res = elect_leader(R, isr, live, leos, current, unclean)
    assert (res.leader, res.unclean, res.isr) == (leader, was_unclean, new_isr)
    assert res.offline == (leader is None)
    assert res.reason


def test_election_reasons_say_what_happened():
    assert "unclean election is disabled" in elect_leader(R, {1}, {2}, {}, 1, False).reason
    res = elect_leader(R, {1}, {2, 3}, {2: 3, 3: 4}, 1, True)
    assert res.reason.startswith("unclean election") and "lost" in res.reason
    assert "live and in sync" in elect_leader(R, {1, 2}, {1}, {}, 1, False).reason


def test_missing_leo_counts_as_lowest_and_only_replicas_are_eligible():
    assert elect_leader(R, {2, 3}, {2, 3}, {2: 0}, 1, False).leader == 2
    assert elect_leader(R, {1, 9}, {9}, {9: 100}, 1, False).leader is None  # 9 is no replica


@pytest.mark.parametrize("replicas", [[], [1, 1]])
def test_elect_leader_rejects_bad_replica_lists(replicas):
    with pytest.raises(ValueError):
        elect_leader(replicas, set(), set(), {}, -1, False)


# -- the epoch cache -----------------------------------------------------------------------------

CACHE = [(1, 0), (2, 4), (4, 9)]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [(4, (4, 12)), (3, (2, 9)), (2, (2, 9)), (1, (1, 4)), (0, (0, 0)), (5, (-1, -1)), (-1, (-1, -1))],
)
def test_end_offset_for_epoch(requested, expected):
    assert end_offset_for_epoch(CACHE, 12, requested) == expected


def test_end_offset_for_epoch_with_an_empty_cache_is_undefined():
    assert end_offset_for_epoch([], 0, 0) == (-1, -1)


def test_epoch_cache_must_be_ordered():
    with pytest.raises(ValueError, match="out of order"):
        end_offset_for_epoch([(2, 0), (1, 5)], 9, 1)
    with pytest.raises(ValueError, match="out of order"):
        end_offset_for_epoch([(1, 5), (2, 3)], 9, 1)
    with pytest.raises(ValueError, match="out of order"):
        end_offset_for_epoch([(1, 5), (2, 5)], 9, 1)  # an empty epoch must have been replaced
    with pytest.raises(ValueError, match="negative"):
        end_offset_for_epoch([(-3, 0)], 9, 1)


def test_assign_epoch():
    assert assign_epoch([], 0, 0) == [(0, 0)]
    assert assign_epoch([(0, 0)], 0, 7) == [(0, 0)]  # same epoch: already started
    assert assign_epoch([(0, 0)], 2, 7) == [(0, 0), (2, 7)]
    assert assign_epoch([(0, 0), (3, 10)], 5, 10) == [(0, 0), (5, 10)]  # empty epoch 3 replaced
    assert assign_epoch([(0, 0)], 1, 0) == [(1, 0)]
    assert isinstance(assign_epoch([], 1, 0)[0], EpochEntry)
    with pytest.raises(ValueError, match="older"):
        assign_epoch([(2, 0)], 1, 5)
    with pytest.raises(ValueError, match="starts before"):
        assign_epoch([(2, 5)], 3, 4)
    with pytest.raises(ValueError, match="negative"):
        assign_epoch([], 0, -1)


def test_truncate_epochs():
    assert truncate_epochs_from_end(CACHE, 4) == [(1, 0)]
    assert truncate_epochs_from_end(CACHE, 5) == [(1, 0), (2, 4)]
    assert truncate_epochs_from_end(CACHE, 0) == []
    assert truncate_epochs_from_start(CACHE, 6) == [(2, 6), (4, 9)]
    assert truncate_epochs_from_start(CACHE, 9) == [(4, 9)]
    assert truncate_epochs_from_start(CACHE, 0) == CACHE
    assert truncate_epochs_from_start([(1, 3)], 1) == [(1, 3)]


def test_latest_epoch():
    assert latest_epoch(CACHE) == 4
    assert latest_epoch([]) == UNDEFINED_EPOCH


# -- truncation_offset ---------------------------------------------------------------------------


def test_truncation_same_epoch_cuts_to_the_leaders_end():
    assert truncation_offset([(0, 0), (1, 3)], 9, (1, 7)) == TruncationStep(7)
    assert truncation_offset([(0, 0), (1, 3)], 5, (1, 7)) == TruncationStep(5)  # nothing to cut
    assert truncation_offset([(0, 0), (1, 3)], 5, (1, 7)).done


def test_truncation_kip279_two_rounds():
    leader, leader_leo = [(0, 0), (2, 4), (4, 9)], 12
    follower, leo = [(0, 0), (1, 3), (3, 6)], 8
    step = truncation_offset(follower, leo, end_offset_for_epoch(leader, leader_leo, 3))
    assert step == TruncationStep(6, ask_epoch=1) and not step.done
    follower, leo = truncate_epochs_from_end(follower, 6), 6
    assert latest_epoch(follower) == step.ask_epoch
    step = truncation_offset(follower, leo, end_offset_for_epoch(leader, leader_leo, 1))
    assert step == TruncationStep(3)


def test_truncation_when_the_leader_has_nothing_from_the_followers_epochs():
    # the leader's history starts at epoch 3; the follower only ever saw epochs 1 and 2
    reply = end_offset_for_epoch([(3, 0)], 4, 2)
    assert reply == (2, 0)
    assert truncation_offset([(1, 0), (2, 2)], 5, reply) == TruncationStep(0)


def test_truncation_below_the_followers_first_epoch():
    # the leader's largest epoch <= 5 is 1; the follower's history starts at epoch 4
    assert truncation_offset([(4, 10), (5, 12)], 14, (1, 11)) == TruncationStep(10)


def test_truncation_with_an_empty_follower_cache():
    assert truncation_offset([], 6, (3, 4)) == TruncationStep(4)
    assert truncation_offset([], 0, (3, 4)) == TruncationStep(0)


def test_truncation_fallbacks_for_undefined_answers():
    assert truncation_offset([(1, 0)], 9, (-1, 4)) == TruncationStep(4)  # no epoch: KIP-101 v0
    assert truncation_offset([(1, 0)], 9, (-1, -1), follower_hw=6) == TruncationStep(6)
    with pytest.raises(ValueError, match="no end offset"):
        truncation_offset([(1, 0)], 9, (-1, -1))


def test_truncation_rejects_an_answer_for_a_newer_epoch():
    with pytest.raises(ValueError, match="newer than the epoch asked"):
        truncation_offset([(1, 0)], 9, (2, 5))


# -- one lookup: the leader's side (storage) and the follower's side over the same histories ------


@st.composite
def epoch_caches(draw):
    """A well-formed epoch cache (epochs and start offsets strictly increasing) and a LEO."""
    epochs = sorted(draw(st.sets(st.integers(0, 12), max_size=6)))
    starts = sorted(draw(st.sets(st.integers(0, 40), min_size=len(epochs), max_size=len(epochs))))
    leo = draw(st.integers(starts[-1] if starts else 0, 50))
    return [EpochEntry(e, o) for e, o in zip(epochs, starts)], leo


@given(epoch_caches(), st.integers(-1, 14))
def test_the_follower_looks_epochs_up_as_the_leaders_storage_answers(cache_leo, requested):
    cache, leo = cache_leo
    assert end_offset_for_epoch(cache, leo, requested) == LeaderEpochCache(cache).end_offset_for(requested, leo)


@st.composite
def diverged_logs(draw):
    """Two logs that share a prefix, then each continue in epochs the other never saw, as the
    leaders of those epochs wrote them: lists of ``(epoch, record)``. Returns the leader's log,
    the follower's log, the shared prefix's length, the leader's current epoch (newer than any
    record; started at its LEO with nothing written yet) and an epoch the follower led without
    writing anything, or None."""
    prefix = sorted(draw(st.lists(st.integers(0, 4), max_size=6)))
    top = prefix[-1] if prefix else 0
    pool = list(range(top, top + 6))
    mine = draw(st.sets(st.sampled_from(pool), max_size=3))
    theirs = draw(st.sets(st.sampled_from(pool), max_size=3)) - mine
    leader_ext = sorted(draw(st.lists(st.sampled_from(sorted(mine)), max_size=5))) if mine else []
    follower_ext = sorted(draw(st.lists(st.sampled_from(sorted(theirs)), max_size=5))) if theirs else []
    shared = [(e, f"p{i}") for i, e in enumerate(prefix)]
    leader = shared + [(e, f"l{i}") for i, e in enumerate(leader_ext)]
    follower = shared + [(e, f"f{i}") for i, e in enumerate(follower_ext)]
    newest = max([e for e, _ in leader + follower], default=0)
    empty_led = draw(st.sampled_from([None, newest + 1]))
    current = newest + 2
    return leader, follower, len(prefix), current, empty_led


@given(diverged_logs())
def test_reconciliation_keeps_exactly_the_shared_prefix(logs):
    """KIP-279 with the leader answering from storage's cache: the follower ends with the longest
    prefix both logs share, never less (a committed record lost) and never more (diverged)."""
    leader_log, follower_log, shared, current, empty_led = logs
    leader_cache = LeaderEpochCache()  # built as storage builds it: per appended batch
    for offset, (epoch, _) in enumerate(leader_log):
        leader_cache.assign(epoch, offset)
    leader_cache.assign(current, len(leader_log))
    follower = Replica(2)
    for epoch, value in follower_log:
        follower.append(epoch, value)
    if empty_led is not None:
        follower.become_leader(empty_led)
    rounds = 0
    while follower.epochs:
        rounds += 1
        assert rounds <= 20
        answer = leader_cache.end_offset_for(latest_epoch(follower.epochs), len(leader_log))
        step = truncation_offset(follower.epochs, follower.leo, answer)
        follower.truncate(step.truncate_to)
        if step.done:
            break
    assert follower.log == leader_log[:shared] == follower_log[:shared]


# -- a replica model for the scenarios -----------------------------------------------------------


@dataclass
class Replica:
    id: int
    log: list[tuple[int, str]] = field(default_factory=list)  # (epoch, value)
    epochs: list[EpochEntry] = field(default_factory=list)
    hw: int = 0
    alive: bool = True

    @property
    def leo(self) -> int:
        return len(self.log)

    def append(self, epoch: int, value: str) -> None:
        self.epochs = assign_epoch(self.epochs, epoch, self.leo)
        self.log.append((epoch, value))

    def truncate(self, offset: int) -> None:
        del self.log[offset:]
        self.epochs = truncate_epochs_from_end(self.epochs, offset)
        self.hw = min(self.hw, offset)

    def become_leader(self, epoch: int) -> None:
        self.epochs = assign_epoch(self.epochs, epoch, self.leo)


def reconcile(follower: Replica, leader: Replica) -> int:
    """Run the KIP-279 loop; returns the number of OffsetForLeaderEpoch round trips."""
    rounds = 0
    while follower.epochs:
        rounds += 1
        assert rounds <= 50
        reply = end_offset_for_epoch(leader.epochs, leader.leo, latest_epoch(follower.epochs))
        step = truncation_offset(follower.epochs, follower.leo, reply)
        follower.truncate(step.truncate_to)
        if step.done:
            break
        assert step.ask_epoch == latest_epoch(follower.epochs)
    return rounds


def replicate(follower: Replica, leader: Replica, state: LeaderState, now: float, max_records: int) -> None:
    """One fetch: report the LEO, copy up to ``max_records``, take the leader's HW."""
    state.on_follower_fetch(follower.id, follower.leo, now)
    for epoch, value in leader.log[follower.leo : follower.leo + max_records]:
        follower.append(epoch, value)
    follower.hw = follower_hw(state.hw, follower.leo)


def truncate_to_hw(follower: Replica) -> None:
    """The pre-KIP-101 rule, for contrast."""
    follower.truncate(follower.hw)


def values(r: Replica) -> list[str]:
    return [v for _, v in r.log]


def test_kip101_scenario1_hw_truncation_then_leader_change_loses_a_committed_record():
    def setup():
        a, b = Replica(1), Replica(2)
        a.become_leader(0)
        state = LeaderState(1, [1, 2], leo=0, hw=0, now=0)
        a.append(0, "m1")
        a.append(0, "m2")
        state.update_leader_leo(a.leo, now=1)
        replicate(b, a, state, now=2, max_records=1)  # b: m1
        replicate(b, a, state, now=3, max_records=1)  # b: m2; a's hw 1 reaches b
        state.on_follower_fetch(2, b.leo, now=4)  # a learns b holds m2: hw 2, m2 is committed
        a.hw = state.hw
        assert (a.hw, b.hw, values(b)) == (2, 1, ["m1", "m2"])  # b restarts before learning it
        return a, b

    # old rule: b truncates to its hw on restart, then a dies and b leads without m2
    a, b = setup()
    truncate_to_hw(b)
    assert values(b) == ["m1"]  # the committed m2 is gone for good once b leads

    # epochs: b asks a where epoch 0 ends before truncating anything
    a, b = setup()
    assert reconcile(b, a) == 1
    assert values(b) == ["m1", "m2"]
    a.alive = False
    res = elect_leader([1, 2], {1, 2}, {2}, {2: b.leo}, 1, False)
    assert res.leader == 2 and not res.unclean
    b.become_leader(1)
    assert b.epochs == [(0, 0), (1, 2)]
    a.alive = True
    reconcile(a, b)  # a asks for epoch 0: b answers (0, 2)
    assert values(a) == values(b) == ["m1", "m2"]


def test_kip101_scenario2_divergence_after_two_leaders_write_the_same_offset():
    def setup():
        a, b = Replica(1), Replica(2)
        a.become_leader(0)
        state = LeaderState(1, [1, 2], leo=0, hw=0, now=0)
        a.append(0, "m1")
        state.update_leader_leo(a.leo, now=1)
        replicate(b, a, state, now=2, max_records=10)
        state.on_follower_fetch(2, b.leo, now=3)
        assert state.hw == 1
        a.append(0, "m2")
        state.update_leader_leo(a.leo, now=4)
        assert state.hw == 1
        # b stops fetching; after the lag time it leaves the ISR, and m2 is committed on a alone
        assert state.maybe_shrink_isr(now=15, lag_time_max=10) == {2}
        a.hw = state.hw
        assert (a.hw, state.isr) == (2, {1})
        # power failure: both down; b comes back first
        a.alive = b.alive = False
        b.alive = True
        return a, b, state.isr

    a, b, isr = setup()
    # clean only: b is not in the ISR, so the partition waits for a and m2 survives
    assert elect_leader([1, 2], isr, {2}, {2: b.leo}, 1, False).leader is None

    # unclean election opted in: b leads epoch 1 and writes m3 at offset 1
    res = elect_leader([1, 2], isr, {2}, {2: b.leo}, 1, True)
    assert (res.leader, res.unclean) == (2, True)
    b.become_leader(1)
    b.append(1, "m3")
    a.alive = True

    # old rule: a truncates to its hw (2), keeps m2, and fetches on from offset 2: diverged
    old_a = Replica(1, list(a.log), list(a.epochs), a.hw)
    truncate_to_hw(old_a)
    assert values(old_a) == ["m1", "m2"] and values(b) == ["m1", "m3"]

    # epochs: a asks for epoch 0, b says it ended at 1, a drops m2 and copies m3
    reconcile(a, b)
    assert values(a) == ["m1"]
    state = LeaderState(2, [1, 2], leo=b.leo, hw=0, now=30, isr=res.isr)
    replicate(a, b, state, now=31, max_records=10)
    assert values(a) == values(b) == ["m1", "m3"]


def test_kip279_one_round_is_not_enough():
    """KIP-101's single answer keeps a record from an epoch the leader never saw."""
    # follower: m0 (epoch 0), then it led epoch 1 briefly and wrote x1, x2
    f = Replica(2, [(0, "m0"), (1, "x1"), (1, "x2")], [EpochEntry(0, 0), EpochEntry(1, 1)])
    # leader: m0, m1 in epoch 0 (the follower missed m1), then epoch 2
    ldr = Replica(1, [(0, "m0"), (0, "m1"), (2, "m2")], [EpochEntry(0, 0), EpochEntry(2, 2)])
    reply = end_offset_for_epoch(ldr.epochs, ldr.leo, 1)
    assert reply == (0, 2)
    kip101_cut = min(reply[1], f.leo)  # trusts the end offset without checking the epoch
    assert f.log[:kip101_cut] != ldr.log[:kip101_cut]  # x1 would sit where the leader has m1
    assert truncation_offset(f.epochs, f.leo, reply) == TruncationStep(1)
    reconcile(f, ldr)
    assert f.log == ldr.log[: f.leo] == [(0, "m0")]


# -- a randomized cluster ------------------------------------------------------------------------

LAG = 10.0
KINDS = ["produce", "fetch", "report", "tick", "crash", "restart", "elect"]


def random_actions(rng: random.Random, steps: int, replicas: list[int]) -> list[tuple]:
    """A seeded walk of cluster events.

    Swarm testing (Groce et al., 2012): each walk draws its own weight per event kind, so some
    walks are all traffic, some all failures, and rare sequences (a lost answer, then a restart,
    then a failover before the next fetch) come up far more often than under one fixed mix.
    """
    weights = [rng.choice([0, 1, 2, 4, 8]) for _ in KINDS]
    weights[0] = weights[0] or 1  # always some traffic
    weights[1] = weights[1] or 1
    out: list[tuple] = []
    for kind in rng.choices(KINDS, weights, k=steps):
        if kind == "produce":
            out.append((kind, rng.randint(1, 3)))
        elif kind == "fetch":
            out.append((kind, rng.choice(replicas), rng.randint(1, 4)))
        elif kind in ("report", "crash", "restart"):
            out.append((kind, rng.choice(replicas)))
        elif kind == "tick":
            out.append((kind, rng.choice([1.0, 6.0, 11.0])))
        else:
            out.append((kind,))
    return out


class Cluster:
    """The SC and the SPUs of one partition in one object. Logs are durable; the one network
    fault is a fetch answer that never arrives (``report``)."""

    def __init__(self, replica_ids: list[int], allow_unclean: bool):
        self.ids = list(replica_ids)
        self.allow_unclean = allow_unclean
        self.replicas = {r: Replica(r) for r in self.ids}
        self.now = 0.0
        self.epoch = 0
        self.leader: int | None = 1
        self.replicas[1].become_leader(0)
        self.state: LeaderState | None = LeaderState(1, self.ids, leo=0, hw=0, now=0)
        self.isr = set(self.ids)
        self.synced: set[int] = set()  # followers reconciled with the current leader
        self.committed: dict[int, tuple[int, str]] = {}
        self.checked_epoch = 0
        self.unclean_elections = 0
        self.counter = 0

    def live(self) -> set[int]:
        return {r for r, rep in self.replicas.items() if rep.alive}

    def leader_replica(self) -> Replica | None:
        if self.leader is None or not self.replicas[self.leader].alive:
            return None
        return self.replicas[self.leader]

    def produce(self, n: int) -> None:
        ldr = self.leader_replica()
        if ldr is None:
            return
        for _ in range(n):
            self.counter += 1
            ldr.append(self.epoch, f"v{self.counter}")
        self.state.update_leader_leo(ldr.leo, self.now)

    def fetch(self, r: int, n: int) -> None:
        ldr = self.leader_replica()
        f = self.replicas[r]
        if ldr is None or r == self.leader or not f.alive:
            return
        if r not in self.synced:  # the first round trip with a new leader only reconciles
            reconcile(f, ldr)
            self.synced.add(r)
            return
        replicate(f, ldr, self.state, self.now, n)

    def report(self, r: int) -> None:
        """A fetch whose answer is lost: the leader learns the LEO, the follower learns nothing."""
        ldr = self.leader_replica()
        if ldr is not None and r != self.leader and r in self.synced and self.replicas[r].alive:
            self.state.on_follower_fetch(r, self.replicas[r].leo, self.now)

    def tick(self, dt: float) -> None:
        self.now += dt
        if self.leader_replica() is not None:
            self.state.maybe_shrink_isr(self.now, LAG)

    def crash(self, r: int) -> None:
        self.replicas[r].alive = False
        self.synced.discard(r)
        if r == self.leader:  # the SC notices; it comes back as a follower unless re-elected
            self.leader = None
            self.state = None

    def restart(self, r: int) -> None:
        self.replicas[r].alive = True  # a restarted follower reconciles before fetching again

    def elect(self) -> None:
        if self.leader_replica() is not None:
            return
        leos = {r: rep.leo for r, rep in self.replicas.items()}
        res = elect_leader(self.ids, self.isr, self.live(), leos, -1, self.allow_unclean)
        if res.leader is None:
            assert not (self.isr & self.live())
            return
        assert res.unclean == (not (self.isr & self.live()))
        self.unclean_elections += res.unclean
        if res.unclean:  # committed records may be lost: only what commits from now on counts
            self.committed = {}
        self.epoch += 1
        self.leader = res.leader
        ldr = self.replicas[res.leader]
        ldr.become_leader(self.epoch)
        self.state = LeaderState(res.leader, self.ids, leo=ldr.leo, hw=ldr.hw, now=self.now, isr=res.isr)
        self.isr = set(res.isr)
        self.synced = set()

    def observe(self) -> None:
        """Record newly committed records and check the invariants."""
        ldr = self.leader_replica()
        if ldr is None:
            return
        self.isr = set(self.state.isr)  # the leader reports its ISR to the SC
        ldr.hw = self.state.hw
        if self.checked_epoch != self.epoch:  # a new leader: it must hold every committed record
            self.checked_epoch = self.epoch
            for offset, rec in self.committed.items():
                assert offset < ldr.leo and ldr.log[offset] == rec, f"committed record {offset} lost"
        for offset in range(len(self.committed), ldr.hw):  # within an epoch the log below hw is fixed
            self.committed[offset] = ldr.log[offset]
        for r in self.synced:
            f = self.replicas[r]
            assert f.log == ldr.log[: f.leo], f"follower {r} diverged from leader {ldr.id}"

    def heal(self) -> None:
        """Restart everything, elect, replicate to the end: every log must be the leader's."""
        for r in self.ids:
            self.restart(r)
        self.elect()
        self.observe()
        ldr = self.leader_replica()
        for _ in range(200):
            if (self.synced == set(self.ids) - {ldr.id} and self.state.hw == ldr.leo
                    and all(rep.leo == ldr.leo for rep in self.replicas.values())):
                break
            for r in self.ids:
                self.fetch(r, 4)
            self.observe()
        assert self.state.hw == ldr.leo

        def with_records(rep: Replica) -> list[EpochEntry]:
            return [e for e in rep.epochs if e.start_offset < rep.leo]

        for rep in self.replicas.values():
            assert rep.log == ldr.log
            assert with_records(rep) == with_records(ldr)


def run(cluster: Cluster, acts: list[tuple]) -> None:
    for act in acts:
        getattr(cluster, act[0])(*act[1:])
        cluster.observe()
    cluster.heal()


SEEDS = 400
STEPS = 200


def sweep(n_replicas: int, allow_unclean: bool) -> list[Cluster]:
    ids = list(range(1, n_replicas + 1))
    clusters = []
    for seed in range(SEEDS):
        acts = random_actions(random.Random(seed), STEPS, ids)
        cluster = Cluster(ids, allow_unclean)
        try:
            run(cluster, acts)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}, {n_replicas} replicas, unclean={allow_unclean}: {e}") from e
        clusters.append(cluster)
    return clusters


@pytest.mark.parametrize("n_replicas", [2, 3])
def test_random_failures_with_clean_elections_never_lose_committed_records(n_replicas):
    clusters = sweep(n_replicas, allow_unclean=False)
    assert sum(c.epoch for c in clusters) > SEEDS  # the walk does reach failovers
    assert all(c.unclean_elections == 0 for c in clusters)


@pytest.mark.parametrize("n_replicas", [2, 3])
def test_random_failures_with_unclean_elections_still_converge(n_replicas):
    clusters = sweep(n_replicas, allow_unclean=True)
    assert any(c.unclean_elections for c in clusters)


@pytest.mark.parametrize("epoch_start_rule", [True, False])
def test_new_leader_does_not_readmit_a_short_follower_on_its_lagging_hw(epoch_start_rule):
    """KAFKA-7128, replayed: why rejoining the ISR needs the leader's epoch start offset."""
    c = Cluster([1, 2, 3, 4], allow_unclean=False)
    for r in (2, 3, 4):
        c.fetch(r, 0)  # handshakes
    c.produce(7)
    for r in (2, 3, 4, 2, 3, 4):
        c.fetch(r, 4)
    c.produce(3)
    c.fetch(2, 4)  # 2 and 4 copy up to 10...
    c.fetch(4, 4)
    c.report(2)  # ...and say so, but never hear that the hw is now 10
    c.report(4)
    c.tick(11)
    c.observe()
    assert (c.state.hw, c.state.isr) == (10, {1, 2, 4})  # 3 (leo 7) lagged out; 0..9 committed
    assert [c.replicas[r].hw for r in (2, 4)] == [4, 4]
    c.crash(1)
    c.elect()
    assert c.leader == 2 and c.state.isr == {2, 4}
    assert (c.state.hw, c.state.epoch_start_offset) == (4, 10)  # 4 has not reported: hw lags
    if not epoch_start_rule:
        c.state.epoch_start_offset = 0  # rejoin on "leo >= hw" alone
    c.fetch(3, 0)  # handshake with the new leader: nothing to cut
    c.fetch(3, 0)  # 3 reports leo 7
    c.observe()
    assert (3 in c.state.isr) is not epoch_start_rule
    c.crash(2)
    c.crash(4)
    c.elect()
    if epoch_start_rule:
        assert c.state is None and c.isr == {2, 4}  # offline until 2 or 4 returns
        c.observe()
    else:
        assert c.leader == 3  # it rejoined on a stale hw, and now leads without 7..9
        with pytest.raises(AssertionError, match="committed record 7 lost"):
            c.observe()


def test_the_randomized_cluster_can_fail():
    """The model is able to see data loss: truncating to the HW on restart loses a commit."""
    c = Cluster([1, 2, 3], allow_unclean=False)
    c.fetch(2, 0)  # the first round trip to a leader reconciles (nothing to cut here)
    c.fetch(3, 0)
    c.produce(2)
    c.fetch(3, 2)  # 3 copies both records
    c.fetch(3, 0)  # ...and reports leo 2
    c.fetch(2, 1)
    c.fetch(2, 1)  # 2 reports leo 1 (hw 1), copies the second record, takes hw 1
    c.state.on_follower_fetch(2, 2, c.now)  # reports leo 2: hw 2; the answer never reaches 2
    c.observe()
    assert c.state.hw == 2 and c.replicas[2].hw == 1 and c.committed == {0: (0, "v1"), 1: (0, "v2")}
    c.crash(2)
    c.restart(2)
    truncate_to_hw(c.replicas[2])  # the old rule, on restart
    c.crash(1)
    c.crash(3)
    c.elect()
    with pytest.raises(AssertionError, match="committed record 1 lost"):
        c.observe()

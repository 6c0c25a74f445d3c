"""Leader election and leader-epoch truncation, down to the KIP-101/KIP-279 failure scenarios.

The scenario tests run a tiny model of replicas (a log of ``(epoch, value)`` records, an epoch
cache, an HW and a durable LEO) through the pure functions, and show what truncating to the HW
would have done instead. Hypothesis runs the follower's reconciliation against the leader's
storage-side epoch lookup over diverged histories. A seeded random walk drives two- and
three-replica clusters through crashes, power cuts (unsynced tails lost), reboots the SC does not
notice, elections, the SC's and the leader's ISRs drifting apart, and replication, and checks that
no committed record is ever lost and that logs never diverge; a failure names the seed that
replays it. Each safety rule of the model (a new epoch per leadership, an HW over durable data,
the HW over both ISRs) is switched off in turn, and the walk must catch it.
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
    durable: int = 0  # records below this offset are fsynced

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
        self.durable = min(self.durable, offset)

    def sync(self) -> None:
        self.durable = self.leo

    def power_cut(self) -> None:
        """What a power cut does: the records past the last fsync are gone."""
        self.truncate(self.durable)

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
KINDS = ["produce", "fetch", "report", "tick", "crash", "restart", "elect", "sync", "power", "reboot",
         "record"]


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
        elif kind in ("report", "crash", "restart", "sync", "power", "reboot"):
            out.append((kind, rng.choice(replicas)))
        elif kind == "tick":
            out.append((kind, rng.choice([1.0, 6.0, 11.0])))
        else:
            out.append((kind,))
    return out


class Cluster:
    """The SC and the SPUs of one partition in one object.

    What it models, and the rule each part checks:

    * **Unsynced tails.** An append (a produce on the leader, a copy on a follower) is written,
      not durable, until that replica's ``sync``. Followers are served the leader's written
      data; a follower fsyncs before each fetch, so the LEO it reports is durable. ``power``
      cuts a replica's power: its records past the last fsync are gone. The leader's HW counts
      its durable LEO only (``durable_hw``; off, the HW counts what is merely written).
    * **Epochs.** Every leadership gets a new epoch: an election, and the SC re-seating a leader
      that rebooted before the SC noticed (``reboot``: power cut and back, same leader). With
      ``bump_epoch`` off the SC keeps the epoch when it re-seats the previous leader.
    * **Two ISRs.** The SC records the ISR the leader reports (``record``) and elects from its
      record; the leader keeps its own. The HW counts the union (Kafka's maximal ISR, KIP-497;
      ``maximal_isr`` off: the leader's ISR alone). A follower the SC sees fail leaves both.
    * **Network.** A fetch answer that never arrives (``report``).

    ``observe`` checks after every step that a new leadership holds every committed record and
    that no reconciled follower diverges from its leader; ``heal`` that all logs converge.
    """

    def __init__(self, replica_ids: list[int], allow_unclean: bool, *, bump_epoch: bool = True,
                 durable_hw: bool = True, maximal_isr: bool = True):
        self.ids = list(replica_ids)
        self.allow_unclean = allow_unclean
        self.bump_epoch, self.durable_hw, self.maximal_isr = bump_epoch, durable_hw, maximal_isr
        self.replicas = {r: Replica(r) for r in self.ids}
        self.now = 0.0
        self.epoch = -1
        self.leader: int | None = None
        self.last_leader: int | None = None
        self.state: LeaderState | None = None
        self.isr = set(self.ids)  # the SC's record
        self.synced: set[int] = set()  # followers reconciled with the current leader
        self.committed: dict[int, tuple[int, str]] = {}
        self.leaderships = 0
        self.checked_leadership = 0
        self.unclean_elections = 0
        self.counter = 0
        self.lead(1, self.isr)

    def live(self) -> set[int]:
        return {r for r, rep in self.replicas.items() if rep.alive}

    def leader_replica(self) -> Replica | None:
        if self.leader is None or not self.replicas[self.leader].alive:
            return None
        return self.replicas[self.leader]

    def lead(self, r: int, isr: set[int]) -> None:
        """The SC seats ``r`` as leader with the SC's ``isr``: a new epoch, except for the
        previous leader when ``bump_epoch`` is off. The new leader fsyncs, then starts its epoch."""
        if self.bump_epoch or r != self.last_leader:
            self.epoch += 1
        self.leader = self.last_leader = r
        self.leaderships += 1
        ldr = self.replicas[r]
        ldr.sync()
        ldr.become_leader(self.epoch)
        self.state = LeaderState(r, self.ids, leo=ldr.durable, hw=ldr.hw, now=self.now, isr=isr,
                                 recorded_isr=isr if self.maximal_isr else None)
        self.synced = set()

    def produce(self, n: int) -> None:
        ldr = self.leader_replica()
        if ldr is None:
            return
        for _ in range(n):
            self.counter += 1
            ldr.append(self.epoch, f"v{self.counter}")
        self.state.on_append(ldr.leo)
        if not self.durable_hw:
            self.state.update_leader_leo(ldr.leo, self.now)

    def sync(self, r: int) -> None:
        rep = self.replicas[r]
        if not rep.alive:
            return
        rep.sync()
        if r == self.leader:
            self.state.update_leader_leo(max(rep.durable, self.state.leo), self.now)

    def fetch(self, r: int, n: int) -> None:
        """Follower ``r`` fsyncs, fetches from its LEO and copies up to ``n`` written records
        (not yet fsynced); its HW is the leader's, capped at its durable LEO."""
        ldr = self.leader_replica()
        f = self.replicas[r]
        if ldr is None or r == self.leader or not f.alive:
            return
        if r not in self.synced:  # the first round trip with a new leader only reconciles
            reconcile(f, ldr)
            self.synced.add(r)
            return
        f.sync()
        self.state.on_follower_fetch(r, f.leo, self.now)
        for epoch, value in ldr.log[f.leo : f.leo + n]:
            f.append(epoch, value)
        f.hw = follower_hw(self.state.hw, f.durable)

    def report(self, r: int) -> None:
        """A fetch whose answer is lost: the leader learns the LEO, the follower learns nothing."""
        ldr = self.leader_replica()
        f = self.replicas[r]
        if ldr is not None and r != self.leader and r in self.synced and f.alive:
            f.sync()
            self.state.on_follower_fetch(r, f.leo, self.now)

    def tick(self, dt: float) -> None:
        self.now += dt
        if self.leader_replica() is not None:
            self.state.maybe_shrink_isr(self.now, LAG)

    def record(self) -> None:
        """The leader reports its ISR; the SC records it and pushes the record back."""
        if self.leader_replica() is None:
            return
        self.isr = set(self.state.isr)
        if self.maximal_isr:
            self.state.set_recorded_isr(self.isr)

    def _down(self, r: int) -> None:
        """The SC notices that ``r`` is gone. A failed leader leaves the partition leaderless (its
        ISR record stays, for the election); a failed follower leaves both ISRs at once."""
        self.synced.discard(r)
        if r == self.leader:
            self.leader = None
            self.state = None
        elif self.leader_replica() is not None:
            self.isr.discard(r)
            if self.maximal_isr:
                self.state.set_recorded_isr(self.isr)
            self.state.remove_from_isr({r})

    def crash(self, r: int) -> None:
        """A process crash (kill -9): the page cache keeps what was written."""
        self.replicas[r].alive = False
        self._down(r)

    def power(self, r: int) -> None:
        """A power cut: unsynced records are lost too."""
        self.replicas[r].alive = False
        self.replicas[r].power_cut()
        self._down(r)

    def reboot(self, r: int) -> None:
        """A power cut and a restart before the SC notices. The SC sees ``r`` register again;
        it re-seats a rebooted leader (a new leadership); a follower reconciles again."""
        rep = self.replicas[r]
        if not rep.alive:
            return
        rep.power_cut()
        self.synced.discard(r)
        if r == self.leader:
            self.lead(r, self.isr)

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
        self.isr = set(res.isr)
        self.lead(res.leader, self.isr)

    def observe(self) -> None:
        """Record newly committed records and check the invariants."""
        ldr = self.leader_replica()
        if ldr is None:
            return
        ldr.hw = self.state.hw
        if self.checked_leadership != self.leaderships:  # a new leader holds every committed record
            self.checked_leadership = self.leaderships
            for offset, rec in self.committed.items():
                assert offset < ldr.leo and ldr.log[offset] == rec, f"committed record {offset} lost"
        for offset in range(len(self.committed), ldr.hw):  # within a leadership the log below hw is fixed
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
            self.sync(ldr.id)
            for r in self.ids:
                self.fetch(r, 4)
            self.record()
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


SEEDS = 2000
STEPS = 200


def sweep(n_replicas: int, allow_unclean: bool, seeds: int = SEEDS, **rules) -> list[Cluster]:
    ids = list(range(1, n_replicas + 1))
    clusters = []
    for seed in range(seeds):
        acts = random_actions(random.Random(seed), STEPS, ids)
        cluster = Cluster(ids, allow_unclean, **rules)
        try:
            run(cluster, acts)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}, {n_replicas} replicas, unclean={allow_unclean}, "
                                 f"{rules}: {e}") from e
        clusters.append(cluster)
    return clusters


@pytest.mark.parametrize("n_replicas", [2, 3])
def test_random_failures_with_clean_elections_never_lose_committed_records(n_replicas):
    clusters = sweep(n_replicas, allow_unclean=False)
    assert sum(c.leaderships for c in clusters) > 2 * SEEDS  # the walk does reach failovers
    assert sum(c.epoch for c in clusters) > SEEDS
    assert all(c.unclean_elections == 0 for c in clusters)


@pytest.mark.parametrize("n_replicas", [2, 3])
def test_random_failures_with_unclean_elections_still_converge(n_replicas):
    clusters = sweep(n_replicas, allow_unclean=True)
    assert any(c.unclean_elections for c in clusters)


@pytest.mark.parametrize(
    ("rule", "failure"),
    [
        ("bump_epoch", "lost|diverged"),  # a re-seated leader reuses its epoch
        ("durable_hw", "lost"),  # the HW counts records not yet fsynced
        ("maximal_isr", "lost"),  # the HW counts the leader's ISR only, elections the SC's
    ],
)
@pytest.mark.parametrize("n_replicas", [2, 3])
def test_the_random_walk_catches_each_broken_rule(rule, failure, n_replicas):
    """Each rule the model states is needed: without it some walk loses a committed record or
    lets two replicas diverge (the mutation check for the model itself)."""
    with pytest.raises(AssertionError, match=failure):
        sweep(n_replicas, allow_unclean=False, **{rule: False})


@pytest.mark.parametrize("epoch_start_rule", [True, False])
def test_new_leader_does_not_readmit_a_short_follower_on_its_lagging_hw(epoch_start_rule):
    """KAFKA-7128, replayed: why rejoining the ISR needs the leader's epoch start offset."""
    c = Cluster([1, 2, 3, 4], allow_unclean=False)
    for r in (2, 3, 4):
        c.fetch(r, 0)  # handshakes
    c.produce(7)
    c.sync(1)
    for r in (2, 3, 4, 2, 3, 4):
        c.fetch(r, 4)
    c.produce(3)
    c.sync(1)
    c.fetch(2, 4)  # 2 and 4 copy up to 10...
    c.fetch(4, 4)
    c.report(2)  # ...and say so, but never hear that the hw is now 10
    c.report(4)
    c.tick(11)
    c.observe()
    assert (c.state.hw, c.state.isr) == (4, {1, 2, 4})  # 3 (leo 7, said 4) lagged out; the SC still counts it
    c.record()
    c.observe()
    assert (c.state.hw, c.isr) == (10, {1, 2, 4})  # the SC recorded the shrink: 0..9 committed
    assert [c.replicas[r].hw for r in (2, 4)] == [4, 4]
    c.crash(1)
    c.elect()
    assert c.leader == 2 and c.state.isr == {2, 4}
    assert (c.state.hw, c.state.epoch_start_offset) == (4, 10)  # 4 has not reported: hw lags
    if not epoch_start_rule:
        c.state.epoch_start_offset = 0  # rejoin on "leo >= hw" alone
    c.fetch(3, 0)  # handshake with the new leader: nothing to cut
    c.fetch(3, 0)  # 3 reports leo 7
    c.record()
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
    c.sync(1)
    c.fetch(3, 2)  # 3 copies both records
    c.fetch(3, 0)  # ...and reports leo 2
    c.fetch(2, 1)
    c.fetch(2, 1)  # 2 reports leo 1 (hw 1), copies the second record, takes hw 1
    c.sync(2)
    c.state.on_follower_fetch(2, 2, c.now)  # reports leo 2: hw 2; the answer never reaches 2
    c.observe()
    assert c.state.hw == 2 and c.replicas[2].hw == 1 and c.committed == {0: (0, "v1"), 1: (0, "v2")}
    c.reboot(2)  # back before the SC noticed: still in the ISR
    truncate_to_hw(c.replicas[2])  # the old rule, on restart
    c.crash(1)
    c.crash(3)
    c.elect()
    with pytest.raises(AssertionError, match="committed record 1 lost"):
        c.observe()


def test_a_leader_back_from_a_power_cut_leads_a_new_epoch():
    """safe-1 item 1, replayed in the model: RF=2; the follower stops; the leader loses its
    unsynced tail and comes back; it writes; the follower returns. With a new epoch the follower
    drops the records the leader lost; with the old one it keeps them where the leader now has
    others, and the two logs diverge."""
    for bump in (True, False):
        c = Cluster([1, 2], allow_unclean=False, bump_epoch=bump)
        c.fetch(2, 0)  # handshake
        c.produce(1)
        c.sync(1)
        c.fetch(2, 1)  # 2 copies v1
        c.fetch(2, 0)  # and reports it: committed
        c.produce(1)  # v2: written on 1, not fsynced
        c.fetch(2, 1)  # 2 copies it (served written data)
        c.report(2)  # ...and fsyncs it; not committed (1 has not fsynced v2)
        c.observe()
        assert c.committed == {0: (0, "v1")}
        c.crash(2)
        c.power(1)  # v2 is gone from 1
        c.restart(1)
        c.elect()
        assert c.leader == 1 and c.epoch == (1 if bump else 0)
        c.produce(1)  # v3 at offset 1
        c.sync(1)
        c.observe()
        assert c.committed == {0: (0, "v1"), 1: (c.epoch, "v3")}  # 1 is alone in the ISR
        c.restart(2)
        c.fetch(2, 0)  # reconciles
        if bump:
            c.observe()
            c.heal()
        else:
            with pytest.raises(AssertionError, match="follower 2 diverged"):
                c.observe()

"""The consumer-group state machine (fluvial.metadata.group): assignment, ownership, fencing."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.metadata.group import Group, GroupError, GroupFailure, sticky_assign

SESSION_MS = 1000


def test_sticky_assign_examples():
    assert sticky_assign(6, {"a": [0, 1, 2, 3, 4, 5], "b": []}) == {"a": [0, 1, 2], "b": [3, 4, 5]}
    assert sticky_assign(6, {"a": [0, 1, 2], "b": [3, 4, 5], "c": []}) == {
        "a": [0, 1], "b": [3, 4], "c": [2, 5]}
    assert sticky_assign(5, {"a": [0, 1], "c": [2, 3, 4]}) == {"a": [0, 1], "c": [2, 3, 4]}
    assert sticky_assign(2, {"a": [], "b": [], "c": []}) == {"a": [0], "b": [1], "c": []}
    assert sticky_assign(3, {}) == {}


@given(st.integers(1, 12), st.dictionaries(st.sampled_from("abcdef"), st.lists(st.integers(0, 14)),
                                            min_size=1))
def test_sticky_assign_is_balanced_complete_and_keeps_within_quota(n, current):
    out = sticky_assign(n, current)
    owned = [p for ps in out.values() for p in ps]
    assert sorted(owned) == list(range(n))  # every partition exactly once
    sizes = [len(ps) for ps in out.values()]
    assert max(sizes) - min(sizes) <= 1
    for m, ps in out.items():
        kept = set(current[m]) & set(range(n))
        if len(kept) <= min(sizes):  # under quota: it keeps all it had that nobody else kept
            assert kept - set(ps) <= {p for o, qs in out.items() if o != m for p in qs}


class Sim:
    """Members driven the way the client drives them: read exactly what the last answer said."""

    def __init__(self, partitions=6):
        self.g = Group("g")
        self.partitions = partitions
        self.now = 0.0
        self.reads: dict[str, set[int]] = {}  # what each client process reads (zombies too)
        self.alive: set[str] = set()  # processes that heartbeat
        self.pending: dict[str, set[int]] = {}  # answers received, not acted on yet

    def join(self, m):
        """A process joins: a new one, or one that stopped every reader first (the client's
        ``_rejoin`` drops all its readers before it joins again), so it reads nothing until its
        first answer."""
        self.g.join(m, "c", "h", "t", self.partitions, SESSION_MS, "earliest", self.now)
        self.reads[m] = set()
        self.pending.pop(m, None)
        self.alive.add(m)

    def send(self, m):
        """The coordinator answers a heartbeat; the member has not acted on it yet."""
        try:
            ans = self.g.heartbeat(m, sorted(self.reads[m]), self.now)
        except GroupFailure as e:
            assert e.code == GroupError.UNKNOWN_MEMBER
            self.reads[m] = set()  # fenced: it stops, and rejoins
            self.pending.pop(m, None)
            self.join(m)
            return
        self.pending[m] = set(ans.assigned)

    def apply(self, m):
        """The member acts on its last answer: stops what it lost, starts what it got."""
        if m in self.pending:
            self.reads[m] = self.pending.pop(m)

    def beat(self, m):
        self.send(m)
        self.apply(m)

    def check(self):
        # one owner per partition, and a member reads only what it owns
        for m in self.g.members:
            assert self.reads[m] <= {p for p, o in self.g.owners.items() if o == m}
        live = [self.reads[m] for m in self.g.members]
        assert sum(map(len, live)) == len(set().union(*live)) if live else True


ops = st.lists(st.tuples(st.sampled_from(["join", "leave", "crash", "send", "apply", "beat", "tick",
                                          "stop"]),
                         st.sampled_from("abc")), max_size=60)


@settings(max_examples=400, deadline=None)
@given(ops)
def test_exactly_one_owner_and_convergence(steps):
    s = Sim()
    for op, m in steps:
        if op == "join":
            s.join(m)
        elif op == "leave" and m in s.alive:
            s.g.leave(m)
            s.alive.discard(m)
            s.reads[m] = set()
            s.pending.pop(m, None)
        elif op == "crash" and m in s.alive:
            s.alive.discard(m)  # kill -9: reads nothing more, sends nothing more
            s.reads[m] = set()
            s.pending.pop(m, None)
        elif op == "stop" and m in s.alive:
            s.alive.discard(m)  # SIGSTOP: a zombie that still believes it reads its partitions
        elif op == "send" and m in s.alive:
            s.send(m)
        elif op == "apply" and m in s.alive:
            s.apply(m)
        elif op == "beat" and m in s.alive:
            s.beat(m)
        elif op == "tick":
            s.now += 0.4
            s.g.expire(s.now)
        s.check()
    # quiet: the dead expire, the live heartbeat; every partition gets exactly one reader
    for m in sorted(s.alive):
        s.apply(m)
    s.now += 2
    s.g.expire(s.now)
    for _ in range(3):
        for m in sorted(s.alive):
            s.beat(m)
            s.check()
    if s.alive:
        readers = [s.reads[m] for m in s.alive]
        assert sorted(p for r in readers for p in r) == list(range(s.partitions))
        assert max(map(len, readers)) - min(map(len, readers)) <= 1
        assert set(s.g.members) == s.alive


def test_join_moves_only_what_it_must_and_kept_partitions_never_pause():
    s = Sim()
    for m in "abc":
        s.join(m)
        for _ in range(3):
            for x in sorted(s.alive):
                s.beat(x)
    kept = {m: set(s.reads[m]) for m in "abc"}
    assert sorted(p for r in kept.values() for p in r) == list(range(6))
    s.join("d")
    for _ in range(3):
        for x in sorted(s.alive):
            s.beat(x)
            for m in "abc":  # each old member reads at every step what it keeps
                assert s.reads[m] >= set(s.g.members[m].target) & kept[m] or x == m
    moved = [p for m in "abc" for p in kept[m] - s.reads[m]]
    assert len(moved) == 1 and s.reads["d"] == set(moved)


def test_revoked_partition_is_granted_only_after_the_owner_lets_go():
    s = Sim(2)
    s.join("a")
    s.beat("a")
    assert s.reads["a"] == {0, 1}
    s.join("b")
    s.beat("b")
    assert s.reads["b"] == set()  # a still owns both
    s.beat("a")  # a is told to keep only its target: it stops reading the other...
    assert s.reads["a"] == {0} and s.g.owners[1] == "a"
    s.beat("b")
    assert s.reads["b"] == set()  # ...which is not b's until a says it let go
    s.beat("a")
    s.beat("b")
    assert s.reads["a"] | s.reads["b"] == {0, 1} and not s.reads["a"] & s.reads["b"]


def test_no_grant_while_the_old_owner_has_not_acted_on_its_revocation():
    s = Sim(2)
    s.join("a")
    s.beat("a")
    s.join("b")
    s.send("a")  # a is told to give one partition up, and has not stopped reading it yet
    s.beat("b")
    s.check()
    assert not s.reads["b"] & s.reads["a"]
    s.apply("a")
    s.beat("a")  # now it says so
    s.beat("b")
    s.check()
    assert len(s.reads["b"]) == 1 and not s.reads["b"] & s.reads["a"]


def test_commit_fence():
    s = Sim(2)
    s.join("a")
    s.beat("a")
    s.g.check_commit("a", s.g.generation, "t", 0)
    s.join("b")
    gen_a = s.g.generation - 1
    s.beat("a")
    s.beat("a")
    s.beat("b")
    lost = set(s.reads["b"]).pop()
    with pytest.raises(GroupFailure) as e:  # a, of the older generation, lost it
        s.g.check_commit("a", gen_a, "t", lost)
    assert e.value.code == GroupError.FENCED
    s.g.check_commit("b", s.g.generation, "t", lost)
    s.now += 5  # b's session runs out (SIGSTOP): a zombie
    s.beat("a")
    s.g.expire(s.now)
    with pytest.raises(GroupFailure) as e:
        s.g.check_commit("b", s.g.generation, "t", lost)
    assert e.value.code == GroupError.UNKNOWN_MEMBER


def test_snapshot_restore_keeps_members_owners_generation():
    s = Sim()
    for m in "ab":
        s.join(m)
        for x in sorted(s.alive):
            s.beat(x)
    g2 = Group("g")
    g2.restore(s.g.snapshot(), now=100.0)
    assert g2.generation == s.g.generation and g2.owners == s.g.owners
    assert {m: v.target for m, v in g2.members.items()} == {m: v.target for m, v in s.g.members.items()}
    assert all(v.deadline == 100.0 + SESSION_MS / 1000 for v in g2.members.values())


def test_bad_joins_and_resets():
    g = Group("g")
    with pytest.raises(GroupFailure):
        g.join("", "c", "h", "t", 3, SESSION_MS, "earliest", 0)
    with pytest.raises(GroupFailure):
        g.join("a", "c", "h", "t", 3, SESSION_MS, "middle", 0)
    g.join("a", "c", "h", "t", 3, SESSION_MS, "earliest", 0)
    with pytest.raises(GroupFailure) as e:
        g.join("b", "c", "h", "other", 3, SESSION_MS, "earliest", 0)
    assert e.value.code == GroupError.INCONSISTENT_TOPIC
    with pytest.raises(GroupFailure) as e:
        g.set_offsets("t", {0: 5})
    assert e.value.code == GroupError.GROUP_NOT_EMPTY
    g.leave("a")
    g.set_offsets("t", {0: 5})
    assert g.offsets == {("t", 0): 5}

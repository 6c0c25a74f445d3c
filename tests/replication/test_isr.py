"""LeaderState: replication conversations replayed step by step, the lag rule, ISR changes."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.replication.isr import FollowerAheadError, LeaderState
from fluvial.replication.offsets import ReplicaOffsets

LAG = 10.0


def test_hw22_conversation_two_replicas():
    """Fluvio's test_hw22, as a conversation: leader 5000 at leo 10, follower 5001 catching up."""
    s = LeaderState(5000, [5000, 5001], leo=10, hw=0, now=0)
    assert s.hw == 0  # nothing heard from 5001 yet: the HW waits

    assert s.on_follower_fetch(5001, 4, now=1) is True  # follower at leo 4
    assert s.hw == 4  # min of the ISR

    assert s.on_follower_fetch(5001, 6, now=2) is True
    assert s.hw == 6

    assert s.on_follower_fetch(5001, 6, now=3) is False  # same report: no change
    assert s.hw == 6

    assert s.on_follower_fetch(5001, 10, now=4) is True  # fully caught up
    assert s.hw == 10

    assert s.on_follower_fetch(5001, 10, now=5) is False
    assert s.isr == {5000, 5001}
    assert s.replica_offsets() == [ReplicaOffsets(5000, 10, 10), ReplicaOffsets(5001, 10, 10)]


def test_hw33_conversation_three_replicas():
    """Fluvio's test_hw33 under Kafka's rule: the HW is the slowest ISR member's LEO."""
    s = LeaderState(5000, [5000, 5001, 5002], leo=10, hw=0, now=0)
    assert s.on_follower_fetch(5001, 4, now=1) is False  # 5002 unknown: holds the HW
    assert s.hw == 0
    assert s.on_follower_fetch(5002, 6, now=1) is True
    assert s.hw == 4
    assert s.on_follower_fetch(5001, 8, now=2) is True
    assert s.hw == 6
    assert s.on_follower_fetch(5002, 10, now=2) is True
    assert s.hw == 8
    assert s.update_leader_leo(12, now=3) is False  # appends alone never move the HW here
    assert s.on_follower_fetch(5001, 12, now=4) is True
    assert s.hw == 10
    assert [r.hw for r in s.replica_offsets()] == [10, 10, 10]


def test_docstring_worked_example():
    s = LeaderState(1, [1, 2, 3], leo=0, hw=0, now=0)
    assert s.isr == {1, 2, 3}
    assert s.update_leader_leo(5, now=1) is False
    assert s.on_follower_fetch(2, 5, now=2) is False
    assert s.on_follower_fetch(3, 3, now=2) is True and s.hw == 3
    assert s.on_follower_fetch(3, 5, now=3) is True and s.hw == 5
    assert s.update_leader_leo(9, now=4) is False
    assert s.on_follower_fetch(2, 9, now=5) is False
    assert s.maybe_shrink_isr(now=14, lag_time_max=LAG) == set()
    assert s.maybe_shrink_isr(now=15, lag_time_max=LAG) == {3}
    assert s.hw == 9 and s.isr == {1, 2}
    assert s.on_follower_fetch(3, 9, now=16) is False
    assert s.isr == {1, 2, 3}


def test_lone_leader_commits_each_append():
    s = LeaderState(1, [1], leo=0, hw=0, now=0)
    assert s.update_leader_leo(3, now=1) is True
    assert s.hw == 3 and s.committed(3) and not s.committed(4)
    assert s.update_leader_leo(3, now=2) is False


def test_leader_alone_in_the_isr_commits_its_log_on_takeover():
    assert LeaderState(2, [1, 2, 3], leo=10, hw=4, now=0, isr=[2]).hw == 10
    assert LeaderState(2, [1, 2, 3], leo=10, hw=4, now=0, isr=[2, 3]).hw == 4  # 3 not heard yet


def test_committed_means_hw_reached_the_end_offset():
    s = LeaderState(1, [1, 2], leo=8, hw=0, now=0)
    s.on_follower_fetch(2, 7, now=1)
    assert s.hw == 7
    assert s.committed(7)  # a batch at 5..6 ends at 7
    assert not s.committed(8)  # one at 5..7 does not


def test_checkpointed_hw_is_clamped_to_the_leo():
    assert LeaderState(1, [1, 2], leo=5, hw=9, now=0).hw == 5


def test_unknown_isr_follower_holds_the_hw_until_dropped_for_lag():
    s = LeaderState(1, [1, 2, 3], leo=10, hw=2, now=100)
    s.on_follower_fetch(2, 10, now=101)
    assert s.hw == 2  # 3 has not reported to this leader
    assert s.maybe_shrink_isr(now=110, lag_time_max=LAG) == set()  # grace: lag time from takeover
    assert s.maybe_shrink_isr(now=110.5, lag_time_max=LAG) == {3}
    assert s.hw == 10


def test_follower_at_the_leader_leo_is_never_dropped_however_quiet():
    s = LeaderState(1, [1, 2], leo=5, hw=0, now=0)
    s.on_follower_fetch(2, 5, now=1)
    assert s.out_of_sync(now=1_000_000, lag_time_max=LAG) == set()
    assert s.maybe_shrink_isr(now=1_000_000, lag_time_max=LAG) == set()


def test_quiet_caught_up_follower_is_credited_up_to_the_append():
    """Rule 3: silent while caught up, so caught up until the append that left it behind."""
    s = LeaderState(1, [1, 2], leo=5, hw=0, now=0)
    s.on_follower_fetch(2, 5, now=1)
    s.update_leader_leo(8, now=500)  # a long quiet spell, then an append
    assert s.followers[2].last_caught_up_time == 500
    assert s.maybe_shrink_isr(now=505, lag_time_max=LAG) == set()  # not dropped at once
    assert s.maybe_shrink_isr(now=510.5, lag_time_max=LAG) == {2}  # ...but if it stays silent
    assert s.hw == 8


def test_follower_that_keeps_up_with_a_stream_of_appends_stays_in_sync():
    s = LeaderState(1, [1, 2], leo=0, hw=0, now=0)
    t = 0.0
    for _ in range(200):
        t += 1
        s.update_leader_leo(s.leo + 3, now=t)  # an append just before each fetch...
        t += 1
        s.on_follower_fetch(2, s.leo - 3, now=t)  # ...so the follower is never exactly level
        assert s.maybe_shrink_isr(now=t, lag_time_max=LAG) == set()
    assert s.isr == {1, 2}


def test_kafka_previous_fetch_rule_credits_the_earlier_fetch_time():
    s = LeaderState(1, [1, 2], leo=10, hw=0, now=0)
    s.on_follower_fetch(2, 4, now=3)  # leader leo 10 at this fetch
    s.update_leader_leo(14, now=20)  # follower (4) was behind: no credit
    assert s.followers[2].last_caught_up_time == 0
    s.on_follower_fetch(2, 10, now=25)  # holds all that existed at its fetch at 3
    assert s.followers[2].last_caught_up_time == 3
    assert s.on_follower_fetch(2, 14, now=26) is True
    assert s.followers[2].last_caught_up_time == 26


def test_lagging_follower_leaves_and_rejoins_at_the_hw():
    s = LeaderState(1, [1, 2, 3], leo=0, hw=0, now=0)
    s.update_leader_leo(10, now=1)
    s.on_follower_fetch(2, 10, now=2)
    s.on_follower_fetch(3, 2, now=2)
    assert s.hw == 2
    v = s.isr_version
    assert s.maybe_shrink_isr(now=11.5, lag_time_max=LAG) == {3}
    assert s.isr == {1, 2} and s.hw == 10 and s.isr_version == v + 1
    assert s.on_follower_fetch(3, 9, now=12) is False
    assert s.isr == {1, 2}  # 9 < hw 10: still out
    s.update_leader_leo(15, now=13)
    assert s.on_follower_fetch(3, 10, now=14) is False  # 10 >= hw 10: back in
    assert s.isr == {1, 2, 3} and s.isr_version == v + 2
    assert s.hw == 10  # the HW never went backwards, and now 3 holds it


def test_follower_outside_the_isr_rejoins_only_past_the_epoch_start():
    """KAFKA-7128: a new leader's HW can lag; rejoining needs the leader's epoch start offset too."""
    s = LeaderState(1, [1, 2, 3], leo=20, hw=12, now=0, isr=[1, 2])
    assert s.epoch_start_offset == 20
    assert s.followers[3].last_caught_up_time is None
    s.on_follower_fetch(3, 15, now=1)
    assert 3 not in s.isr  # 15 >= hw 12, but the previous leader may have committed up to 20
    s.on_follower_fetch(3, 20, now=2)
    assert 3 in s.isr


def test_follower_outside_the_isr_is_never_reported_out_of_sync():
    s = LeaderState(1, [1, 2], leo=5, hw=5, now=0, isr=[1])
    assert s.isr == {1}
    assert s.maybe_shrink_isr(now=100, lag_time_max=LAG) == set()


def test_min_isr_and_the_produce_recipe():
    s = LeaderState(1, [1, 2, 3], leo=0, hw=0, now=0)
    assert not s.is_under_min_isr(2)
    s.update_leader_leo(4, now=1)
    s.on_follower_fetch(2, 4, now=2)
    assert s.maybe_shrink_isr(now=12, lag_time_max=LAG) == {3}
    assert s.committed(4)
    assert not s.is_under_min_isr(2)
    assert s.is_under_min_isr(3)  # acks=all with min_isr 3 is refused before the append


def test_time_going_backwards_never_loses_credit():
    s = LeaderState(1, [1, 2], leo=5, hw=0, now=50)
    s.on_follower_fetch(2, 5, now=60)
    s.on_follower_fetch(2, 5, now=40)
    assert s.followers[2].last_caught_up_time == 60
    assert s.followers[2].last_fetch_time == 60


def test_bad_events_are_refused():
    s = LeaderState(1, [1, 2], leo=5, hw=0, now=0)
    with pytest.raises(FollowerAheadError, match="beyond the leader's log end 5"):
        s.on_follower_fetch(2, 6, now=1)
    with pytest.raises(ValueError, match="not a follower"):
        s.on_follower_fetch(9, 1, now=1)
    with pytest.raises(ValueError, match="not a follower"):
        s.on_follower_fetch(1, 1, now=1)  # the leader is not its own follower
    with pytest.raises(ValueError, match="negative"):
        s.on_follower_fetch(2, -1, now=1)
    with pytest.raises(ValueError, match="cannot go back"):
        s.update_leader_leo(4, now=1)
    assert s.leo == 5 and s.hw == 0 and s.followers[2].leo == -1  # nothing changed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, [1, 1, 2]), "duplicate"),
        ((4, [1, 2]), "not one of the replicas"),
    ],
)
def test_bad_construction_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        LeaderState(*args, leo=0, hw=0, now=0)


def test_isr_must_be_replicas_and_always_holds_the_leader():
    with pytest.raises(ValueError, match=r"\[7\]"):
        LeaderState(1, [1, 2], leo=0, hw=0, now=0, isr=[1, 7])
    assert LeaderState(1, [1, 2], leo=0, hw=0, now=0, isr=[2]).isr == {1, 2}


def test_followers_view_is_read_only():
    s = LeaderState(1, [1, 2], leo=0, hw=0, now=0)
    with pytest.raises(TypeError):
        s.followers[2] = None  # type: ignore[index]


# A random conversation: followers only move forward, as real ones do between truncations.
events = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 5)),
        st.tuples(st.just("fetch"), st.sampled_from([2, 3, 4]), st.floats(0, 1)),
        st.tuples(st.just("tick"), st.sampled_from([0.5, 3.0, 11.0])),
        st.tuples(st.just("shrink")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_random_conversations_keep_the_invariants(evs):
    s = LeaderState(1, [1, 2, 3, 4], leo=0, hw=0, now=0)
    now = 0.0
    last_hw = 0
    for ev in evs:
        if ev[0] == "append":
            s.update_leader_leo(s.leo + ev[1], now)
        elif ev[0] == "fetch":
            f = s.followers[ev[1]]
            low = max(f.leo, 0)
            offset = low + round((s.leo - low) * ev[2])
            was_in = ev[1] in s.isr
            s.on_follower_fetch(ev[1], offset, now)
            if not was_in and ev[1] in s.isr:
                assert offset >= s.hw
        elif ev[0] == "tick":
            now += ev[1]
        else:
            before = set(s.isr)
            removed = s.maybe_shrink_isr(now, LAG)
            assert removed <= before - {1}
            for spu in removed:
                f = s.followers[spu]
                assert f.leo < s.leo  # a level follower is never dropped
                assert f.last_caught_up_time is None or now - f.last_caught_up_time > LAG
            assert s.out_of_sync(now, LAG) == set()
        assert s.hw >= last_hw  # never backwards
        assert s.hw <= s.leo
        assert 1 in s.isr
        for spu in s.isr - {1}:
            leo = s.followers[spu].leo
            assert leo == -1 and s.hw == 0 or leo >= s.hw  # every ISR member holds the HW
        if s.isr == {1}:
            assert s.hw == s.leo
        last_hw = s.hw


def test_remove_from_isr_drops_failed_followers_and_lets_the_hw_advance():
    from fluvial.replication.isr import LeaderState

    st = LeaderState(1, [1, 2, 3], leo=0, hw=0, now=0)
    st.update_leader_leo(5, now=1)
    st.on_follower_fetch(2, 5, now=2)
    assert st.hw == 0  # follower 3 has not reported
    assert st.remove_from_isr([3, 1]) == {3}  # the leader is never removed
    assert st.isr == {1, 2} and st.hw == 5
    assert st.remove_from_isr([3]) == frozenset()


def test_a_follower_may_hold_written_records_the_leader_has_not_fsynced_yet():
    """The leader's LEO here is its durable LEO; followers are served what it has written."""
    s = LeaderState(1, [1, 2], leo=5, hw=5, now=0)
    s.on_append(8)
    assert (s.leo, s.log_end) == (5, 8)
    assert s.on_follower_fetch(2, 8, now=1) is False  # the leader's own fsync holds the HW
    assert s.hw == 5
    assert s.update_leader_leo(8, now=2) is True and s.hw == 8
    with pytest.raises(FollowerAheadError):
        s.on_follower_fetch(2, 9, now=3)


def test_the_scs_recorded_isr_holds_the_hw_until_it_records_the_shrink():
    """Kafka's maximal ISR (KIP-497): the HW waits for members the SC still has on record."""
    s = LeaderState(1, [1, 2, 3], leo=10, hw=0, now=0, recorded_isr=[1, 2, 3])
    s.on_follower_fetch(2, 10, now=1)
    assert s.remove_from_isr([3]) == {3}
    assert s.hw == 0 and s.hw_members() == {2, 3}  # 3 is still on the SC's record
    assert s.set_recorded_isr([1, 2]) is True and s.hw == 10
    assert not s.is_under_min_isr(2) and s.is_under_min_isr(3)


def test_min_isr_counts_only_members_the_leader_and_the_sc_agree_on():
    s = LeaderState(1, [1, 2, 3], leo=0, hw=0, now=0, recorded_isr=[1, 3])
    assert s.isr == {1, 2, 3}
    assert s.is_under_min_isr(3) and not s.is_under_min_isr(2)
    s.set_recorded_isr([1])
    assert s.is_under_min_isr(2)

"""HW maths: compute_hw's worked table, follower_hw, and ReplicaOffsets validation."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluvial.replication.offsets import UNKNOWN_OFFSET, ReplicaOffsets, compute_hw, follower_hw


@pytest.mark.parametrize(
    ("leader_leo", "followers", "current_hw", "expected"),
    [
        (10, (), None, 10),  # a lone leader commits what it writes
        (10, (4,), 0, 4),  # fluvio test_hw22, first follower report
        (10, (6,), 4, 6),
        (10, (6,), 6, 6),
        (10, (10,), 6, 10),
        (10, (3, 4), 2, 3),  # the slowest ISR member decides
        (10, (6, 7, 9), 2, 6),
        (10, (-1, 9), 5, 5),  # an unknown follower holds the HW where it is
        (10, (-1, 9), None, -1),  # ... the raw minimum shows why
        (4, (9,), None, 4),  # never beyond the leader's own LEO
    ],
)
def test_compute_hw_worked_examples(leader_leo, followers, current_hw, expected):
    assert compute_hw(leader_leo, followers, current_hw=current_hw) == expected


def test_compute_hw_accepts_a_generator():
    assert compute_hw(10, (leo for leo in (7, 8))) == 7
    assert compute_hw(10, (leo for leo in ())) == 10


@given(st.integers(0, 1000), st.lists(st.integers(-1, 1000), max_size=5), st.integers(0, 1000))
def test_compute_hw_is_the_min_and_never_goes_backwards(leader_leo, followers, current):
    raw = compute_hw(leader_leo, followers)
    assert raw == min([leader_leo, *followers])
    assert compute_hw(leader_leo, followers, current_hw=current) == max(current, raw)


def test_follower_hw_is_capped_by_its_own_leo_and_can_go_down():
    assert follower_hw(10, 7) == 7
    assert follower_hw(4, 7) == 4
    assert follower_hw(2, 7) < follower_hw(4, 7)  # no max with an old value: after truncation it follows


def test_replica_offsets_defaults_to_unknown():
    r = ReplicaOffsets(5001)
    assert (r.leo, r.hw) == (UNKNOWN_OFFSET, UNKNOWN_OFFSET)
    assert not r.is_known
    assert ReplicaOffsets(5001, leo=10, hw=4).is_known


@pytest.mark.parametrize(("leo", "hw"), [(3, 4), (-2, -1), (5, -2)])
def test_replica_offsets_rejects_impossible_values(leo, hw):
    with pytest.raises(ValueError, match="5001"):
        ReplicaOffsets(5001, leo=leo, hw=hw)

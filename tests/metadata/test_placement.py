"""Replica placement: exact maps for small inputs, the stated guarantees as properties, validation."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.metadata.placement import PlacementError, SpuInfo, place_replicas, validate_assigned

S3 = [SpuInfo(1), SpuInfo(2), SpuInfo(3)]


# -- exact maps ----------------------------------------------------------------------------------


def test_docstring_examples():
    assert place_replicas(3, 2, S3) == {0: [1, 2], 1: [2, 3], 2: [3, 1]}
    assert place_replicas(6, 2, S3) == {
        0: [1, 2], 1: [2, 3], 2: [3, 1],
        3: [1, 3], 4: [2, 1], 5: [3, 2],  # shift 1: followers skip one position
    }
    assert place_replicas(3, 1, S3, existing_load={1: 2, 3: 1}) == {0: [2], 1: [3], 2: [2]}


def test_single_spu_single_replica():
    assert place_replicas(3, 1, [SpuInfo(5001)]) == {0: [5001], 1: [5001], 2: [5001]}


def test_fluvio_shapes_more_partitions_than_spus():
    # Fluvio's generate_replica_partition_more_spu and 1x_replicas examples
    assert place_replicas(4, 1, [SpuInfo(0), SpuInfo(1)]) == {0: [0], 1: [1], 2: [0], 3: [1]}
    five = [SpuInfo(i) for i in (0, 1, 2, 4, 10)]
    assert place_replicas(4, 1, five) == {0: [0], 1: [1], 2: [2], 3: [4]}


def test_full_replication():
    assert place_replicas(3, 3, S3) == {0: [1, 2, 3], 1: [2, 3, 1], 2: [3, 1, 2]}


def test_input_order_does_not_matter():
    assert place_replicas(5, 2, S3[::-1]) == place_replicas(5, 2, S3)


def test_start_index_rotates_the_leaders():
    assert place_replicas(3, 2, S3, start_index=1) == {0: [2, 1], 1: [3, 2], 2: [1, 3]}
    assert place_replicas(3, 1, S3, start_index=4) == place_replicas(3, 1, S3, start_index=1)


def test_existing_load_steers_new_leaders_to_the_idle_spu():
    assert place_replicas(2, 2, S3, existing_load={1: 5, 2: 5}) == {0: [3, 1], 1: [3, 1]}
    # loads of SPUs that are not live are ignored
    assert place_replicas(1, 1, S3, existing_load={9: 0, 1: 1, 2: 1}) == {0: [3]}


def test_rack_aware_placement_spreads_each_partition_over_racks():
    spus = [SpuInfo(1, "a"), SpuInfo(2, "a"), SpuInfo(3, "b"), SpuInfo(4, "b"), SpuInfo(5, "c")]
    # rack-alternated order: 1(a) 3(b) 5(c) 2(a) 4(b)
    maps = place_replicas(5, 3, spus, ignore_rack=False)
    assert maps == {0: [1, 3, 5], 1: [3, 5, 2], 2: [5, 2, 4], 3: [2, 4, 5], 4: [4, 1, 5]}
    rack = {s.id: s.rack for s in spus}
    assert all(len({rack[r] for r in reps}) == 3 for reps in maps.values())


def test_racks_are_ignored_when_asked_or_when_no_spu_has_one():
    spus = [SpuInfo(1, "a"), SpuInfo(2, "a"), SpuInfo(3, "b")]
    assert place_replicas(3, 2, spus) == place_replicas(3, 2, S3)  # ignore_rack=True
    assert place_replicas(3, 2, S3, ignore_rack=False) == place_replicas(3, 2, S3)


def test_rack_aware_with_fewer_racks_than_replicas():
    spus = [SpuInfo(1, "a"), SpuInfo(2, "a"), SpuInfo(3, "b")]
    maps = place_replicas(3, 3, spus, ignore_rack=False)
    assert all(sorted(reps) == [1, 2, 3] for reps in maps.values())
    rack = {s.id: s.rack for s in spus}
    assert all(rack[reps[0]] != rack[reps[1]] for reps in maps.values())  # both racks first


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partitions", "rf", "spus", "message"),
    [
        (1, 3, S3[:2], "replication factor 3 exceeds the 2 live SPUs"),
        (1, 2, S3[:1], "replication factor 2 exceeds the 1 live SPU$"),
        (1, 1, [], "no live SPUs"),
        (0, 1, S3, "partition count must be at least 1, got 0"),
        (1, 0, S3, "replication factor must be at least 1, got 0"),
        (1, 1, [SpuInfo(1), SpuInfo(1)], r"duplicate SPU ids \[1\]"),
    ],
)
def test_placement_errors(partitions, rf, spus, message):
    with pytest.raises(PlacementError, match=message):
        place_replicas(partitions, rf, spus)


def test_rack_aware_placement_needs_a_rack_on_every_spu():
    spus = [SpuInfo(1, "a"), SpuInfo(2), SpuInfo(3, "b")]
    with pytest.raises(PlacementError, match=r"SPUs \[2\] have no rack"):
        place_replicas(1, 1, spus, ignore_rack=False)
    assert place_replicas(1, 1, spus) == {0: [1]}


def test_placement_error_is_a_value_error():
    assert issubclass(PlacementError, ValueError)


# -- properties ----------------------------------------------------------------------------------


@st.composite
def placements(draw, racks: bool = False):
    ids = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=9, unique=True))
    if racks:
        names = draw(st.lists(st.sampled_from("abcd"), min_size=len(ids), max_size=len(ids)))
        spus = [SpuInfo(i, names[k]) for k, i in enumerate(ids)]
    else:
        spus = [SpuInfo(i) for i in ids]
    rf = draw(st.integers(1, len(ids)))
    partitions = draw(st.integers(1, 40))
    start = draw(st.none() | st.integers(0, 20))
    return partitions, rf, spus, start


@settings(max_examples=300, deadline=None)
@given(placements(), st.booleans())
def test_every_partition_gets_rf_distinct_known_spus(case, with_load):
    partitions, rf, spus, start = case
    load = {s.id: (s.id * 7) % 5 for s in spus} if with_load else None
    maps = place_replicas(partitions, rf, spus, existing_load=load, start_index=start)
    assert sorted(maps) == list(range(partitions))
    assert all(len(set(r)) == rf == len(r) for r in maps.values())
    assert validate_assigned(maps, {s.id for s in spus}) is None
    again = place_replicas(partitions, rf, spus, existing_load=load, start_index=start)
    assert again == maps  # deterministic


@settings(max_examples=300, deadline=None)
@given(placements())
def test_new_leader_counts_differ_by_at_most_one(case):
    partitions, rf, spus, start = case
    leaders = Counter(r[0] for r in place_replicas(partitions, rf, spus, start_index=start).values())
    counts = [leaders[s.id] for s in spus]
    assert max(counts) - min(counts) <= 1


@settings(max_examples=300, deadline=None)
@given(placements(), st.lists(st.integers(0, 6), min_size=9, max_size=9))
def test_leaders_fill_the_least_loaded_spus_first(case, loads):
    """Water filling: an SPU that got a new leader ends at most one above any other SPU."""
    partitions, rf, spus, start = case
    existing = {s.id: loads[k] for k, s in enumerate(spus)}
    maps = place_replicas(partitions, rf, spus, existing_load=existing, start_index=start)
    new = Counter(r[0] for r in maps.values())
    total = {s.id: existing[s.id] + new[s.id] for s in spus}
    for a in new:
        assert all(total[a] <= total[b] + 1 for b in total)


@settings(max_examples=300, deadline=None)
@given(placements())
def test_replica_counts_are_balanced_without_racks_or_load(case):
    partitions, rf, spus, start = case
    maps = place_replicas(partitions, rf, spus, start_index=start)
    held = Counter(spu for reps in maps.values() for spu in reps)
    counts = [held[s.id] for s in spus]
    if partitions % len(spus) == 0:
        assert set(counts) == {partitions * rf // len(spus)}
    assert max(counts) - min(counts) <= rf


@settings(max_examples=300, deadline=None)
@given(placements(racks=True))
def test_rack_aware_partitions_span_as_many_racks_as_they_can(case):
    partitions, rf, spus, start = case
    rack = {s.id: s.rack for s in spus}
    maps = place_replicas(partitions, rf, spus, ignore_rack=False, start_index=start)
    n_racks = len(set(rack.values()))
    assert all(len(set(r)) == rf for r in maps.values())
    assert all(len({rack[s] for s in reps}) == min(rf, n_racks) for reps in maps.values())


# -- validate_assigned ---------------------------------------------------------------------------

SAME_RF = "every partition needs the same replication factor"


@pytest.mark.parametrize(
    ("maps", "problem"),
    [
        ({0: [1, 2], 1: [2, 3]}, None),
        ([(0, [1]), (1, [3])], None),
        ({}, "no partitions assigned"),
        ({1: [1], 2: [2]}, "partition 0 is missing: ids must run 0..1 without gaps"),
        ({0: [1], 2: [2]}, "partition 1 is missing: ids must run 0..1 without gaps"),
        ({0: [1], -1: [2]}, "partition id -1 is negative"),
        ([(0, [1]), (0, [2])], "partition 0 is assigned more than once"),
        ({0: [1], 1: []}, "partition 1 has no replicas"),
        ({0: [1, 2], 1: [2, 2]}, "partition 1 lists SPU 2 more than once"),
        ({0: [1, 7]}, "partition 0 uses unknown SPU 7"),
        ({0: [1, 2], 1: [3]}, f"partition 1 has 1 replica but partition 0 has 2; {SAME_RF}"),
        ({1: [1, 2], 0: [3]}, f"partition 1 has 2 replicas but partition 0 has 1; {SAME_RF}"),
    ],
)
def test_validate_assigned(maps, problem):
    assert validate_assigned(maps, {1, 2, 3}) == problem

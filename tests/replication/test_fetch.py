"""The batched replica fetch's decisions (fluvial.replication.fetch), in plain pytest."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluvial.errors import OK, Error, ErrorCode
from fluvial.protocol import internal_api as ia
from fluvial.protocol.api import decode_request, decode_response, encode_request, encode_response
from fluvial.replication import fetch
from fluvial.replication.fetch import Action, Followed, build_request, follower_step, has_news, refusal


def test_the_docstring_examples_hold():
    assert doctest.testmod(fetch).failed == 0


LEADS = dict(leads=True, replicas=[1, 2, 3], leader_epoch=4, self_id=1)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(LEADS, follower_id=2, requested_epoch=4), None),
    (dict(LEADS, leads=False, follower_id=2, requested_epoch=4), ErrorCode.NotLeaderForPartition),
    (dict(LEADS, follower_id=9, requested_epoch=4), ErrorCode.PermissionDenied),  # not a replica
    (dict(LEADS, follower_id=1, requested_epoch=4), ErrorCode.PermissionDenied),  # the leader itself
    (dict(LEADS, follower_id=2, requested_epoch=3), ErrorCode.NotLeaderForPartition),  # stale follower
    (dict(LEADS, follower_id=2, requested_epoch=5), ErrorCode.NotLeaderForPartition),  # stale leader
])
def test_refusal_checks_leadership_membership_and_the_epoch(kwargs, expected):
    assert refusal(**kwargs) == expected


@pytest.mark.parametrize("fetch_offset, known_hw, log_end, hw, news", [
    (10, 10, 10, 10, False),  # caught up, nothing new
    (10, 10, 11, 10, True),  # a record to send
    (10, 9, 10, 10, True),  # the follower's HW can move
    (10, 10, 10, 15, False),  # the leader's HW is past what the follower holds: no use yet
    (8, 5, 10, 7, True),  # both
])
def test_has_news(fetch_offset, known_hw, log_end, hw, news):
    assert has_news(fetch_offset, known_hw, log_end, hw) is news


def test_build_request_carries_every_partition_rotated_and_round_trips():
    followed = [Followed("t", i, 3, 10 * i, 10 * i - 1) for i in range(5)]
    for start in range(7):
        req = build_request(2, followed, start)
        parts = [p.partition for p in req.partitions]
        assert sorted(parts) == [0, 1, 2, 3, 4]
        assert parts[0] == start % 5
        assert req.known_hws == [10 * p - 1 for p in parts]
        assert all(p.leader_epoch == 3 and p.fetch_offset == 10 * p.partition for p in req.partitions)
    header, decoded = decode_request(encode_request(req, 7, client_id="f")[4:], ia.INTERNAL_SPU_REQUESTS)
    assert (header.api_key, decoded) == (ia.InternalSpuApiKey.FetchReplicas, req)
    assert build_request(2, [], 0).partitions == []


def answer(error=OK, epoch=3, hw=0, leo=0, log_start=0, records=b""):
    return ia.FetchedPartition("t", 0, error, epoch, hw, leo, log_start, records)


def test_an_answer_of_another_epoch_is_never_appended():
    for epoch in (2, 4, -1):
        step = follower_step(3, 0, answer(epoch=epoch, hw=5, leo=5, records=b"x"))
        assert step.action is Action.RETRY and step.records == b""


def test_follower_steps():
    assert follower_step(3, 0, answer(hw=5, records=b"r")) == fetch.Step(Action.APPEND, b"r", 5)
    assert follower_step(3, 4, answer(hw=4)).action is Action.APPEND  # no records: only the HW
    assert follower_step(3, 9, answer(Error(ErrorCode.OffsetOutOfRange))).action is Action.RECONCILE
    evicted = Error(ErrorCode.OffsetEvicted, (4, 10))
    assert follower_step(3, 4, answer(evicted, log_start=10)) == fetch.Step(Action.START_AT, offset=10)
    # evicted, yet this log reaches the leader's start: nothing to throw away, ask again
    assert follower_step(3, 12, answer(evicted, log_start=10)).action is Action.RETRY
    assert follower_step(3, 0, answer(Error(ErrorCode.NotLeaderForPartition), epoch=-1)).action is Action.RETRY


_errors = st.sampled_from([OK, Error(ErrorCode.NotLeaderForPartition), Error(ErrorCode.OffsetEvicted, (4, 10)),
                           Error.other("boom")])
_partitions = st.builds(ia.FetchedPartition, st.text(max_size=8), st.integers(0, 2**32 - 1), _errors,
                        st.integers(-1, 2**31 - 1), st.integers(0, 2**40), st.integers(0, 2**40),
                        st.integers(0, 2**40), st.binary(max_size=64))


@given(st.builds(ia.FetchReplicasResponse, _errors, st.lists(_partitions, max_size=5)),
       st.integers(0, 2**31 - 1))
def test_the_answer_in_pieces_is_the_answer_byte_for_byte_with_the_records_uncopied(resp, corr):
    parts = ia.encode_fetch_replicas_response_parts(resp, corr, 0)
    assert b"".join(parts) == encode_response(resp, corr, 0)
    with_records = [p.records for p in resp.partitions if p.records]
    assert [x for x in parts if any(x is r for r in with_records)] == with_records  # the same objects
    assert decode_response(b"".join(parts)[4:], ia.FetchReplicasResponse, 0) == (corr, resp)


def test_the_doctests_of_the_answer_in_pieces_hold():
    result = doctest.testmod(ia)
    assert result.failed == 0 and result.attempted > 0

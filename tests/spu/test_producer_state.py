"""The idempotent producer's leader state (fluvial.spu.producer_state): pure decisions, worked
cases, and the state rebuilt from batch headers."""

from __future__ import annotations

from types import SimpleNamespace

from fluvial.protocol.batch import iter_batches, read_header, stamp_producer, check_batch
from fluvial.protocol.producer_api import SEQUENCE_MODULUS, next_sequence
from fluvial.protocol.record import decode_batch, encode_batch
from fluvial.spu.producer_state import (
    APPEND, MAX_REMEMBERED, Duplicate, ProducerStateTable, Refused, has_producer_ids,
    plan_append, record_appended,
)


def header(pid, seq, count, base=0, epoch=0):
    return SimpleNamespace(producer_id=pid, producer_epoch=epoch, first_sequence=seq,
                           record_count=count, base_offset=base, size=100)


def test_the_worked_example_of_the_module_docstring():
    t = ProducerStateTable()
    assert t.check(7, 0, 0, 3) == APPEND
    t.record(7, 0, 0, 3, 10)
    assert t.check(7, 0, 3, 2) == APPEND
    t.record(7, 0, 3, 2, 13)
    assert t.check(7, 0, 3, 2) == Duplicate(13, 14)
    assert t.check(7, 0, 0, 3) == Duplicate(10, 12)
    assert t.check(7, 0, 5, 1) == APPEND
    assert isinstance(t.check(7, 0, 6, 1), Refused)  # a gap: sequence 5 never arrived
    assert t.check(7, 0, 4, 1) == Duplicate(14, 14)  # inside the run: sequence 4 is at 14
    assert isinstance(t.check(7, 0, 4, 2), Refused)  # runs past what was stored


def test_runs_split_where_offsets_do_not_follow_on():
    t = ProducerStateTable()
    t.record(7, 0, 0, 3, 10)
    t.record(7, 0, 3, 2, 14)  # another producer's record took offset 13
    assert t.check(7, 0, 3, 2) == Duplicate(14, 15)
    assert t.check(7, 0, 2, 1) == Duplicate(12, 12)
    assert isinstance(t.check(7, 0, 2, 2), Refused)  # straddles the two runs


def test_producers_without_an_id_are_never_checked():
    t = ProducerStateTable()
    assert t.check(-1, -1, -1, 5) == APPEND
    t.record(-1, -1, -1, 5, 0)
    assert len(t) == 0


def test_an_unknown_producer_must_start_at_zero_unless_the_log_lost_its_head():
    assert isinstance(ProducerStateTable().check(3, 0, 8, 1), Refused)
    assert ProducerStateTable(log_start_offset=100).check(3, 0, 8, 1) == APPEND


def test_an_older_epoch_is_fenced_and_a_newer_one_starts_over():
    t = ProducerStateTable()
    t.record(1, 2, 0, 4, 0)
    assert "fenced" in t.check(1, 1, 4, 1).reason
    assert t.check(1, 3, 0, 1) == APPEND
    assert isinstance(t.check(1, 3, 4, 1), Refused)
    t.record(1, 3, 0, 1, 4)
    assert t.check(1, 3, 1, 1) == APPEND
    assert t.check(1, 3, 0, 1) == Duplicate(4, 4)


def test_only_the_last_five_runs_are_remembered():
    t = ProducerStateTable()
    for i in range(MAX_REMEMBERED + 1):
        t.record(1, 0, i, 1, 2 * i)  # not consecutive offsets: one run each
    assert isinstance(t.check(1, 0, 0, 1), Refused)
    assert t.check(1, 0, 1, 1) == Duplicate(2, 2)


def test_sequences_wrap_to_zero():
    top = SEQUENCE_MODULUS - 2
    assert next_sequence(top, 3) == 1
    t = ProducerStateTable(log_start_offset=1)
    t.record(1, 0, top, 3, 0)
    assert t.check(1, 0, 1, 1) == APPEND
    assert t.check(1, 0, top, 3) == Duplicate(0, 2)


def test_a_plan_for_a_retry_of_stored_batches_skips_them_all():
    t = ProducerStateTable()
    t.record(1, 0, 0, 3, 10)
    t.record(1, 0, 3, 2, 13)
    batches = [(0, header(1, 0, 3)), (100, header(1, 3, 2))]
    assert plan_append(t, batches, leo=15) == (200, (10, 14), None)


def test_a_plan_for_stored_then_new_batches_appends_the_new_ones_at_the_leo():
    t = ProducerStateTable()
    t.record(1, 0, 0, 3, 10)
    batches = [(0, header(1, 0, 3)), (100, header(1, 3, 2)), (200, header(1, 5, 1))]
    assert plan_append(t, batches, leo=13) == (100, (10, 12), None)
    record_appended(t, batches, 100, 13)
    assert t.check(1, 0, 3, 2) == Duplicate(13, 14)
    assert t.check(1, 0, 5, 1) == Duplicate(15, 15)
    # records of someone else since: the offsets would not be consecutive
    t2 = ProducerStateTable()
    t2.record(1, 0, 0, 3, 10)
    assert plan_append(t2, batches, leo=20).refused is not None


def test_a_plan_refuses_gaps_inside_a_record_set_and_new_before_stored():
    t = ProducerStateTable()
    assert plan_append(t, [(0, header(1, 0, 3)), (100, header(1, 4, 1))], 0).refused
    t.record(1, 0, 0, 3, 0)
    assert plan_append(t, [(0, header(-1, -1, 1)), (100, header(1, 0, 3))], 3).refused
    assert plan_append(t, [(0, header(1, 3, 1)), (100, header(1, 4, 1))], 3) == (0, None, None)


def test_stamped_batches_keep_a_valid_crc_and_rebuild_the_state():
    raw = encode_batch([b"a", b"b", b"c"], first_timestamp=1)
    assert not has_producer_ids(raw)
    stamped = stamp_producer(raw, 42, 1, 7)
    assert has_producer_ids(stamped)
    h = check_batch(stamped)  # CRC checked
    assert (h.producer_id, h.producer_epoch, h.first_sequence) == (42, 1, 7)
    assert [r.value for r in decode_batch(stamped).records] == [b"a", b"b", b"c"]
    log = []
    for base, (_, h) in zip((0, 3), iter_batches(stamped + stamp_producer(raw, 42, 1, 10))):
        log.append(h._replace(base_offset=base))
    t = ProducerStateTable.rebuild(log)
    assert t.check(42, 1, 7, 3) == Duplicate(0, 2)
    assert t.check(42, 1, 10, 3) == Duplicate(3, 5)
    assert t.check(42, 1, 13, 1) == APPEND
    assert read_header(raw).producer_id == -1


def test_a_log_is_read_back_from_an_offset_across_segments(tmp_path):
    from fluvial.storage.config import ReplicaConfig
    from fluvial.storage.replica import Replica

    r = Replica.open(tmp_path, "t", 0, ReplicaConfig(segment_max_bytes=300,
                                                     index_max_interval_bytes=50))
    try:
        seq = 0
        for i in range(20):
            batch = stamp_producer(encode_batch([b"a%d" % i, b"b%d" % i], first_timestamp=1), 5, 0, seq)
            r.append(batch, leader_epoch=0)
            seq += 2
        assert len(r.segments) > 3
        assert [h.base_offset for h in r.batch_headers()] == list(range(0, 40, 2))
        assert [h.base_offset for h in r.batch_headers(25)] == list(range(24, 40, 2))
        assert list(r.batch_headers(40)) == []
        t = ProducerStateTable.rebuild(r.batch_headers(30), 30)
        assert t.check(5, 0, 38, 2) == Duplicate(38, 39)
        assert t.check(5, 0, 40, 1) == APPEND
        assert t.check(9, 0, 7, 1) == APPEND  # unknown, and the scan started past the log start
    finally:
        r.close()


def test_an_unknown_producer_may_resume_mid_sequence_on_a_compacted_log():
    """The cleaner rewrites batches without their producer fields: a producer whose batches
    were all rewritten is unknown to a new leader, and its next batch must not be refused."""
    assert isinstance(ProducerStateTable().check(3, 0, 8, 1), Refused)
    assert ProducerStateTable(compacted=True).check(3, 0, 8, 1) == APPEND
    assert ProducerStateTable.rebuild([], 0, compacted=True).check(3, 0, 8, 1) == APPEND

"""The chaos checker on hand-made histories: each rule passes a good run and catches a bad one."""

from __future__ import annotations

import math

import pytest

from harness.checker import check_history
from harness.history import History, make_id, parse_id, record_id
from harness.stats import percentile


def _id(seq: int, writer: int = 0, partition: int = 0) -> bytes:
    return make_id(partition, writer, seq)


def _history(*sends: tuple[int, list[int], int | None], partition: int = 0) -> History:
    """``sends``: (writer, seqs, base offset it was acknowledged at or None), in send order."""
    h = History()
    for writer, seqs, base in sends:
        ids = [_id(s, writer, partition) for s in seqs]
        h.attempt(partition, writer, ids)
        if base is not None:
            h.ack(partition, base, ids, spu=5001, sent_at=0.0, now=1.0)
    return h


def _log(*seqs_or_values) -> list[tuple[int, bytes]]:
    return [(i, v if isinstance(v, bytes) else _id(v)) for i, v in enumerate(seqs_or_values)]


def _logs(**replicas) -> dict[int, dict[str, list[tuple[int, bytes]]]]:
    return {0: {label.replace("_", "-"): recs for label, recs in replicas.items()}}


def test_a_clean_run_passes():
    h = _history((0, [0, 1], 0), (0, [2, 3], 2))
    log = _log(0, 1, 2, 3)
    res = check_history(h, _logs(spu_1=log, spu_2=log, spu_3=log))
    assert res.ok, res.summary()
    assert (res.acknowledged, res.attempted, res.duplicates) == (4, 4, 0)
    assert res.replica_ends == {0: {"spu-1": 4, "spu-2": 4, "spu-3": 4}}


def test_an_acknowledged_record_missing_from_the_final_log_is_lost():
    h = _history((0, [0, 1], 0), (0, [2], 2))
    res = check_history(h, _logs(spu_1=_log(0, 1)))
    assert not res.ok
    assert len(res.lost) == 1 and "p0w0-2" in res.lost[0] and "gone" in res.lost[0]


def test_an_acknowledged_record_at_another_offset_is_lost():
    h = _history((0, [0], 0), (0, [1], 1))
    res = check_history(h, _logs(spu_1=_log(1, 0)))  # swapped
    assert len(res.lost) == 2
    assert "stored at [(0, 1)]" in res.lost[0] or "stored at [(0, 0)]" in res.lost[0]


def test_the_reference_replica_decides_what_is_lost():
    h = _history((0, [0], 0), (0, [1], 1))
    logs = _logs(spu_1=_log(0), spu_2=_log(0, 1))
    assert check_history(h, logs).ok  # the union holds both
    res = check_history(h, logs, reference={0: "spu-1"})
    assert [x.split(" ")[0] for x in res.lost] == ["b'p0w0-1'"]


def test_different_records_at_one_offset_on_two_replicas_are_inconsistent():
    h = _history((0, [0], 0), (0, [1], None), (1, [0], None))
    res = check_history(h, _logs(spu_1=_log(0, 1), spu_2=[(0, _id(0)), (1, _id(0, writer=1))]))
    assert not res.ok
    assert res.inconsistent_offsets == ["0@1: spu-1=b'p0w0-1', spu-2=b'p0w1-0'"]
    assert not res.lost


def test_a_shorter_replica_is_not_a_divergence():
    h = _history((0, [0, 1, 2], 0))
    res = check_history(h, _logs(spu_1=_log(0, 1, 2), spu_2=_log(0, 1)))
    assert res.ok, res.summary()
    assert res.replica_ends[0] == {"spu-1": 3, "spu-2": 2}


def test_two_records_acknowledged_at_one_offset_conflict():
    h = _history((0, [0], 0), (1, [0], 0))
    res = check_history(h, _logs(spu_1=_log(0)))
    assert res.ack_conflicts and not res.ok


def test_a_duplicate_of_a_retried_send_is_allowed():
    # seq 1: the first send timed out (stored anyway), the retry was acknowledged at 2
    h = _history((0, [0], 0), (0, [1], None), (0, [1], 2), (0, [2], 3))
    res = check_history(h, _logs(spu_1=_log(0, 1, 1, 2)))
    assert res.ok, res.summary()
    assert res.duplicates == 1


def test_a_duplicate_of_a_record_sent_once_is_not_allowed():
    h = _history((0, [0], 0), (0, [1], 1))
    res = check_history(h, _logs(spu_1=_log(0, 1, 1)))
    assert not res.ok
    assert res.bad_duplicates == ["b'p0w0-1' stored 2 times at [(0, 1), (0, 2)] but sent 1 time(s)"]


def test_more_copies_than_sends_is_not_allowed():
    h = _history((0, [0], None), (0, [0], 1))
    res = check_history(h, _logs(spu_1=_log(0, 0, 0)))
    assert res.bad_duplicates and not res.ok


def test_an_unacknowledged_record_may_be_absent_or_present_once():
    h = _history((0, [0], 0), (0, [1], None))
    assert check_history(h, _logs(spu_1=_log(0))).ok
    assert check_history(h, _logs(spu_1=_log(0, 1))).ok


def test_acknowledgements_out_of_writer_order_are_a_violation():
    h = History()
    a, b = _id(0), _id(1)
    h.attempt(0, 0, [a])
    h.attempt(0, 0, [b])
    h.ack(0, 1, [a], 5001, 0.0, 1.0)
    h.ack(0, 0, [b], 5001, 0.0, 1.0)
    res = check_history(h, _logs(spu_1=[(0, b), (1, a)]))
    assert res.order_violations == ["writer p0w0: b'p0w0-1' at 0 after b'p0w0-0' at 1"]
    assert not res.lost


def test_writers_interleave_freely():
    h = _history((0, [0], 0), (1, [0], 1), (0, [1], 2), (1, [1], 3))
    log = [(0, _id(0)), (1, _id(0, 1)), (2, _id(1)), (3, _id(1, 1))]
    assert check_history(h, _logs(spu_1=log)).ok


def test_a_record_never_sent_is_reported():
    h = _history((0, [0], 0))
    res = check_history(h, _logs(spu_1=[(0, _id(0)), (1, b"garbage")]))
    assert res.unknown_records == ["0@1: b'garbage' was never sent"]


def test_a_read_committed_consumer_must_not_see_a_record_later_truncated():
    h = _history((0, [0], 0), (0, [1], None), (1, [0], 1))
    h.observe(0, 0, _id(0))
    h.observe(0, 1, _id(1))  # served at ReadCommitted, then replaced by another leader's record
    res = check_history(h, _logs(spu_1=[(0, _id(0)), (1, _id(0, 1))]))
    assert res.consumer_violations == ["0@1: consumer saw b'p0w0-1', final log has b'p0w1-0'"]
    assert not res.lost


def test_a_consumer_served_two_values_at_one_offset_is_a_violation():
    h = _history((0, [0], 0))
    h.observe(0, 0, _id(0))
    h.observe(0, 0, _id(0, 1))
    res = check_history(h, _logs(spu_1=_log(0)))
    assert len(res.consumer_violations) == 1 and "both" in res.consumer_violations[0]


def test_partitions_are_checked_separately():
    h = _history((0, [0], 0), partition=0)
    h2 = _history((0, [0], 0), partition=1)
    h.attempts.update(h2.attempts)
    h.acked.update(h2.acked)
    h.writers.update(h2.writers)
    logs = {0: {"spu-1": [(0, make_id(0, 0, 0))]}, 1: {"spu-1": [(0, make_id(1, 0, 0))]}}
    assert check_history(h, logs).ok
    del logs[1]
    res = check_history(h, logs)
    assert len(res.lost) == 1 and "1@0" in res.lost[0]


def test_padded_values_are_matched_by_their_id():
    h = _history((0, [0], 0))
    assert check_history(h, _logs(spu_1=[(0, _id(0) + b"|xxxx")])).ok


def test_summary_names_every_broken_rule():
    h = _history((0, [0], 0), (0, [1], 1))
    res = check_history(h, _logs(spu_1=_log(0), spu_2=[(0, b"other")]), reference={0: "spu-2"})
    text = res.summary()
    assert "lost 2" in text and "inconsistent offsets 1" in text
    assert "unknown_records (1): 0@0: b'other' was never sent" in text


def test_ids_round_trip():
    assert parse_id(make_id(3, 1, 42)) == (3, 1, 42)
    assert parse_id(b"nope") is None
    assert record_id(b"p0w1-2|pad|more") == b"p0w1-2"


def test_failover_time_counts_only_other_spus_after_the_kill():
    h = History()
    h.ack_times += [(10.0, 0, 5001, 9.9), (10.5, 0, 5001, 10.4), (11.25, 1, 5002, 11.0),
                    (11.5, 0, 5002, 11.0)]
    assert h.failover_time(0, killed_at=10.2, killed_spu=5001) == pytest.approx(1.3)
    assert h.failover_time(0, killed_at=12.0, killed_spu=5001) is None
    assert h.acks_since(10.2) == 3 and h.acks_since(10.2, partition=0) == 2
    assert [a[0] for a in h.acks_sent_after(10.9)] == [11.25, 11.5]


def test_percentile_is_nearest_rank():
    assert percentile([3, 1, 2, 4], 50) == 2
    assert percentile([3, 1, 2, 4], 99) == 4
    assert percentile([5], 1) == 5
    assert math.isnan(percentile([], 50))


def test_converged_means_every_replica_ends_at_the_same_offset():
    h = _history((0, [0, 1], 0))
    assert check_history(h, _logs(spu_1=_log(0, 1), spu_2=_log(0, 1))).converged
    assert not check_history(h, _logs(spu_1=_log(0, 1), spu_2=_log(0))).converged

"""The calls' bookkeeping, pure (fluvial.processor.call_state): assembling calls from a calls
partition, the progress a restart resumes from, and the reply's batches and sequences."""

from __future__ import annotations

import pytest

from fluvial.client.types import Record
from fluvial.processor.call_state import (
    BATCH_RECORDS, ERROR_HEADER, INPUT_HEADER, OUTPUT_HEADER, CallAssembler, CallsState,
    PartitionProgress, call_inputs, record_sets, reply_batches,
)
from fluvial.processor.spec import processor_spec, spec_error
from fluvial.protocol.batch import iter_batches
from fluvial.protocol.markers import STREAM_HEADER, MarkerKind, is_control, marker_of
from fluvial.protocol.record import records_section
from fluvial.protocol.record_headers import decode_header_records

SID = STREAM_HEADER


def marker(offset, kind, call):
    return Record((0, offset, b"fluvial-stream", b"", 1000 + offset,
                   ((SID, call.encode()), ("fluvial-marker", kind.encode())), True))


def data(offset, call, value, *headers):
    return Record((0, offset, None, value, 1000 + offset, ((*headers, (SID, call.encode())))))


def feed_all(asm, records):
    return [(c.id, c.eos, [r.value for r in c.records]) for c in map(asm.feed, records) if c]


def test_interleaved_calls_are_complete_at_their_eos_with_their_own_records():
    asm = CallAssembler()
    log = [marker(0, "BEGIN", "a"), data(1, "a", b"a1"), marker(2, "BEGIN", "b"),
           data(3, "b", b"b1"), data(4, "a", b"a2"), Record((0, 5, None, b"plain", 0)),
           marker(6, "EOS", "b"), data(7, "a", b"a3"), marker(8, "EOS", "a")]
    assert feed_all(asm, log) == [("b", 6, [b"b1"]), ("a", 8, [b"a1", b"a2", b"a3"])]
    assert asm.open == {}


def test_restart_offset_is_the_oldest_open_call_or_after_the_answered_one():
    asm = CallAssembler()
    feed_all(asm, [marker(0, "BEGIN", "a"), marker(1, "BEGIN", "b"), data(2, "b", b"x")])
    (call,) = [c for c in [asm.feed(marker(3, "EOS", "b"))] if c]
    assert asm.restart_offset(call.eos + 1) == 0  # "a" still open: read again from its BEGIN
    assert asm.feed(marker(4, "EOS", "a")).eos == 4
    assert asm.restart_offset(5) == 5


def test_after_a_restart_answered_calls_aborted_calls_and_headless_streams_are_skipped():
    # resumed at 0 with "b" (EOS at 5) answered before the restart
    asm = CallAssembler(answered=5)
    log = [marker(0, "BEGIN", "a"), data(1, "a", b"a1"), marker(2, "BEGIN", "b"),
           data(3, "b", b"b1"), data(4, "z", b"no begin seen"), marker(5, "EOS", "b"),
           marker(6, "BEGIN", "c"), marker(7, "ABORT", "c"), marker(8, "EOS", "z"),
           marker(9, "EOS", "b"),  # a sink's EOS retried: answered already
           marker(10, "EOS", "a")]
    assert feed_all(asm, log) == [("a", 10, [b"a1"])]


def test_a_begin_seen_twice_keeps_the_call():
    asm = CallAssembler()
    log = [marker(0, "BEGIN", "a"), marker(1, "BEGIN", "a"), data(2, "a", b"x"), marker(3, "EOS", "a")]
    assert feed_all(asm, log) == [("a", 3, [b"x"])]


def test_call_inputs_split_by_input_header_and_drop_the_call_headers():
    asm = CallAssembler()
    log = [marker(0, "BEGIN", "a"), data(1, "a", b"x", ("u", b"1")),
           data(2, "a", b"y", (INPUT_HEADER, b"1")), marker(3, "EOS", "a")]
    call = [c for c in map(asm.feed, log) if c][0]
    (t0, r0), (t1, r1) = call_inputs(call, ["in0", "in1"], Record)
    assert (t0, [(r.value, r.headers) for r in r0]) == ("in0", [(b"x", (("u", b"1"),))])
    assert (t1, [(r.value, r.headers) for r in r1]) == ("in1", [(b"y", ())])
    with pytest.raises(ValueError, match="for input '1'; the function has 1 input"):
        call_inputs(call, ["in0"], Record)


def test_progress_round_trips_and_moves_the_sequence_past_the_reply():
    s = CallsState(42).answered(0, 8, 5, 3).answered(1, 2, 3, 1)
    assert s.progress(0) == PartitionProgress(5, 8, 3)
    assert s.answered(0, 12, 13, 2).progress(0) == PartitionProgress(13, 12, 5)
    assert CallsState.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="malformed calls state"):
        CallsState.from_json({"producer_id": 1, "partitions": {"0": [1]}})


def _batch_fields(batch):
    (_, h), = list(iter_batches(batch, verify_crc=True))
    return h.producer_id, h.first_sequence, h.last_offset_delta + 1, is_control(h.attributes)


def test_reply_batches_carry_the_producer_id_and_sequences_following_on():
    asm = CallAssembler()
    call = [c for c in map(asm.feed, [marker(0, "BEGIN", "a"), marker(1, "EOS", "a")]) if c][0]
    outs = [(i % 2, None, b"%d" % i, ()) for i in range(BATCH_RECORDS + 1)]
    batches, n = reply_batches(call, outs, None, producer_id=7, first_sequence=10)
    assert n == BATCH_RECORDS + 2
    assert [_batch_fields(b) for b in batches] == [
        (7, 10, BATCH_RECORDS, False), (7, 10 + BATCH_RECORDS, 1, False), (7, 11 + BATCH_RECORDS, 1, True)]
    # the same call makes the same bytes (a replay is deduplicated by the leader)
    assert reply_batches(call, outs, None, producer_id=7, first_sequence=10) == (batches, n)


def test_a_reply_of_nothing_is_its_eos_and_a_failure_is_one_error_record_and_an_abort():
    asm = CallAssembler()
    call = [c for c in map(asm.feed, [marker(0, "BEGIN", "a"), marker(1, "EOS", "a")]) if c][0]
    batches, n = reply_batches(call, [], None, producer_id=7, first_sequence=0)
    assert n == 1 and [_batch_fields(b)[3] for b in batches] == [True]
    batches, n = reply_batches(call, [], "Traceback...\nValueError: no\n", producer_id=7, first_sequence=4)
    assert n == 2 and [_batch_fields(b)[1:] for b in batches] == [(4, 1, False), (5, 1, True)]
    recs = []
    for b in batches:
        for pos, h in iter_batches(b, verify_crc=False):
            section, p, e, count = records_section(b, pos, h)
            recs += list(decode_header_records(section, p, e, count, h.base_offset, h.first_timestamp))
    assert dict(recs[0].headers)[ERROR_HEADER] == b"ValueError: no"
    assert recs[0].value.startswith(b"Traceback")
    assert marker_of(recs[1].headers).kind is MarkerKind.ABORT
    assert OUTPUT_HEADER not in dict(recs[0].headers)


@pytest.mark.parametrize("name", ["x-calls", "a-b-replies"])
def test_a_processor_name_cannot_end_like_a_calls_topic(name):
    spec = processor_spec("m:f", ["a"], ["b"])
    assert "cannot end with" in spec_error(spec, name)
    assert spec_error(spec, "x-call") is None


def test_record_sets_join_consecutive_batches_up_to_the_limit():
    assert record_sets([b"aa", b"bb", b"c", b"dddd", b"e"], 5) == [b"aabbc", b"dddde"]
    assert record_sets([b"toolarge", b"x"], 5) == [b"toolarge", b"x"]
    assert record_sets([], 5) == []

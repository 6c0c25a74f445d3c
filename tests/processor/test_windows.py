"""The pure window planning and exactly-once bookkeeping (fluvial.processor.windows)."""

from __future__ import annotations

import pytest

from fluvial.client.partitioner import key_hash
from fluvial.processor.windows import ProcessorState, Window, assign_outputs

ORDER = ["a/0", "a/1", "b/0"]


def test_count_windows_take_records_in_input_order_and_wait_for_enough():
    s = ProcessorState(7)
    assert s.plan_count({"a/0": 2}, 3, 100, ORDER) is None
    w = s.plan_count({"a/0": 2, "a/1": 0, "b/0": 5}, 3, 100, ORDER)
    assert w == Window(0, {"a/0": (0, 2), "b/0": (0, 1)}, 100)
    s = s.planned(w).committed(w, {"out/0": 2})
    assert s.next == {"a/0": 2, "b/0": 1} and s.seq == {"out/0": 2} and s.windows_done == 1
    w2 = s.plan_count({"a/0": 2, "b/0": 5}, 3, 200, ORDER)
    assert w2 == Window(1, {"b/0": (1, 4)}, 200)


def test_time_windows_take_everything_up_to_the_watermarks_and_skip_empty_ones():
    s = ProcessorState(1, next={"a/0": 4})
    assert s.plan_time({"a/0": 4, "b/0": 0}, 5, ORDER) is None
    assert s.plan_time({"a/0": 6, "b/0": 1}, 5, ORDER) == Window(0, {"a/0": (4, 6), "b/0": (0, 1)}, 5)


def test_the_snapshot_round_trips_with_its_pending_window():
    w = Window(3, {"a/0": (1, 9)}, 42)
    s = ProcessorState(5, {"a/0": 1}, {"o/1": 8}, 3, w)
    assert ProcessorState.from_json(s.to_json()) == s
    assert s.next_index == 3 and ProcessorState().next_index == 0
    with pytest.raises(ValueError, match="malformed"):
        ProcessorState.from_json({"producer_id": 1})


def test_sequences_follow_the_committed_outputs_and_wrap():
    s = ProcessorState(1, seq={"o/0": 2**31 - 2})
    w = Window(0, {"a/0": (0, 1)}, 0)
    assert s.committed(w, {"o/0": 3, "o/1": 1}).seq == {"o/0": 1, "o/1": 1}


def test_outputs_are_placed_deterministically():
    outs = [("o", None, b"1", ()), ("o", None, b"2", ()), ("o", b"k", b"3", ()), ("p", None, b"4", ())]
    placed = assign_outputs(outs, {"o": 2, "p": 1}, key_hash)
    assert placed == assign_outputs(outs, {"o": 2, "p": 1}, key_hash)
    assert placed["o/0"][0] == (None, b"1", ()) and placed["o/1"][0] == (None, b"2", ())
    assert (b"k", b"3", ()) in placed[f"o/{key_hash(b'k') % 2}"] and placed["p/0"] == [(None, b"4", ())]

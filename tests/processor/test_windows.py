"""The pure window planning and exactly-once bookkeeping (fluvial.processor.windows)."""

from __future__ import annotations

import json

import pytest

from fluvial.client.partitioner import key_hash
from fluvial.processor.windows import (FENCE_KEY, FENCED, OWNED, STATE_KEY, ProcessorState, StateLog, Window,
                                       assign_outputs, fence_value)

ORDER = ["a/0", "a/1", "b/0"]


def test_count_windows_take_records_in_input_order_and_wait_for_enough():
    s = ProcessorState(7)
    assert s.plan_count({"a/0": 2}, 3, 100, ORDER) is None
    w = s.plan_count({"a/0": 2, "a/1": 0, "b/0": 5}, 3, 100, ORDER)
    assert w == Window(0, {"a/0": (0, 2), "b/0": (0, 1)}, 100)
    s = s.planned([w]).committed(w, {"out/0": 2})
    assert s.next == {"a/0": 2, "b/0": 1} and s.seq == {"out/0": 2} and s.windows_done == 1
    w2 = s.plan_count({"a/0": 2, "b/0": 5}, 3, 200, ORDER)
    assert w2 == Window(1, {"b/0": (1, 4)}, 200)


def test_time_windows_take_everything_up_to_the_watermarks_and_skip_empty_ones():
    s = ProcessorState(1, next={"a/0": 4})
    assert s.plan_time({"a/0": 4, "b/0": 0}, 5, ORDER) is None
    assert s.plan_time({"a/0": 6, "b/0": 1}, 5, ORDER) == Window(0, {"a/0": (4, 6), "b/0": (0, 1)}, 5)


def test_the_snapshot_round_trips_with_its_pending_window():
    w = Window(3, {"a/0": (1, 9)}, 42)
    s = ProcessorState(5, {"a/0": 1}, {"o/1": 8}, 3, (w,), epoch=4)
    assert ProcessorState.from_json(s.to_json()) == s
    assert s.next_index == 3 and ProcessorState().next_index == 0
    old = {"producer_id": 5, "next": {"a/0": 1}, "seq": {"o/1": 8}, "windows_done": 3, "pending": w.to_json()}
    assert ProcessorState.from_json(old) == ProcessorState(5, {"a/0": 1}, {"o/1": 8}, 3, (w,))  # one window, no epoch
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


def test_a_run_plans_every_complete_count_window_within_its_limit():
    s = ProcessorState(7, next={"a/0": 1})
    run = s.plan_counts({"a/0": 8, "b/0": 2}, 2, 100, ORDER)
    assert [w.ranges for w in run] == [{"a/0": (1, 3)}, {"a/0": (3, 5)}, {"a/0": (5, 7)}, {"a/0": (7, 8), "b/0": (0, 1)}]
    assert [w.index for w in run] == [0, 1, 2, 3] and run[0] == s.plan_count({"a/0": 8, "b/0": 2}, 2, 100, ORDER)
    assert s.plan_counts({"a/0": 8, "b/0": 2}, 2, 100, ORDER, max_records=5) == run[:2]
    assert s.plan_counts({"a/0": 8}, 20, 100, ORDER, max_records=5) == ()
    assert len(s.plan_counts({"a/0": 100}, 20, 100, ORDER, max_records=5)) == 1  # one window at least
    # committing the run window by window leaves the rest pending and moves the sequences
    p = s.planned(run).committed(run[0], {"o/0": 3})
    assert p.pending == run[1:] and p.next_index == 1 and p.seq == {"o/0": 3}
    p = p.committed(run[1], {}).committed(run[2], {}).committed(run[3], {"o/0": 1})
    assert p.pending == () and p.windows_done == 4 and p.next == {"a/0": 8, "b/0": 1} and p.seq == {"o/0": 4}


def _snapshot(**kw):
    return STATE_KEY, json.dumps(ProcessorState(9, **kw).to_json()).encode()


def test_the_state_log_gives_the_first_fence_of_an_epoch_the_processor():
    log = StateLog()
    log.feed(*_snapshot(windows_done=3, epoch=2))
    assert log.epoch == 2 and log.state.windows_done == 3
    log.claim(3, "a")
    log.feed(FENCE_KEY, fence_value(3, "a", 11, "h1"))
    assert log.verdict == OWNED
    log.feed(*_snapshot(windows_done=4, epoch=3))  # its own snapshots
    log.feed(FENCE_KEY, fence_value(3, "b", 12, "h2"))  # lost the race for epoch 3
    assert log.verdict == OWNED
    log.feed(FENCE_KEY, fence_value(4, "c", 13, "h3"))
    assert log.verdict == FENCED and log.owner["pid"] == 13 and log.epoch == 4

    loser = StateLog()
    loser.claim(3, "b")
    loser.feed(FENCE_KEY, fence_value(3, "a", 11, "h1"))
    loser.feed(FENCE_KEY, fence_value(3, "b", 12, "h2"))
    assert loser.verdict == FENCED and loser.owner["host"] == "h1"
    newer = StateLog()
    newer.claim(3, "a")
    newer.feed(FENCE_KEY, fence_value(5, "z", 1, "h"))
    assert newer.verdict == FENCED
    with pytest.raises(ValueError, match="malformed processor fence"):
        StateLog().feed(FENCE_KEY, b"{}")
    with pytest.raises(ValueError, match="malformed processor state"):
        StateLog().feed(STATE_KEY, b"{")

"""The SC's cost grows with the change, not with the cluster (issue 19): status-only reports
push nothing to the SPUs, a failed SPU's partitions are all re-elected and saved in one step,
and a change writes only the changed objects."""

from __future__ import annotations

import doctest

from fluvial.protocol import sc_objects as so
from fluvial.sc import controller as ctl
from fluvial.sc import pushes
from fluvial.sc.backend import JOURNAL
from sc.test_controller import assignment, new_state, register, report, restarted


def test_the_docstring_examples_hold():
    assert doctest.testmod(pushes).failed == 0


def many(tmp_path, partitions=300):
    state = new_state(tmp_path)
    for s in (1, 2, 3):
        register(state, s)
    state.handle(ctl.TopicCreated("many", so.TopicSpec.computed(partitions, 3)))
    return state


def test_only_assignment_changes_are_pushed(tmp_path):
    state = many(tmp_path, 30)
    a = assignment(state, 1, "many", 0)
    leader = a.leader
    a = assignment(state, leader, "many", 0)
    state.handle(ctl.SpuReported(report(leader, a, leo=3)))
    epoch = state.assignment_epoch
    state.handle(ctl.SpuReported(report(leader, a, leo=4)))  # a status change only
    assert state.assignment_epoch == epoch
    follower = next(s for s in a.replicas if s != leader)
    state.handle(ctl.SpuReported(report(leader, a, leo=5, isr=[leader])))  # the ISR shrinks
    assert state.assignment_epoch == epoch + 1
    assert follower not in assignment(state, leader, "many", 0).isr


def test_a_failed_spu_is_replaced_everywhere_in_one_saved_step(tmp_path):
    state = many(tmp_path)
    assert any(p.spec.leader == 1 for p in state.partitions.values())
    saves = state.backend.saves
    state.handle(ctl.SpuFailed(1))
    assert state.backend.saves == saves + 1
    again = [p for p in restarted(state).partitions.values() if p.name.startswith("many-")]
    assert len(again) == 300
    for p in again:  # every leadership moved, every ISR without 1, as saved
        assert p.spec.leader != 1 and 1 not in p.meta.isr, p.name


def test_an_isr_change_journals_one_partition_not_all(tmp_path):
    state = many(tmp_path)
    journal = state.backend.dir / JOURNAL
    before = journal.stat().st_size
    a = assignment(state, 1, "many", 0)
    leader = a.leader
    a = assignment(state, leader, "many", 0)
    state.handle(ctl.SpuReported(report(leader, a, leo=1, isr=[leader])))
    grew = journal.stat().st_size - before
    assert 0 < grew < 2000  # one partition's record, not 300
    assert restarted(state).partitions.get("many-0").meta.isr == (leader,)

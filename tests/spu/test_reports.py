"""Delta status reports (fluvial.spu.reports): only changed replicas, the full state when the SC
may have missed something."""

from __future__ import annotations

import doctest

from fluvial.protocol import internal_api as ia
from fluvial.spu import reports
from fluvial.spu.reports import ReportDeltas


def rep(partition, leo=0, epoch=1, isr=(1,), error=None):
    return ia.ReplicaReport("t", partition, epoch, True, leo, leo, 0, 0, list(isr), [], error, 0)


def test_the_docstring_examples_hold():
    assert doctest.testmod(reports).failed == 0


def test_every_changed_field_puts_a_replica_in_the_delta():
    d = ReportDeltas()
    base = [rep(p) for p in range(100)]
    assert d.delta(base) == base
    d.acknowledged(base)
    changed = list(base)
    changed[3] = rep(3, leo=7)
    changed[40] = rep(40, epoch=2)
    changed[41] = rep(41, isr=(1, 2))
    changed[99] = rep(99, error="flush failed")
    assert [r.partition for r in d.delta(changed)] == [3, 40, 41, 99]
    assert d.delta(base + [rep(100)]) == [rep(100)]  # a new replica


def test_what_the_sc_did_not_acknowledge_is_sent_again():
    d = ReportDeltas()
    d.acknowledged([rep(0), rep(1)])
    moved = [rep(0, leo=5), rep(1)]
    assert d.delta(moved) == [rep(0, leo=5)]
    # the SC refused (or the answer was lost): no acknowledgement, the same delta again
    assert d.delta(moved) == [rep(0, leo=5)]
    d.reset()
    assert d.delta(moved) == moved


def test_a_replica_that_goes_and_comes_back_is_reported_again():
    d = ReportDeltas()
    d.acknowledged([rep(0), rep(1)])
    assert d.delta([rep(1)]) == []  # partition 0 dropped (topic deleted)
    assert d.delta([rep(0), rep(1)]) == [rep(0)]  # re-created: reported though it looks the same

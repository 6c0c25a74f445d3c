"""SC decisions without sockets: leader epochs, topic incarnations, ISR versions, failed saves,
error reports and the consumer-offset topic's replication (fluvial.sc.controller's events applied
by an ScState whose metadata lives in a temp dir, with a backend that can be told to fail)."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_objects as so
from fluvial.sc import controller as ctl
from fluvial.sc.backend import FileBackend
from fluvial.sc.cluster import Draft
from fluvial.sc.state import MetadataSaveError, ScState, SpuLink


class FlakyBackend(FileBackend):
    """A FileBackend whose saves fail (as on a full disk) while ``fail`` is set."""

    def __init__(self, directory):
        super().__init__(directory)
        self.fail = False
        self.saves = 0

    def save(self, batch, changed=None):
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.saves += 1
        super().save(batch, changed)


def new_state(tmp_path) -> ScState:
    state = ScState(FlakyBackend(tmp_path / "metadata"))
    state.load()
    return state


def restarted(state: ScState) -> ScState:
    """What a new SC process loads from the same metadata dir."""
    new = ScState(FlakyBackend(state.backend.dir))
    new.load()
    return new


def register(state: ScState, spu_id: int) -> None:
    err = state.handle(ctl.SpuRegistered(ia.RegisterSpuRequest(spu_id, "127.0.0.1", 9000 + spu_id,
                                                               "127.0.0.1", 9100 + spu_id), True))
    assert err.ok


def apply_rule(state: ScState, rule, *args):
    """Run one of the controller's rules on a draft of ``state`` and apply what it decided."""
    draft = Draft(state)
    answer = rule(draft, *args)
    state.apply(draft.decision())
    return answer


def assignment(state: ScState, spu_id: int, topic: str, partition: int = 0) -> ia.ReplicaAssignment:
    push = ctl.assignments_for(state, spu_id)
    return next(a for a in push.replicas if (a.topic, a.partition) == (topic, partition))


def report(spu_id: int, a: ia.ReplicaAssignment, *, isr=None, isr_version=None, leo=0,
           error=None, topic=None) -> ia.ReportReplicasRequest:
    """The report of a leader that has applied assignment ``a``."""
    return ia.ReportReplicasRequest(spu_id, [ia.ReplicaReport(
        topic or a.topic, a.partition, a.leader_epoch, a.leader == spu_id, leo, leo, 0, 0,
        list(a.isr if isr is None else isr), [], error,
        a.isr_version if isr_version is None else isr_version)])


def with_topic(tmp_path, spus=(1, 2), rf=2, name="t") -> ScState:
    """SPUs ``spus`` and topic ``name``: one partition on the first ``rf`` of them, led by the
    first."""
    state = new_state(tmp_path)
    for s in spus:
        register(state, s)
    spec = so.TopicSpec(so.AssignedReplicas([so.PartitionMap(0, list(spus[:rf]))]))
    state.handle(ctl.TopicCreated(name, spec))
    return state


def saved_partition(state: ScState, name: str):
    return next(o for o in restarted(state).partitions.values() if o.name == name)


# ------------------------------------------------------------------------ item 1: epochs


def test_a_leader_registering_again_before_its_timeout_gets_a_new_saved_epoch(tmp_path):
    state = with_topic(tmp_path)
    before = assignment(state, 1, "t")
    assert before.leader == 1
    register(state, 1)  # restarted and back before the SC noticed: same leader, new epoch
    after = assignment(state, 1, "t")
    assert after.leader == 1 and after.leader_epoch == before.leader_epoch + 1
    assert assignment(state, 2, "t").leader_epoch == after.leader_epoch
    assert saved_partition(state, "t-0").meta.epoch == after.leader_epoch  # saved before pushed


def test_a_follower_registering_again_keeps_the_epoch(tmp_path):
    state = with_topic(tmp_path)
    before = assignment(state, 1, "t").leader_epoch
    register(state, 2)
    assert assignment(state, 1, "t").leader_epoch == before


def test_a_leader_back_from_offline_never_reuses_its_epoch(tmp_path):
    # the reproduction at the SC: follower down, leader down, leader back
    state = with_topic(tmp_path)
    first = assignment(state, 1, "t").leader_epoch
    state.handle(ctl.SpuFailed(2))
    state.handle(ctl.SpuFailed(1))
    assert state.partitions.get("t-0").status.resolution == so.PartitionResolution.LeaderOffline
    register(state, 1)
    a = assignment(state, 1, "t")
    assert a.leader == 1 and a.leader_epoch > first


def test_a_leader_back_after_an_sc_restart_gets_a_new_epoch(tmp_path):
    state = with_topic(tmp_path)
    first = assignment(state, 1, "t").leader_epoch
    state = restarted(state)
    state.handle(ctl.ScStarted())  # what serve_sc does at start
    register(state, 1)
    assert assignment(state, 1, "t").leader_epoch == first + 1
    assert saved_partition(state, "t-0").meta.epoch == first + 1


def test_elect_bumps_the_epoch_when_it_re_chooses_a_leader_that_was_offline(tmp_path):
    state = with_topic(tmp_path, spus=(1,), rf=1)
    state.handle(ctl.SpuFailed(1))
    p = state.partitions.get("t-0")
    assert p.status.resolution == so.PartitionResolution.LeaderOffline and p.spec.leader == 1
    epoch = p.meta.epoch
    assert apply_rule(state, ctl.elect, p, {1})
    p = state.partitions.get("t-0")
    assert p.spec.leader == 1 and p.meta.epoch == epoch + 1


def test_epochs_only_grow_and_each_has_one_leader_across_failures_and_restarts(tmp_path):
    state = with_topic(tmp_path, spus=(1, 2, 3), rf=3)
    leader_of_epoch = {}
    epochs = []
    for spu in (1, 2, 3, 1, 2, 3):
        state.handle(ctl.SpuFailed(spu))
        register(state, spu)
        state = restarted(state)
        p = state.partitions.get("t-0")
        assert leader_of_epoch.setdefault(p.meta.epoch, p.spec.leader) == p.spec.leader
        epochs.append(p.meta.epoch)
    assert epochs == sorted(epochs) and len(leader_of_epoch) >= 4


# ------------------------------------------------------------------- item 3: incarnations


def test_every_topic_creation_gets_a_new_persisted_incarnation(tmp_path):
    state = with_topic(tmp_path)
    first = assignment(state, 1, "t").topic_id
    assert first != 0
    assert restarted(state).topics.get("t").meta.topic_id == first
    state.handle(ctl.TopicDeleted("t"))
    state.handle(ctl.TopicCreated("t", so.TopicSpec.computed(1, 2)))
    second = assignment(state, 2, "t").topic_id
    assert second not in (0, first)
    state = restarted(state)
    assert assignment(state, 1, "t").topic_id == second
    assert state.partitions.get("t-0").meta.topic_id == second


def test_added_partitions_carry_the_topic_incarnation(tmp_path):
    state = new_state(tmp_path)
    register(state, 1)
    state.handle(ctl.TopicCreated("t", so.TopicSpec.computed(1, 1)))
    state.handle(ctl.PartitionsAdded("t", 1))
    assert assignment(state, 1, "t", 1).topic_id == assignment(state, 1, "t", 0).topic_id


# ------------------------------------------------------------------------ item 9: the ISR


def test_removing_a_failed_follower_bumps_the_isr_version(tmp_path):
    state = with_topic(tmp_path)
    before = assignment(state, 1, "t")
    state.handle(ctl.SpuFailed(2))
    after = assignment(state, 1, "t")
    assert after.isr == [1] and after.isr_version == before.isr_version + 1


def test_a_stale_isr_report_never_re_adds_a_removed_spu(tmp_path):
    state = with_topic(tmp_path)
    stale = assignment(state, 1, "t")  # ISR [1, 2] as the leader last heard it
    state.handle(ctl.SpuFailed(2))
    state.handle(ctl.SpuReported(report(1, stale)))  # sent before the leader saw the removal
    assert state.partitions.get("t-0").meta.isr == (1,)
    assert assignment(state, 1, "t").isr == [1]


def test_a_current_isr_report_is_applied_and_versioned(tmp_path):
    state = with_topic(tmp_path)
    a = assignment(state, 1, "t")
    state.handle(ctl.SpuReported(report(1, a, isr=[1])))
    b = assignment(state, 1, "t")
    assert b.isr == [1] and b.isr_version == a.isr_version + 1
    assert saved_partition(state, "t-0").meta.isr == (1,)
    state.handle(ctl.SpuReported(report(1, b, isr=[1, 2])))
    c = assignment(state, 1, "t")
    assert c.isr == [1, 2] and c.isr_version == b.isr_version + 1


def test_a_bad_report_changes_nothing_and_does_not_raise(tmp_path):
    state = with_topic(tmp_path)
    a = assignment(state, 1, "t")
    epoch = state.partitions.epoch
    state.handle(ctl.SpuReported(report(1, a, topic="nope")))
    state.handle(ctl.SpuReported(report(3, a)))  # an SPU that is no replica of t-0
    state.handle(ctl.SpuReported(ia.ReportReplicasRequest(1, [ia.ReplicaReport(
        "t", 0, a.leader_epoch, True, 5, 5, 0, 0, [1, 2, 99], [2, 5, 7], None, a.isr_version)])))
    assert state.partitions.get("t-0").meta.isr == (1, 2)
    assert state.partitions.epoch > epoch  # the good part of the last report was applied
    assert 99 not in state.leos.get("t-0", {}) and 3 not in state.leos.get("t-0", {})


# ------------------------------------------------------------------- item 9: failed saves


def test_a_failed_create_leaves_memory_unchanged_and_wakes_no_one(tmp_path):
    state = new_state(tmp_path)
    register(state, 1)
    link = SpuLink(1, 0.0)
    state.links[1] = link
    topics_epoch = state.topics.epoch
    state.backend.fail = True
    with pytest.raises(MetadataSaveError, match="No space left"):
        state.handle(ctl.TopicCreated("t", so.TopicSpec.computed(1, 1)))
    assert "t" not in state.topics and "t-0" not in state.partitions
    assert not link.assignments_changed.is_set()
    assert state.topics.changes_since(topics_epoch).updates == []
    assert all(a.topic != "t" for a in ctl.assignments_for(state, 1).replicas)
    state.backend.fail = False
    state.handle(ctl.TopicCreated("t", so.TopicSpec.computed(1, 1)))
    assert link.assignments_changed.is_set() and "t-0" in state.partitions


def test_a_failed_delete_keeps_the_topic(tmp_path):
    state = with_topic(tmp_path)
    state.backend.fail = True
    with pytest.raises(MetadataSaveError):
        state.handle(ctl.TopicDeleted("t"))
    assert "t" in state.topics and "t-0" in state.partitions
    assert state.topics.changes_since(state.topics.epoch - 1).deletes == []


def test_a_failed_save_of_an_election_is_not_pushed_and_is_retried(tmp_path):
    state = with_topic(tmp_path)
    before = assignment(state, 2, "t")
    state.backend.fail = True
    with pytest.raises(MetadataSaveError):
        state.handle(ctl.SpuFailed(1))
    assert assignment(state, 2, "t") == before
    assert [o.spec.id for o in state.online_spus()] == [1, 2]
    state.fail_spu(1)  # what the failure detector calls: it does not raise
    assert state.failed_spus == {1}
    state.backend.fail = False
    state.check_failures(0.0, 10.0)  # a failure detector tick
    assert state.failed_spus == set()
    a = assignment(state, 2, "t")
    assert a.leader == 2 and a.leader_epoch == before.leader_epoch + 1


def test_a_failed_save_of_a_registration_or_report_changes_nothing(tmp_path):
    state = with_topic(tmp_path)
    a = assignment(state, 1, "t")
    state.backend.fail = True
    with pytest.raises(MetadataSaveError):
        register(state, 1)
    with pytest.raises(MetadataSaveError):
        state.handle(ctl.SpuReported(report(1, a, isr=[1])))
    assert assignment(state, 1, "t") == a


def test_status_only_reports_are_not_saved(tmp_path):
    state = with_topic(tmp_path)
    a = assignment(state, 1, "t")
    state.handle(ctl.SpuReported(report(1, a, leo=3)))  # Offline -> Online: saved
    saves = state.backend.saves
    state.handle(ctl.SpuReported(report(1, a, leo=4)))
    assert state.backend.saves == saves
    assert state.partitions.get("t-0").status.leader.leo == 4


# -------------------------------------------------------------- item 2/6: a failing leader


def test_a_leader_reporting_an_error_is_replaced_by_an_in_sync_replica(tmp_path):
    state = with_topic(tmp_path)
    a = assignment(state, 1, "t")
    state.handle(ctl.SpuReported(report(1, a, error="corrupt batch at 1234")))
    b = assignment(state, 2, "t")
    assert b.leader == 2 and b.leader_epoch == a.leader_epoch + 1
    assert b.isr == [2] and b.isr_version > a.isr_version


def test_a_failing_leader_stays_when_no_in_sync_replica_is_live(tmp_path):
    state = with_topic(tmp_path)
    state.handle(ctl.SpuFailed(2))
    a = assignment(state, 1, "t")
    state.handle(ctl.SpuReported(report(1, a, error="disk full")))
    b = assignment(state, 1, "t")
    assert (b.leader, b.leader_epoch, b.isr) == (1, a.leader_epoch, [1])
    assert state.partitions.get("t-0").status.resolution == so.PartitionResolution.OutOfStorage


# ------------------------------------------------------------ item 10: the offsets topic


def offsets_replicas(state: ScState) -> list[int]:
    return list(state.partitions.get(f"{so.CONSUMER_OFFSET_TOPIC}-0").spec.replicas)


def test_the_consumer_offset_topic_grows_to_three_replicas(tmp_path):
    state = new_state(tmp_path)
    register(state, 1)
    assert offsets_replicas(state) == [1]
    epoch = state.partitions.get(f"{so.CONSUMER_OFFSET_TOPIC}-0").meta.epoch
    register(state, 2)
    assert offsets_replicas(state) == [1, 2]
    p = state.partitions.get(f"{so.CONSUMER_OFFSET_TOPIC}-0")
    assert p.spec.leader == 1 and p.meta.epoch == epoch + 1 and p.meta.isr == (1,)
    register(state, 3)
    register(state, 4)
    assert offsets_replicas(state) == [1, 2, 3]
    t = state.topics.get(so.CONSUMER_OFFSET_TOPIC)
    assert t.spec.replicas.replication_factor == 3 and t.status.replica_map == {0: [1, 2, 3]}
    assert t.meta.min_isr == ctl.default_min_isr(3)
    assert t.meta.cleanup_policy == "compact"  # the latest offset per consumer, like __consumer_offsets
    assert assignment(state, 3, so.CONSUMER_OFFSET_TOPIC).replicas == [1, 2, 3]
    assert assignment(state, 3, so.CONSUMER_OFFSET_TOPIC).settings.cleanup_policy == 1
    assert restarted(state).partitions.get(f"{so.CONSUMER_OFFSET_TOPIC}-0").spec.replicas == [1, 2, 3]


def test_the_consumer_offset_topic_is_created_with_the_live_spus(tmp_path):
    state = new_state(tmp_path)
    for s in (1, 2, 3, 4):
        register(state, s)
    with state.transaction():
        state.topics.delete(so.CONSUMER_OFFSET_TOPIC)
        state.partitions.delete(f"{so.CONSUMER_OFFSET_TOPIC}-0")
    apply_rule(state, ctl.ensure_system_topics)
    assert len(offsets_replicas(state)) == 3


def test_a_consumer_offset_topic_from_before_compaction_is_switched_to_compact(tmp_path):
    state = new_state(tmp_path)
    register(state, 1)
    t = state.topics.get(so.CONSUMER_OFFSET_TOPIC)
    with state.transaction():
        state.topics.update(t.name, meta=replace(t.meta, cleanup_policy="delete"))
    apply_rule(state, ctl.ensure_system_topics)
    assert state.topics.get(so.CONSUMER_OFFSET_TOPIC).meta.cleanup_policy == "compact"
    assert restarted(state).topics.get(so.CONSUMER_OFFSET_TOPIC).meta.cleanup_policy == "compact"


# ------------------------------------------------------------------------- item 11: lease


def test_the_leader_lease_ends_before_the_failure_detector_fires():
    assert ctl.leader_lease_ms(10.0) == 8000
    assert 0 < ctl.leader_lease_ms(0.5) < 500

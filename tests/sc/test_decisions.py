"""The SC controller as a pure state machine: an event in, a Decision out, the cluster untouched
(fluvial.sc.controller.decide on a plain fluvial.sc.cluster.Cluster: no trio, no disk)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fluvial.errors import ErrorCode
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_objects as so
from fluvial.sc import controller as ctl
from fluvial.sc.cluster import Cluster, Decision, Draft


def commit(cluster: Cluster, decision: Decision) -> Decision:
    """Apply ``decision``'s store changes, LEOs and SPU marks the way fluvial.sc.state does once
    it saved them."""
    for label, writes in decision.writes.items():
        for name, (obj, durable) in writes.items():
            cluster.stores[label].write(name, obj, durable)
    cluster.leos.update(decision.leos)
    cluster.pending_spus |= decision.awaited
    cluster.pending_spus -= decision.settled
    cluster.failed_spus -= decision.settled
    return decision


def registered(spu_id: int) -> ctl.SpuRegistered:
    return ctl.SpuRegistered(ia.RegisterSpuRequest(spu_id, "127.0.0.1", 9000 + spu_id,
                                                   "127.0.0.1", 9100 + spu_id), True)


def cluster_with_topic(spus=(1, 2)) -> Cluster:
    """SPUs ``spus`` online and topic ``t``: one partition on all of them, led by the first."""
    cluster = Cluster()
    for s in spus:
        commit(cluster, ctl.decide(cluster, registered(s)))
    spec = so.TopicSpec(so.AssignedReplicas([so.PartitionMap(0, list(spus))]))
    commit(cluster, ctl.decide(cluster, ctl.TopicCreated("t", spec)))
    return cluster


def snapshot(cluster: Cluster):
    return ({label: dict(store.objects) for label, store in cluster.stores.items()},
            {p: dict(leos) for p, leos in cluster.leos.items()},
            set(cluster.pending_spus), set(cluster.failed_spus))


def written(decision: Decision, label: str, name: str):
    """The object ``decision`` writes as ``name`` (None: deleted) and whether it must be saved."""
    return decision.writes[label][name]


def test_a_decision_leaves_the_cluster_as_it_is():
    cluster = cluster_with_topic()
    before = snapshot(cluster)
    a = next(a for a in ctl.assignments_for(cluster, 1).replicas if a.topic == "t")
    for event in (registered(1), ctl.SpuFailed(2), ctl.TopicDeleted("t"), ctl.ScStarted(),
                  ctl.SpuReported(ia.ReportReplicasRequest(1, [ia.ReplicaReport(
                      "t", 0, a.leader_epoch, True, 7, 7, 0, 0, [1], [], None, a.isr_version)]))):
        assert ctl.decide(cluster, event).writes
        assert snapshot(cluster) == before


def test_a_registering_leader_is_written_online_with_a_new_durable_epoch():
    cluster = cluster_with_topic()
    epoch = cluster.partitions.get("t-0").meta.epoch
    d = ctl.decide(cluster, registered(1))
    assert d.answer.ok and d.settled == {1} and not d.failed_if_unsaved
    spu, durable = written(d, "SPU", "custom-spu-1")
    assert spu.status.resolution == so.SpuStatusResolution.Online and durable
    p, durable = written(d, "Partition", "t-0")
    assert p.meta.epoch == epoch + 1 and durable


def test_a_draft_sees_its_own_writes():
    # the first SPU registers and, in the same decision, gets the consumer-offset topic
    d = ctl.decide(Cluster(), registered(1))
    offsets, durable = written(d, "Partition", f"{so.CONSUMER_OFFSET_TOPIC}-0")
    assert offsets.spec.replicas == [1] and durable
    assert f"{so.CONSUMER_OFFSET_TOPIC}" in d.writes["Topic"]


def test_a_draft_store_reads_its_writes_and_saves_an_object_any_durable_write_touched():
    cluster = cluster_with_topic()
    draft = Draft(cluster)
    p = cluster.partitions.get("t-0")
    draft.partitions.update("t-0", meta=p.meta.next_epoch())
    assert draft.partitions.get("t-0").meta.epoch == p.meta.epoch + 1
    assert [o.meta.epoch for o in draft.partitions.values() if o.name == "t-0"] == [p.meta.epoch + 1]
    draft.partitions.update_status("t-0", replace(p.status, size=9), durable=False)
    obj, durable = draft.decision().writes["Partition"]["t-0"]
    assert (obj.meta.epoch, obj.status.size, durable) == (p.meta.epoch + 1, 9, True)
    assert cluster.partitions.get("t-0") == p


def test_an_isr_change_in_a_report_is_saved_with_the_new_offsets():
    cluster = cluster_with_topic()
    a = next(a for a in ctl.assignments_for(cluster, 1).replicas if a.topic == "t")
    commit(cluster, ctl.decide(cluster, ctl.SpuReported(ia.ReportReplicasRequest(1, [ia.ReplicaReport(
        "t", 0, a.leader_epoch, True, 1, 1, 0, 0, list(a.isr), [], None, a.isr_version)]))))
    d = ctl.decide(cluster, ctl.SpuReported(ia.ReportReplicasRequest(1, [ia.ReplicaReport(
        "t", 0, a.leader_epoch, True, 2, 2, 0, 0, [1], [], None, a.isr_version)])))
    p, durable = written(d, "Partition", "t-0")
    assert p.meta.isr == (1,) and p.status.leader.leo == 2 and durable


def test_an_unknown_spu_is_refused_without_writes_when_auto_registration_is_off():
    d = ctl.decide(Cluster(), ctl.SpuRegistered(registered(1).request, False))
    assert d.answer.code == ErrorCode.SpuRegisterationFailed
    assert d.writes == {} and d.settled == set()


def test_a_failed_follower_leaves_the_isr_and_is_retried_if_unsaved():
    cluster = cluster_with_topic()
    version = cluster.partitions.get("t-0").meta.isr_version
    d = ctl.decide(cluster, ctl.SpuFailed(2))
    p, durable = written(d, "Partition", "t-0")
    assert p.meta.isr == (1,) and p.meta.isr_version == version + 1 and durable
    assert d.failed_if_unsaved == {2} and d.settled == {2}


def test_a_status_only_report_is_written_but_not_saved_and_its_leos_are_recorded():
    cluster = cluster_with_topic()
    a = next(a for a in ctl.assignments_for(cluster, 1).replicas if a.topic == "t")

    def report(leo):
        return ctl.SpuReported(ia.ReportReplicasRequest(1, [ia.ReplicaReport(
            "t", 0, a.leader_epoch, True, leo, leo, 0, 0, list(a.isr), [2, leo], None, a.isr_version)]))

    commit(cluster, ctl.decide(cluster, report(3)))  # Offline -> Online
    d = ctl.decide(cluster, report(4))
    p, durable = written(d, "Partition", "t-0")
    assert p.status.leader.leo == 4 and not durable
    assert d.leos == {"t-0": {1: 4, 2: 4}} and cluster.leos["t-0"] == {1: 3, 2: 3}


def test_the_sc_start_writes_every_spu_offline_and_awaits_it():
    cluster = cluster_with_topic()
    d = ctl.decide(cluster, ctl.ScStarted())
    assert d.awaited == {1, 2}
    assert all(o.status.resolution == so.SpuStatusResolution.Offline and durable
               for o, durable in d.writes["SPU"].values())
    commit(cluster, d)
    assert cluster.pending_spus == {1, 2}
    # an awaited leader gets its grace period: another SPU's registration elects nothing
    commit(cluster, ctl.decide(cluster, registered(2)))
    p = cluster.partitions.get("t-0")
    assert p.spec.leader == 1 and p.status.resolution != so.PartitionResolution.ElectionLeaderFound


def test_a_topic_creation_writes_the_topic_and_its_partitions_and_answers_their_names():
    cluster = cluster_with_topic()
    d = ctl.decide(cluster, ctl.TopicCreated("u", so.TopicSpec.computed(2, 2)))
    assert d.answer == ["u-0", "u-1"]
    assert set(d.writes["Partition"]) == {"u-0", "u-1"} and "u" in d.writes["Topic"]
    topic_id = d.writes["Topic"]["u"][0].meta.topic_id
    assert all(p.meta.topic_id == topic_id for p, _ in d.writes["Partition"].values())


def test_a_refused_creation_raises_and_writes_nothing():
    cluster = cluster_with_topic()
    with pytest.raises(ctl.CreateError) as e:
        ctl.decide(cluster, ctl.TopicCreated("u", so.TopicSpec.computed(1, 5)))
    assert e.value.error.code == ErrorCode.TopicError


def test_a_topic_deletion_deletes_its_partitions():
    d = ctl.decide(cluster_with_topic(), ctl.TopicDeleted("t"))
    assert written(d, "Topic", "t") == (None, True)
    assert written(d, "Partition", "t-0") == (None, True)


def test_a_custom_spu_is_listed_as_an_offline_spu_and_leaves_with_it():
    cluster = Cluster()
    spec = so.CustomSpuSpec(5, so.IngressPort(), so.Endpoint(), None, None)
    d = commit(cluster, ctl.decide(cluster, ctl.ObjectCreated("CustomSpu", "c5", spec)))
    assert d.answer == ("CustomSpu", "SPU")
    assert cluster.spus.get("c5").status.resolution == so.SpuStatusResolution.Offline
    d = ctl.decide(cluster, ctl.ObjectDeleted("CustomSpu", "c5"))
    assert d.answer == ("CustomSpu", "SPU") and written(d, "SPU", "c5") == (None, True)


# ---------------------------------------------------------------------- the failure detector


def test_a_silent_spu_is_disconnected_and_failed():
    cluster = cluster_with_topic()
    due = ctl.due_failures(cluster, {1: 100.0, 2: 95.0}, now=106.0, started_at=0.0, timeout=10.0)
    assert due.disconnect == (2,) and due.fail == (2,) and not due.stop_waiting


def test_an_unsaved_failure_is_retried_unless_the_spu_is_back():
    cluster = cluster_with_topic()
    cluster.failed_spus |= {1, 2}
    due = ctl.due_failures(cluster, {1: 100.0}, now=101.0, started_at=0.0, timeout=10.0)
    assert due.fail == (2,) and due.forget == {1} and due.disconnect == ()


def test_awaited_spus_fail_once_the_grace_period_is_over():
    cluster = cluster_with_topic(spus=(1, 2, 3))
    cluster.pending_spus |= {2, 3}
    early = ctl.due_failures(cluster, {1: 5.0}, now=5.0, started_at=0.0, timeout=10.0)
    assert early.fail == () and not early.stop_waiting
    late = ctl.due_failures(cluster, {1: 11.0, 3: 11.0}, now=11.0, started_at=0.0, timeout=10.0)
    assert late.fail == (2,) and late.stop_waiting

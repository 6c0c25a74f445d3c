"""The SC's decisions as a pure state machine: an event in, the changes it makes out.

``decide(cluster, event)`` takes the SC's view of the cluster (fluvial.sc.cluster) and an event
(an SPU registered, reported, failed; a topic created, deleted, updated; the SC started; ...) and
returns a ``Decision``: the store changes to save, what SPUs reported, which SPUs are awaited or
settled, and the answer for the caller. It touches nothing: every rule writes to a ``Draft``, and
fluvial.sc.state applies the decision as one transaction (saved before anyone hears of it, undone
if it cannot be saved), which wakes the watchers and pushes the new assignments to the SPUs. No
trio, no I/O here. The placement and election maths live in fluvial.metadata.placement and
fluvial.replication; the per-partition replication record and its rules (every leadership a new
epoch, every ISR change a new version) in fluvial.metadata.replication.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fluvial.errors import Error, ErrorCode
from fluvial.metadata.placement import PlacementError, SpuInfo, place_replicas
from fluvial.metadata.replication import PartitionReplication, TopicReplication, new_topic_id
from fluvial.protocol import internal_api as ia
from fluvial.protocol.internal_api import CLEANUP_POLICIES
from fluvial.protocol.content_type import validate_content_type
from fluvial.protocol import sc_objects as so
from fluvial.protocol.sc_objects import CONSUMER_OFFSET_TOPIC
from fluvial.replication.election import ElectionResult, elect_leader
from fluvial.sc.cluster import Cluster, Decision, Draft

log = logging.getLogger("fluvial.sc")

OFFSETS_REPLICATION_FACTOR = 3  # Kafka's offsets.topic.replication.factor
DEFAULT_MAX_PARTITION_BYTES = 100 * 1024**3


class CreateError(Exception):
    def __init__(self, error: Error, message: str | None = None):
        super().__init__(message or error.message)
        self.error, self.message = error, message


def consumer_offset_topic_spec(replication_factor: int = 1) -> so.TopicSpec:
    """The system topic the real SC keeps (one partition, 7 days, 512 MB segments, 2 GB max),
    with ``replication_factor`` replicas (``ensure_system_topics``)."""
    return so.TopicSpec(
        so.ComputedReplicas(1, replication_factor, False), so.SegmentBasedPolicy(604800),
        so.TopicStorageConfig(512000000, 2048000000), so.CompressionAlgorithm.Any, None, True)


def default_min_isr(replication_factor: int) -> int:
    return 2 if replication_factor >= 3 else 1


def leader_lease_ms(heartbeat_timeout_seconds: float) -> int:
    """The leader lease the SC grants in ``RegisterSpuResponse.lease_ms``: 0.8 of its heartbeat
    timeout. The SPU's lease runs from when it *sent* a report the SC answered; the SC's failure
    detector counts from when it last *heard* from the SPU, which is later. So a leader cut off
    from the SC stops acknowledging at least 0.2 of the timeout before the SC fails it and elects
    another leader; the margin absorbs scheduling delays and clock rate differences."""
    return int(heartbeat_timeout_seconds * 800)


View = Cluster | Draft  # what a rule reads: the cluster, or a decision in progress over it


def _topic_of(partition_name: str) -> str:
    return partition_name.rpartition("-")[0]


def validate_new_topic(view: View, name: str, spec: so.TopicSpec) -> None:
    reason = so.validate_topic_name(name) if name else "Name is empty"
    if reason:
        raise CreateError(Error(ErrorCode.TopicInvalidName), f"Invalid topic name: '{name}'. {reason}")
    if name in view.topics:
        raise CreateError(Error(ErrorCode.TopicAlreadyExists), f"Topic '{name}' already exists")
    if isinstance(spec.replicas, so.MirrorReplicas):
        raise CreateError(Error(ErrorCode.TopicInvalidReplicaType), "mirror topics are not supported")
    reason = spec.replicas.validate()
    if reason:
        raise CreateError(Error(ErrorCode.TopicError), reason)
    reason = spec.validate_config()
    if reason:
        raise CreateError(Error(ErrorCode.TopicInvalidConfiguration), reason)


def replica_map_for(view: View, spec: so.TopicSpec) -> dict[int, list[int]]:
    """Where each partition's replicas go (the first one leads)."""
    if isinstance(spec.replicas, so.AssignedReplicas):
        known = {o.spec.id for o in view.spus.values()}
        for pm in spec.replicas.maps:
            missing = [s for s in pm.replicas if s not in known]
            if missing:
                raise CreateError(Error(ErrorCode.TopicError),
                                  f"assigned partition {pm.id} names unknown SPU(s) {missing}")
        return {pm.id: list(pm.replicas) for pm in spec.replicas.maps}
    live = sorted(view.online_spus(), key=lambda o: o.spec.id)
    load: dict[int, int] = {}
    for p in view.partitions.values():
        load[p.spec.leader] = load.get(p.spec.leader, 0) + 1
    try:
        return place_replicas(
            spec.replicas.partitions, spec.replicas.replication_factor,
            [SpuInfo(o.spec.id, o.spec.rack) for o in live], existing_load=load,
            ignore_rack=spec.replicas.ignore_rack_assignment)
    except PlacementError as e:
        raise CreateError(Error(ErrorCode.TopicError), str(e)) from None


def _new_partition(draft: Draft, name: str, replicas: list[int], topic: so.TopicSpec,
                   topic_id: int) -> None:
    pspec = so.PartitionSpec.from_replicas(replicas, topic)
    pstatus = so.PartitionStatus(so.PartitionResolution.Offline,
                                 so.ReplicaStatus(pspec.leader, 0, 0), 0, [], 0, False, 0)
    draft.partitions.upsert(name, pspec, pstatus,
                            PartitionReplication(topic_id, epoch=1, isr=tuple(replicas)))


def create_topic(draft: Draft, name: str, spec: so.TopicSpec) -> list[str]:
    """Store the topic, a new incarnation of ``name``, and its partitions; returns the partition
    names. Raises CreateError (placement), and then nothing is written."""
    replica_map = replica_map_for(draft, spec)
    rf = len(next(iter(replica_map.values()))) if replica_map else 1
    topic_id = new_topic_id({t.meta.topic_id for t in draft.topics.values()})
    status = so.TopicStatus(so.TopicResolution.Provisioned, replica_map, {}, "")
    names = []
    draft.topics.upsert(name, spec, status, TopicReplication(topic_id, min_isr=default_min_isr(rf)))
    for pid, replicas in sorted(replica_map.items()):
        _new_partition(draft, f"{name}-{pid}", replicas, spec, topic_id)
        names.append(f"{name}-{pid}")
    log.info("topic %s created (incarnation %d)", name, topic_id)
    return names


def delete_topic(draft: Draft, name: str) -> None:
    for p in draft.partitions_of(name):
        draft.partitions.delete(p.name)
    draft.topics.delete(name)


def ensure_system_topics(draft: Draft) -> None:
    """The system topic ``consumer-offset`` is replicated the way Kafka users expect of
    ``__consumer_offsets`` (offsets.topic.replication.factor = 3), without refusing to start in a
    smaller cluster: it is created once an SPU is online, with min(3, live SPUs) replicas, and
    grows by the SPUs that register later (lowest id first) until it has 3. Growing bumps the
    leader epoch (a new replica set is a new leadership) but not the ISR: a new replica joins it
    once the leader reports it caught up. Its min ISR follows the usual default for its size.
    Like ``__consumer_offsets`` it is compacted (the latest offset per consumer and partition;
    a delete is a tombstone), so its leader's replay at start is bounded; a topic created before
    compaction existed is switched over."""
    online = draft.online_spus()
    if not online:
        return
    t = draft.topics.get(CONSUMER_OFFSET_TOPIC)
    if t is None:
        create_topic(draft, CONSUMER_OFFSET_TOPIC,
                     consumer_offset_topic_spec(min(OFFSETS_REPLICATION_FACTOR, len(online))))
        t = draft.topics.get(CONSUMER_OFFSET_TOPIC)
    if t.meta.cleanup_policy != "compact":
        t = draft.topics.update(t.name, meta=replace(t.meta, cleanup_policy="compact"))
    p = draft.partitions.get(f"{CONSUMER_OFFSET_TOPIC}-0")
    if p is None:
        return
    have = list(p.spec.replicas)
    new = sorted(o.spec.id for o in online if o.spec.id not in have)
    replicas = have + new[:max(0, OFFSETS_REPLICATION_FACTOR - len(have))]
    if replicas == have:
        return
    log.info("%s: replicas %s -> %s", p.name, have, replicas)
    draft.partitions.update(p.name, spec=replace(p.spec, replicas=replicas), meta=p.meta.next_epoch())
    spec = replace(t.spec, replicas=replace(t.spec.replicas, replication_factor=len(replicas)))
    status = replace(t.status, replica_map={**t.status.replica_map, 0: replicas})
    draft.topics.update(t.name, spec=spec, status=status,
                        meta=replace(t.meta, min_isr=default_min_isr(len(replicas))))


# ----------------------------------------------------------------------------------- SPUs


def register_spu(draft: Draft, req: ia.RegisterSpuRequest, auto_register: bool) -> Error:
    """An SPU (re)registers. It starts a new leader epoch for every partition it is recorded as
    leading: it may have restarted and lost writes it had not synced (power loss), so what it
    writes next must not share an epoch with what its followers already hold. Once saved, the SPU
    is neither awaited nor failed any more."""
    spu_id = req.spu_id
    custom = next((o for o in draft.stores["CustomSpu"].values() if o.spec.id == spu_id), None)
    if custom is None and not auto_register:
        return Error(ErrorCode.SpuRegisterationFailed)
    existing = next((o for o in draft.spus.values() if o.spec.id == spu_id), None)
    name = custom.name if custom else (existing.name if existing else f"custom-spu-{spu_id}")
    spec = so.SpuSpec(
        spu_id, so.SpuType.Custom,
        so.IngressPort(req.public_port, [so.IngressAddr(req.public_host, None)], so.EncryptionEnum.PLAINTEXT),
        so.Endpoint(req.private_port, req.private_host, so.EncryptionEnum.PLAINTEXT), req.rack, None)
    draft.spus.upsert(name, spec, so.SpuStatus(so.SpuStatusResolution.Online))
    for p in draft.partitions.values():
        if p.spec.leader == spu_id:
            draft.partitions.update(p.name, meta=p.meta.next_epoch())
            log.info("%s: leader %d registered, epoch %d", p.name, spu_id, p.meta.epoch + 1)
    ensure_system_topics(draft)
    elect_offline_partitions(draft)
    draft.settled.add(spu_id)
    return Error()


def mark_spu_offline(draft: Draft, spu_id: int) -> None:
    """Status only: at SC start, before SPUs have had a chance to reconnect."""
    for o in draft.spus.values():
        if o.spec.id == spu_id and o.status.resolution != so.SpuStatusResolution.Offline:
            draft.spus.update_status(o.name, so.SpuStatus(so.SpuStatusResolution.Offline))


def set_spu_offline(draft: Draft, spu_id: int) -> None:
    """An SPU failed: drop it from every ISR and elect new leaders where it led. Once saved, the
    SPU is neither awaited nor failed any more; if the save fails, its failure is retried
    (``due_failures``)."""
    mark_spu_offline(draft, spu_id)
    live = {o.spec.id for o in draft.online_spus()}
    for p in draft.partitions.values():
        if spu_id not in p.spec.replicas:
            continue
        if p.spec.leader == spu_id:
            elect(draft, p, live)
        else:
            meta = p.meta.with_isr(s for s in p.meta.isr if s != spu_id)
            if meta != p.meta:
                draft.partitions.update(p.name, meta=meta)
    draft.settled.add(spu_id)
    draft.failed_if_unsaved.add(spu_id)


@dataclass(frozen=True)
class DueFailures:
    """What the failure detector does on one tick (``due_failures``)."""

    disconnect: tuple[int, ...]  # links silent for longer than the timeout: close them
    fail: tuple[int, ...]  # SPUs to fail, each an ``SpuFailed`` of its own
    forget: frozenset[int]  # failures not saved whose SPU registered again meanwhile
    stop_waiting: bool  # the grace period after the SC start is over


def due_failures(cluster: Cluster, last_seen: Mapping[int, float], now: float, started_at: float,
                 timeout: float) -> DueFailures:
    """An SPU fails when it sends nothing for ``timeout`` (``last_seen``: when each connected SPU
    was last heard from, on a monotonic clock), when it does not come back within ``timeout`` of
    an SC start, or again when its failure could not be saved and it has not registered since."""
    fail = [s for s in sorted(cluster.failed_spus) if s not in last_seen]
    silent = tuple(s for s, seen in last_seen.items() if now - seen > timeout)
    fail += [s for s in silent if s not in fail]
    stop_waiting = bool(cluster.pending_spus) and now - started_at > timeout
    if stop_waiting:
        connected = set(last_seen) - set(silent)
        fail += [s for s in sorted(cluster.pending_spus - connected) if s not in fail]
    return DueFailures(silent, tuple(fail), frozenset(cluster.failed_spus & set(last_seen)), stop_waiting)


def elect(draft: Draft, p, live: set[int]) -> bool:
    """Run a clean election (ISR only, highest LEO first) for partition object ``p``, or an
    unclean one if its topic allows it. A leader is assigned with a new epoch whenever it
    changes or the partition had none (its leader was offline, even if the same SPU is chosen
    again). Returns True when ``p`` changed."""
    topic = draft.topics.get(_topic_of(p.name))
    unclean_ok = bool(topic and topic.meta.unclean_leader_election)
    leos = draft.leos_of(p.name)
    result = elect_leader(p.spec.replicas, p.meta.isr, live, leos, p.spec.leader, unclean_ok)
    st = p.status
    if result.leader is None:
        if st.resolution != so.PartitionResolution.LeaderOffline:
            draft.partitions.update_status(p.name, replace(st, resolution=so.PartitionResolution.LeaderOffline))
            log.warning("%s: no eligible leader (%s)", p.name, result.reason)
            return True
        return False
    if result.leader == p.spec.leader and st.resolution != so.PartitionResolution.LeaderOffline:
        return False
    _assign_leader(draft, p, result)
    return True


def _assign_leader(draft: Draft, p, result: ElectionResult) -> None:
    """Record ``result``'s leader and ISR for ``p`` at the next leader epoch."""
    leos = draft.leos_of(p.name)
    meta = p.meta.next_epoch().with_isr([s for s in p.spec.replicas if s in result.isr] or [result.leader])
    log.warning("%s: leader %d -> %d at epoch %d (%s)%s", p.name, p.spec.leader, result.leader,
                meta.epoch, result.reason, " UNCLEAN" if result.unclean else "")
    st = p.status
    status = so.PartitionStatus(so.PartitionResolution.ElectionLeaderFound,
                                so.ReplicaStatus(result.leader, st.leader.hw, leos.get(result.leader, -1)),
                                0, [], st.size, st.is_being_deleted, st.base_offset)
    draft.partitions.update(p.name, spec=replace(p.spec, leader=result.leader), status=status, meta=meta)


def elect_offline_partitions(draft: Draft) -> None:
    """After an SPU comes back: partitions without a live leader may elect one now. A leader the
    SC has not heard from since it restarted (``pending_spus``) gets its grace period."""
    live = {o.spec.id for o in draft.online_spus()}
    for p in draft.partitions.values():
        if p.spec.leader not in live and p.spec.leader not in draft.pending_spus:
            elect(draft, p, live)


def _hand_away(draft: Draft, p, spu_id: int) -> bool:
    """Leader ``spu_id`` reported an error (a short-circuited or corrupt log): elect another
    leader from the live ISR without it, if there is one (clean only). Returns True if done."""
    live = {o.spec.id for o in draft.online_spus()} - {spu_id}
    result = elect_leader(p.spec.replicas, p.meta.isr, live, draft.leos_of(p.name), spu_id, False)
    if result.leader is None:
        log.error("%s: leader %d is failing and no in-sync replica can take over", p.name, spu_id)
        return False
    _assign_leader(draft, p, result)
    return True


def apply_report(draft: Draft, report: ia.ReportReplicasRequest) -> None:
    """Fold an SPU's replica report into partition statuses, LEOs and the ISR. Entries that do
    not match the SC's view (unknown partition, not a replica, another epoch) are skipped. A
    leader's ISR is taken only from a report built on the current ``isr_version``. A leader
    reporting an error is replaced by an in-sync replica when one is live."""
    spu_id = report.spu_id
    for r in report.replicas:
        pname = f"{r.topic}-{r.partition}"
        obj = draft.partitions.get(pname)
        if obj is None or spu_id not in obj.spec.replicas or r.leader_epoch != obj.meta.epoch:
            continue
        leos = draft.report_leos(pname)
        leos[spu_id] = r.leo
        if obj.spec.leader != spu_id or not r.is_leader:
            continue
        pairs = r.follower_leos
        followers = {s: leo for s, leo in zip(pairs[0::2], pairs[1::2])
                     if s in obj.spec.replicas and s != spu_id}
        leos.update({s: leo for s, leo in followers.items() if leo >= 0})
        if r.error and _hand_away(draft, obj, spu_id):
            continue
        if obj.meta.accepts_isr_report(r.isr_version):
            meta = obj.meta.with_isr(s for s in obj.spec.replicas if s in set(r.isr) | {spu_id})
            if meta != obj.meta:
                log.info("%s: ISR %s -> %s (version %d)", pname, list(obj.meta.isr), list(meta.isr),
                         meta.isr_version)
                obj = draft.partitions.update(pname, meta=meta)
        st = obj.status
        resolution = so.PartitionResolution.OutOfStorage if r.error else so.PartitionResolution.Online
        replicas = [so.ReplicaStatus(s, min(r.hw, leo), leo) for s, leo in followers.items()]
        lsr = sum(1 for leo in followers.values() if leo == r.leo)
        new = so.PartitionStatus(resolution, so.ReplicaStatus(spu_id, r.hw, r.leo),
                                 lsr, replicas, r.size, False, r.log_start_offset)
        draft.partitions.update_status(pname, new, durable=new.resolution != st.resolution)


def assignments_for(cluster: Cluster, spu_id: int) -> ia.WatchReplicasResponse:
    """The complete desired state of one SPU."""
    out = []
    for p in cluster.partitions.values():
        if spu_id not in p.spec.replicas:
            continue
        topic, _, part = p.name.rpartition("-")
        t = cluster.topics.get(topic)
        storage = p.spec.storage or so.TopicStorageConfig(None, None)
        retention = p.spec.cleanup_policy.retention_secs() if p.spec.cleanup_policy else \
            so.STORAGE_RETENTION_SECONDS
        settings = ia.ReplicaSettings(
            storage.segment_size or so.SPU_LOG_SEGMENT_MAX_BYTES, retention,
            storage.max_partition_size or DEFAULT_MAX_PARTITION_BYTES, int(p.spec.compression_type),
            t.meta.min_isr if t else 1, p.spec.system)
        if t is not None:
            m = t.meta
            settings = replace(settings, cleanup_policy=CLEANUP_POLICIES.index(m.cleanup_policy),
                               tombstone_retention_seconds=m.tombstone_retention_secs,
                               min_compaction_lag_seconds=m.min_compaction_lag_secs,
                               min_cleanable_dirty_percent=m.min_cleanable_dirty_percent)
        m = p.meta
        out.append(ia.ReplicaAssignment(topic, int(part), p.spec.leader, m.epoch, list(p.spec.replicas),
                                        list(m.isr), settings, m.topic_id, m.isr_version))
    # only live SPUs: a leader drops a follower the SC has declared failed from its ISR at once
    peers = [ia.SpuAddress(o.spec.id, o.spec.private_endpoint.host, o.spec.private_endpoint.port)
             for o in cluster.online_spus()]
    offsets = cluster.partitions.get(f"{CONSUMER_OFFSET_TOPIC}-0")
    return ia.WatchReplicasResponse(cluster.assignment_epoch, out, peers,
                                    offsets.spec.leader if offsets else -1)


def add_partitions(draft: Draft, name: str, count: int) -> list[str]:
    """Grow a computed topic by ``count`` partitions; returns the new partition names."""
    t = draft.topics.get(name)
    if not isinstance(t.spec.replicas, so.ComputedReplicas) or count < 1:
        raise CreateError(Error(ErrorCode.TopicError), "only computed topics can add partitions")
    first = t.spec.replicas.partitions
    rf = t.spec.replicas.replication_factor
    added = replica_map_for(draft, so.TopicSpec(so.ComputedReplicas(count, rf, t.spec.replicas.ignore_rack_assignment)))
    spec = replace(t.spec, replicas=replace(t.spec.replicas, partitions=first + count))
    replica_map = dict(t.status.replica_map)
    names = []
    for i, replicas in sorted(added.items()):
        replica_map[first + i] = replicas
        _new_partition(draft, f"{name}-{first + i}", replicas, spec, t.meta.topic_id)
        names.append(f"{name}-{first + i}")
    draft.topics.update(name, spec=spec, status=replace(t.status, replica_map=replica_map))
    return names


def set_replication_config(draft: Draft, name: str, min_isr: int | None,
                           unclean_leader_election: bool | None) -> None:
    """A topic's min in-sync replicas and its unclean-election opt-in (its replication record,
    persisted, pushed to the replicas with their assignments)."""
    t = draft.topics.get(name)
    rf = max((len(r) for r in t.status.replica_map.values()), default=1)
    meta = t.meta
    if min_isr is not None:
        if not 1 <= min_isr <= rf:
            raise CreateError(Error(ErrorCode.TopicInvalidConfiguration),
                              f"min_isr {min_isr} must be between 1 and the replication factor {rf}")
        meta = replace(meta, min_isr=min_isr)
    if unclean_leader_election is not None:
        meta = replace(meta, unclean_leader_election=bool(unclean_leader_election))
    draft.topics.update(name, meta=meta)
    log.info("%s: min_isr %s, unclean leader election %s", name, meta.min_isr, meta.unclean_leader_election)


def set_cleanup_config(draft: Draft, name: str, action: so.SetCleanupConfig) -> None:
    """A topic's log compaction settings (its record, persisted, pushed to the replicas with
    their assignments; each replica applies them at once). Raises CreateError for a value out
    of range."""
    t = draft.topics.get(name)
    meta = t.meta
    if action.cleanup_policy is not None:
        if action.cleanup_policy not in CLEANUP_POLICIES:
            raise CreateError(Error(ErrorCode.TopicInvalidConfiguration),
                              f"cleanup policy {action.cleanup_policy!r} must be one of {', '.join(CLEANUP_POLICIES)}")
        meta = replace(meta, cleanup_policy=action.cleanup_policy)
    if action.tombstone_retention_secs is not None:
        meta = replace(meta, tombstone_retention_secs=action.tombstone_retention_secs)
    if action.min_compaction_lag_secs is not None:
        meta = replace(meta, min_compaction_lag_secs=action.min_compaction_lag_secs)
    if action.min_cleanable_dirty_percent is not None:
        percent = action.min_cleanable_dirty_percent
        if percent > 100:
            raise CreateError(Error(ErrorCode.TopicInvalidConfiguration),
                              f"min cleanable dirty ratio {percent}% must be between 0 and 100%")
        meta = replace(meta, min_cleanable_dirty_percent=percent)
    draft.topics.update(name, meta=meta)
    log.info("%s: cleanup policy %s, tombstone retention %ds, min compaction lag %ds, dirty ratio %d%%",
             name, meta.cleanup_policy, meta.tombstone_retention_secs, meta.min_compaction_lag_secs,
             meta.min_cleanable_dirty_percent)


def set_content_type(draft: Draft, name: str, content_type: str) -> None:
    """A topic's content type (its record, persisted; producers ask for it with
    ``TopicSettingsRequest``). Raises CreateError for a malformed type."""
    try:
        ct = validate_content_type(content_type)
    except ValueError as e:
        raise CreateError(Error(ErrorCode.TopicInvalidConfiguration), str(e)) from None
    t = draft.topics.get(name)
    draft.topics.update(name, meta=replace(t.meta, content_type=ct))
    log.info("%s: content type %s", name, ct or "(none)")


def sc_started(draft: Draft) -> None:
    """Every SPU starts offline until it registers again, and is awaited: no election before it
    had a chance to come back (``elect_offline_partitions``, ``due_failures``)."""
    for o in draft.spus.values():
        mark_spu_offline(draft, o.spec.id)
        draft.awaited.add(o.spec.id)


def took_over(draft: Draft) -> None:
    """This SC takes over from another controller (fluvial.sc.ha): the SPUs keep the status the
    last controller saved, so the online ones stay usable, and every one is awaited: one that
    does not register with this SC within the heartbeat timeout is failed (``due_failures``)."""
    for o in draft.spus.values():
        draft.awaited.add(o.spec.id)


def create_object(draft: Draft, label: str, name: str, spec) -> tuple[str, ...]:
    """Store an object of a kind without rules of its own (SmartModule, TableFormat, CustomSpu,
    ...). A custom SPU is listed as an SPU at once, offline until it connects, as Fluvio's SC
    does. Returns the kinds written."""
    draft.stores[label].upsert(name, spec, type(spec).Status())
    if label != "CustomSpu" or any(o.spec.id == spec.id for o in draft.spus.values()):
        return (label,)
    draft.spus.upsert(name, so.SpuSpec(spec.id, so.SpuType.Custom, spec.public_endpoint,
                                       spec.private_endpoint, spec.rack, spec.public_endpoint_local),
                      so.SpuStatus(so.SpuStatusResolution.Offline))
    return (label, "SPU")


def delete_object(draft: Draft, label: str, name: str) -> tuple[str, ...]:
    """Delete an object of a kind without rules of its own; a custom SPU takes its SPU along.
    Returns the kinds written."""
    obj = draft.stores[label].delete(name)
    labels = [label]
    if label == "CustomSpu":
        for s in draft.spus.values():
            if s.spec.id == obj.spec.id:
                draft.spus.delete(s.name)
                labels.append("SPU")
    return tuple(labels)


# --------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ScStarted:
    """The SC loaded its stores and is about to listen."""


@dataclass(frozen=True)
class ControllerTookOver:
    """This SC won the controller election (fluvial.sc.ha)."""


@dataclass(frozen=True)
class SpuRegistered:
    request: ia.RegisterSpuRequest
    auto_register: bool  # an SPU nobody created as a custom SPU may join


@dataclass(frozen=True)
class SpuReported:
    report: ia.ReportReplicasRequest


@dataclass(frozen=True)
class SpuFailed:
    """Its connection closed, it missed its heartbeats, or it did not come back after an SC start
    (``due_failures``)."""

    spu_id: int


@dataclass(frozen=True)
class TopicCreated:
    name: str
    spec: so.TopicSpec


@dataclass(frozen=True)
class TopicDeleted:
    name: str


@dataclass(frozen=True)
class PartitionsAdded:
    name: str
    count: int


@dataclass(frozen=True)
class ReplicationConfigured:
    name: str
    min_isr: int | None
    unclean_leader_election: bool | None


@dataclass(frozen=True)
class CleanupConfigured:
    name: str
    action: so.SetCleanupConfig


@dataclass(frozen=True)
class ContentTypeConfigured:
    name: str
    content_type: str


@dataclass(frozen=True)
class ProcessorStatusSet:
    name: str
    status: Any


@dataclass(frozen=True)
class ObjectCreated:
    label: str
    name: str
    spec: Any


@dataclass(frozen=True)
class ObjectDeleted:
    label: str
    name: str


Event = (ScStarted | SpuRegistered | SpuReported | SpuFailed | TopicCreated | TopicDeleted
         | PartitionsAdded | ReplicationConfigured | CleanupConfigured | ContentTypeConfigured | ProcessorStatusSet | ObjectCreated | ObjectDeleted
         | ControllerTookOver)

# event type -> its rule; what the rule returns is the decision's answer
_RULES: dict[type, Callable[[Draft, Any], Any]] = {
    ScStarted: lambda d, e: sc_started(d),
    SpuRegistered: lambda d, e: register_spu(d, e.request, e.auto_register),
    SpuReported: lambda d, e: apply_report(d, e.report),
    SpuFailed: lambda d, e: set_spu_offline(d, e.spu_id),
    TopicCreated: lambda d, e: create_topic(d, e.name, e.spec),
    TopicDeleted: lambda d, e: delete_topic(d, e.name),
    PartitionsAdded: lambda d, e: add_partitions(d, e.name, e.count),
    ReplicationConfigured: lambda d, e: set_replication_config(d, e.name, e.min_isr, e.unclean_leader_election),
    CleanupConfigured: lambda d, e: set_cleanup_config(d, e.name, e.action),
    ContentTypeConfigured: lambda d, e: set_content_type(d, e.name, e.content_type),
    ProcessorStatusSet: lambda d, e: d.stores["Processor"].update_status(e.name, e.status),
    ObjectCreated: lambda d, e: create_object(d, e.label, e.name, e.spec),
    ObjectDeleted: lambda d, e: delete_object(d, e.label, e.name),
    ControllerTookOver: lambda d, e: took_over(d),
}


def decide(cluster: Cluster, event: Event) -> Decision:
    """What ``event`` changes in ``cluster``; ``cluster`` itself is left as it is. Raises
    CreateError for a create or update the cluster refuses (nothing is written then)."""
    draft = Draft(cluster)
    answer = _RULES[type(event)](draft, event)
    return draft.decision(answer)

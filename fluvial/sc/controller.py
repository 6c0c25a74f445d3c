"""SC decisions that change the stores: topics, partitions, SPUs.

Each function takes the ``ScState`` and plain values, mutates the stores and calls ``commit``;
the placement and election maths live in fluvial.metadata.placement and fluvial.replication.
"""

from __future__ import annotations

import logging

from fluvial.errors import Error, ErrorCode
from fluvial.metadata.placement import PlacementError, SpuInfo, place_replicas
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_objects as so
from fluvial.replication.election import elect_leader
from fluvial.sc.state import ScState

log = logging.getLogger("fluvial.sc")

CONSUMER_OFFSET_TOPIC = "consumer-offset"
DEFAULT_MAX_PARTITION_BYTES = 100 * 1024**3


class CreateError(Exception):
    def __init__(self, error: Error, message: str | None = None):
        super().__init__(message or error.message)
        self.error, self.message = error, message


def consumer_offset_topic_spec() -> so.TopicSpec:
    """The system topic the real SC keeps: Computed(1, 1), 7 days, 512 MB segments, 2 GB max."""
    return so.TopicSpec(
        so.ComputedReplicas(1, 1, False), so.SegmentBasedPolicy(604800),
        so.TopicStorageConfig(512000000, 2048000000), so.CompressionAlgorithm.Any, None, True)


def default_min_isr(replication_factor: int) -> int:
    return 2 if replication_factor >= 3 else 1


def validate_new_topic(state: ScState, name: str, spec: so.TopicSpec) -> None:
    reason = so.validate_topic_name(name) if name else "Name is empty"
    if reason:
        raise CreateError(Error(ErrorCode.TopicInvalidName), f"Invalid topic name: '{name}'. {reason}")
    if name in state.topics:
        raise CreateError(Error(ErrorCode.TopicAlreadyExists), f"Topic '{name}' already exists")
    if isinstance(spec.replicas, so.MirrorReplicas):
        raise CreateError(Error(ErrorCode.TopicInvalidReplicaType), "mirror topics are not supported")
    reason = spec.replicas.validate()
    if reason:
        raise CreateError(Error(ErrorCode.TopicError), reason)
    reason = spec.validate_config()
    if reason:
        raise CreateError(Error(ErrorCode.TopicInvalidConfiguration), reason)


def replica_map_for(state: ScState, spec: so.TopicSpec) -> dict[int, list[int]]:
    """Where each partition's replicas go (the first one leads)."""
    if isinstance(spec.replicas, so.AssignedReplicas):
        known = {o.spec.id for o in state.spus.values()}
        for pm in spec.replicas.maps:
            missing = [s for s in pm.replicas if s not in known]
            if missing:
                raise CreateError(Error(ErrorCode.TopicError),
                                  f"assigned partition {pm.id} names unknown SPU(s) {missing}")
        return {pm.id: list(pm.replicas) for pm in spec.replicas.maps}
    live = sorted(state.online_spus(), key=lambda o: o.spec.id)
    load: dict[int, int] = {}
    for p in state.partitions.values():
        load[p.spec.leader] = load.get(p.spec.leader, 0) + 1
    try:
        return place_replicas(
            spec.replicas.partitions, spec.replicas.replication_factor,
            [SpuInfo(o.spec.id, o.spec.rack) for o in live], existing_load=load,
            ignore_rack=spec.replicas.ignore_rack_assignment)
    except PlacementError as e:
        raise CreateError(Error(ErrorCode.TopicError), str(e)) from None


def create_topic(state: ScState, name: str, spec: so.TopicSpec) -> list[str]:
    """Store the topic and its partitions; returns the partition names."""
    replica_map = replica_map_for(state, spec)
    rf = len(next(iter(replica_map.values()))) if replica_map else 1
    status = so.TopicStatus(so.TopicResolution.Provisioned, replica_map, {}, "")
    state.topics.upsert(name, spec, status, {"min_isr": default_min_isr(rf)})
    names = []
    for pid, replicas in sorted(replica_map.items()):
        pname = f"{name}-{pid}"
        pspec = so.PartitionSpec.from_replicas(replicas, spec)
        pstatus = so.PartitionStatus(so.PartitionResolution.Offline,
                                     so.ReplicaStatus(pspec.leader, 0, 0), 0, [], 0, False, 0)
        state.partitions.upsert(pname, pspec, pstatus, {"epoch": 1, "isr": list(replicas)})
        names.append(pname)
    state.commit("Topic", "Partition")
    return names


def delete_topic(state: ScState, name: str) -> None:
    for p in state.partitions_of(name):
        state.partitions.delete(p.name)
    state.topics.delete(name)
    state.commit("Topic", "Partition")


def ensure_system_topics(state: ScState) -> None:
    """The system topic ``consumer-offset`` exists once an SPU is online."""
    if CONSUMER_OFFSET_TOPIC in state.topics or not state.online_spus():
        return
    create_topic(state, CONSUMER_OFFSET_TOPIC, consumer_offset_topic_spec())


# ----------------------------------------------------------------------------------- SPUs


def register_spu(state: ScState, req: ia.RegisterSpuRequest, auto_register: bool) -> Error:
    spu_id = req.spu_id
    custom = next((o for o in state.stores["CustomSpu"].values() if o.spec.id == spu_id), None)
    if custom is None and not auto_register:
        return Error(ErrorCode.SpuRegisterationFailed)
    existing = next((o for o in state.spus.values() if o.spec.id == spu_id), None)
    name = custom.name if custom else (existing.name if existing else f"custom-spu-{spu_id}")
    spec = so.SpuSpec(
        spu_id, so.SpuType.Custom,
        so.IngressPort(req.public_port, [so.IngressAddr(req.public_host, None)], so.EncryptionEnum.PLAINTEXT),
        so.Endpoint(req.private_port, req.private_host, so.EncryptionEnum.PLAINTEXT), req.rack, None)
    state.spus.upsert(name, spec, so.SpuStatus(so.SpuStatusResolution.Online))
    state.pending_spus.discard(spu_id)
    state.commit("SPU")
    ensure_system_topics(state)
    elect_offline_partitions(state)
    return Error()


def mark_spu_offline(state: ScState, spu_id: int) -> None:
    """Status only: used at SC start, before SPUs have had a chance to reconnect."""
    for o in state.spus.values():
        if o.spec.id == spu_id and o.status.resolution != so.SpuStatusResolution.Offline:
            state.spus.update_status(o.name, so.SpuStatus(so.SpuStatusResolution.Offline))


def set_spu_offline(state: ScState, spu_id: int) -> None:
    """An SPU failed: drop it from every ISR and elect new leaders where it led."""
    state.pending_spus.discard(spu_id)
    mark_spu_offline(state, spu_id)
    live = {o.spec.id for o in state.online_spus()}
    changed = False
    for p in state.partitions.values():
        if spu_id not in p.spec.replicas:
            continue
        isr = [s for s in p.extra.get("isr", p.spec.replicas) if s != spu_id or p.spec.leader == spu_id]
        if p.spec.leader == spu_id:
            changed |= elect(state, p, live)
        elif isr != p.extra.get("isr"):
            p.extra["isr"] = isr
            state.partitions.touch(p.name)
            changed = True
    state.commit("SPU", *(("Partition",) if changed else ()))


def elect(state: ScState, p, live: set[int]) -> bool:
    """Run a clean election (ISR only, highest LEO first) for partition object ``p``; bump the
    epoch when the leader changes. Returns True when ``p`` changed."""
    topic = state.topics.get(p.name.rpartition("-")[0])
    unclean_ok = bool(topic and topic.extra.get("unclean_leader_election"))
    isr = p.extra.get("isr", list(p.spec.replicas))
    leos = state.leos.get(p.name, {})
    result = elect_leader(p.spec.replicas, isr, live, leos, p.spec.leader, unclean_ok)
    st = p.status
    if result.leader is None:
        if st.resolution != so.PartitionResolution.LeaderOffline:
            p.status = so.PartitionStatus(so.PartitionResolution.LeaderOffline, st.leader, st.lsr,
                                          st.replicas, st.size, st.is_being_deleted, st.base_offset)
            state.partitions.touch(p.name)
            log.warning("%s: no eligible leader (%s)", p.name, result.reason)
            return True
        return False
    if result.leader == p.spec.leader:
        return False
    epoch = p.extra.get("epoch", 1) + 1
    log.warning("%s: leader %d -> %d at epoch %d (%s)%s", p.name, p.spec.leader, result.leader,
                epoch, result.reason, " UNCLEAN" if result.unclean else "")
    p.spec.leader = result.leader
    p.extra["epoch"] = epoch
    ordered = [s for s in p.spec.replicas if s in result.isr]
    p.extra["isr"] = ordered or [result.leader]
    p.status = so.PartitionStatus(so.PartitionResolution.ElectionLeaderFound,
                                  so.ReplicaStatus(result.leader, st.leader.hw, leos.get(result.leader, -1)),
                                  0, [], st.size, st.is_being_deleted, st.base_offset)
    state.partitions.touch(p.name)
    return True


def elect_offline_partitions(state: ScState) -> None:
    """After an SPU comes back: partitions without a live leader may elect one now."""
    live = {o.spec.id for o in state.online_spus()}
    changed = False
    for p in state.partitions.values():
        # a leader the SC has not heard from since it restarted gets its grace period
        if p.spec.leader not in live and p.spec.leader not in state.pending_spus:
            changed |= elect(state, p, live)
    if changed:
        state.commit("Partition")


def apply_report(state: ScState, report: ia.ReportReplicasRequest) -> None:
    """Fold an SPU's replica report into partition statuses, LEOs and the ISR."""
    changed = persist = False
    for r in report.replicas:
        pname = f"{r.topic}-{r.partition}"
        obj = state.partitions.get(pname)
        if obj is None or r.leader_epoch != obj.extra.get("epoch", 1):
            continue
        leos = state.leos.setdefault(pname, {})
        leos[report.spu_id] = r.leo
        if obj.spec.leader != report.spu_id or not r.is_leader:
            continue
        pairs = r.follower_leos
        followers = dict(zip(pairs[0::2], pairs[1::2]))
        leos.update({s: leo for s, leo in followers.items() if leo >= 0})
        isr = [s for s in obj.spec.replicas if s in set(r.isr) | {report.spu_id}]
        if isr != obj.extra.get("isr"):
            log.info("%s: ISR %s -> %s", pname, obj.extra.get("isr"), isr)
            obj.extra["isr"] = isr
            state.partitions.touch(pname)
            changed = persist = True
        st = obj.status
        resolution = so.PartitionResolution.OutOfStorage if r.error else so.PartitionResolution.Online
        replicas = [so.ReplicaStatus(s, min(r.hw, leo), leo) for s, leo in followers.items()]
        lsr = sum(1 for s, leo in followers.items() if leo == r.leo)
        new = so.PartitionStatus(resolution, so.ReplicaStatus(report.spu_id, r.hw, r.leo),
                                 lsr, replicas, r.size, False, r.log_start_offset)
        if new != st:
            if new.resolution != st.resolution:
                persist = True
            state.partitions.update_status(pname, new)
            changed = True
    if changed:
        state.commit("Partition", persist=persist)


def assignments_for(state: ScState, spu_id: int) -> ia.WatchReplicasResponse:
    """The complete desired state of one SPU."""
    out = []
    for p in state.partitions.values():
        if spu_id not in p.spec.replicas:
            continue
        topic, _, part = p.name.rpartition("-")
        t = state.topics.get(topic)
        storage = p.spec.storage or so.TopicStorageConfig(None, None)
        retention = p.spec.cleanup_policy.retention_secs() if p.spec.cleanup_policy else \
            so.STORAGE_RETENTION_SECONDS
        settings = ia.ReplicaSettings(
            storage.segment_size or so.SPU_LOG_SEGMENT_MAX_BYTES, retention,
            storage.max_partition_size or DEFAULT_MAX_PARTITION_BYTES, int(p.spec.compression_type),
            (t.extra.get("min_isr", 1) if t else 1), p.spec.system)
        out.append(ia.ReplicaAssignment(topic, int(part), p.spec.leader, p.extra.get("epoch", 1),
                                        list(p.spec.replicas), list(p.extra.get("isr", p.spec.replicas)),
                                        settings))
    # only live SPUs: a leader drops a follower the SC has declared failed from its ISR at once
    peers = [ia.SpuAddress(o.spec.id, o.spec.private_endpoint.host, o.spec.private_endpoint.port)
             for o in state.online_spus()]
    offsets = state.partitions.get(f"{CONSUMER_OFFSET_TOPIC}-0")
    return ia.WatchReplicasResponse(state.assignment_epoch, out, peers,
                                    offsets.spec.leader if offsets else -1)


def add_partitions(state: ScState, name: str, count: int) -> list[str]:
    """Grow a computed topic by ``count`` partitions; returns the new partition names."""
    t = state.topics.get(name)
    if not isinstance(t.spec.replicas, so.ComputedReplicas) or count < 1:
        raise CreateError(Error(ErrorCode.TopicError), "only computed topics can add partitions")
    first = t.spec.replicas.partitions
    rf = t.spec.replicas.replication_factor
    extra = replica_map_for(state, so.TopicSpec(so.ComputedReplicas(count, rf, t.spec.replicas.ignore_rack_assignment)))
    t.spec.replicas.partitions += count
    names = []
    for i, replicas in sorted(extra.items()):
        pid = first + i
        t.status.replica_map[pid] = replicas
        pspec = so.PartitionSpec.from_replicas(replicas, t.spec)
        pstatus = so.PartitionStatus(so.PartitionResolution.Offline,
                                     so.ReplicaStatus(pspec.leader, 0, 0), 0, [], 0, False, 0)
        state.partitions.upsert(f"{name}-{pid}", pspec, pstatus, {"epoch": 1, "isr": list(replicas)})
        names.append(f"{name}-{pid}")
    state.topics.touch(name)
    state.commit("Topic", "Partition")
    return names


def set_replication_config(state: ScState, name: str, min_isr: int | None,
                           unclean_leader_election: bool | None) -> None:
    """A topic's min in-sync replicas and its unclean-election opt-in (topic extras, persisted,
    pushed to the replicas with their assignments)."""
    t = state.topics.get(name)
    rf = max((len(r) for r in t.status.replica_map.values()), default=1)
    if min_isr is not None:
        if not 1 <= min_isr <= rf:
            raise CreateError(Error(ErrorCode.TopicInvalidConfiguration),
                              f"min_isr {min_isr} must be between 1 and the replication factor {rf}")
        t.extra["min_isr"] = min_isr
    if unclean_leader_election is not None:
        t.extra["unclean_leader_election"] = bool(unclean_leader_election)
    state.topics.touch(name)
    state.commit("Topic")
    log.info("%s: min_isr %s, unclean leader election %s", name, t.extra.get("min_isr"),
             t.extra.get("unclean_leader_election", False))

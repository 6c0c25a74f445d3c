"""SC decisions that change the stores: topics, partitions, SPUs.

Each function takes the ``ScState`` and plain values and changes the stores inside one
``state.transaction()``: saved before anyone hears of it, undone if it cannot be saved
(``MetadataSaveError``). The placement and election maths live in fluvial.metadata.placement and
fluvial.replication; the per-partition replication record and its rules (every leadership a new
epoch, every ISR change a new version) in fluvial.metadata.replication.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from fluvial.errors import Error, ErrorCode
from fluvial.metadata.placement import PlacementError, SpuInfo, place_replicas
from fluvial.metadata.replication import PartitionReplication, TopicReplication, new_topic_id
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_objects as so
from fluvial.protocol.sc_objects import CONSUMER_OFFSET_TOPIC
from fluvial.replication.election import ElectionResult, elect_leader
from fluvial.sc.state import MetadataSaveError, ScState

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


def _topic_of(partition_name: str) -> str:
    return partition_name.rpartition("-")[0]


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


def _new_partition(state: ScState, name: str, replicas: list[int], topic: so.TopicSpec,
                   topic_id: int) -> None:
    pspec = so.PartitionSpec.from_replicas(replicas, topic)
    pstatus = so.PartitionStatus(so.PartitionResolution.Offline,
                                 so.ReplicaStatus(pspec.leader, 0, 0), 0, [], 0, False, 0)
    state.partitions.upsert(name, pspec, pstatus,
                            PartitionReplication(topic_id, epoch=1, isr=tuple(replicas)))


def create_topic(state: ScState, name: str, spec: so.TopicSpec) -> list[str]:
    """Store the topic, a new incarnation of ``name``, and its partitions; returns the partition
    names. Raises CreateError (placement) or MetadataSaveError, and then nothing changed."""
    replica_map = replica_map_for(state, spec)
    rf = len(next(iter(replica_map.values()))) if replica_map else 1
    topic_id = new_topic_id({t.meta.topic_id for t in state.topics.values()})
    status = so.TopicStatus(so.TopicResolution.Provisioned, replica_map, {}, "")
    names = []
    with state.transaction():
        state.topics.upsert(name, spec, status, TopicReplication(topic_id, min_isr=default_min_isr(rf)))
        for pid, replicas in sorted(replica_map.items()):
            _new_partition(state, f"{name}-{pid}", replicas, spec, topic_id)
            names.append(f"{name}-{pid}")
    log.info("topic %s created (incarnation %d)", name, topic_id)
    return names


def delete_topic(state: ScState, name: str) -> None:
    with state.transaction():
        for p in state.partitions_of(name):
            state.partitions.delete(p.name)
        state.topics.delete(name)


def ensure_system_topics(state: ScState) -> None:
    """The system topic ``consumer-offset`` is replicated the way Kafka users expect of
    ``__consumer_offsets`` (offsets.topic.replication.factor = 3), without refusing to start in a
    smaller cluster: it is created once an SPU is online, with min(3, live SPUs) replicas, and
    grows by the SPUs that register later (lowest id first) until it has 3. Growing bumps the
    leader epoch (a new replica set is a new leadership) but not the ISR: a new replica joins it
    once the leader reports it caught up. Its min ISR follows the usual default for its size."""
    online = state.online_spus()
    if not online:
        return
    t = state.topics.get(CONSUMER_OFFSET_TOPIC)
    if t is None:
        create_topic(state, CONSUMER_OFFSET_TOPIC,
                     consumer_offset_topic_spec(min(OFFSETS_REPLICATION_FACTOR, len(online))))
        return
    p = state.partitions.get(f"{CONSUMER_OFFSET_TOPIC}-0")
    if p is None:
        return
    have = list(p.spec.replicas)
    new = sorted(o.spec.id for o in online if o.spec.id not in have)
    replicas = have + new[:max(0, OFFSETS_REPLICATION_FACTOR - len(have))]
    if replicas == have:
        return
    log.info("%s: replicas %s -> %s", p.name, have, replicas)
    state.partitions.update(p.name, spec=replace(p.spec, replicas=replicas), meta=p.meta.next_epoch())
    spec = replace(t.spec, replicas=replace(t.spec.replicas, replication_factor=len(replicas)))
    status = replace(t.status, replica_map={**t.status.replica_map, 0: replicas})
    state.topics.update(t.name, spec=spec, status=status,
                        meta=replace(t.meta, min_isr=default_min_isr(len(replicas))))


# ----------------------------------------------------------------------------------- SPUs


def register_spu(state: ScState, req: ia.RegisterSpuRequest, auto_register: bool) -> Error:
    """An SPU (re)registers. It starts a new leader epoch for every partition it is recorded as
    leading: it may have restarted and lost writes it had not synced (power loss), so what it
    writes next must not share an epoch with what its followers already hold. Raises
    MetadataSaveError when that cannot be saved, and then nothing changed."""
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
    with state.transaction():
        state.spus.upsert(name, spec, so.SpuStatus(so.SpuStatusResolution.Online))
        for p in state.partitions.values():
            if p.spec.leader == spu_id:
                state.partitions.update(p.name, meta=p.meta.next_epoch())
                log.info("%s: leader %d registered, epoch %d", p.name, spu_id, p.meta.epoch + 1)
        ensure_system_topics(state)
        elect_offline_partitions(state)
    state.pending_spus.discard(spu_id)
    state.failed_spus.discard(spu_id)
    return Error()


def mark_spu_offline(state: ScState, spu_id: int) -> None:
    """Status only: used at SC start, before SPUs have had a chance to reconnect."""
    for o in state.spus.values():
        if o.spec.id == spu_id and o.status.resolution != so.SpuStatusResolution.Offline:
            state.spus.update_status(o.name, so.SpuStatus(so.SpuStatusResolution.Offline))


def set_spu_offline(state: ScState, spu_id: int) -> None:
    """An SPU failed: drop it from every ISR and elect new leaders where it led. Raises
    MetadataSaveError when that cannot be saved (see ``fail_spu``)."""
    with state.transaction():
        mark_spu_offline(state, spu_id)
        live = {o.spec.id for o in state.online_spus()}
        for p in state.partitions.values():
            if spu_id not in p.spec.replicas:
                continue
            if p.spec.leader == spu_id:
                elect(state, p, live)
            else:
                meta = p.meta.with_isr(s for s in p.meta.isr if s != spu_id)
                if meta != p.meta:
                    state.partitions.update(p.name, meta=meta)
    state.pending_spus.discard(spu_id)
    state.failed_spus.discard(spu_id)


def fail_spu(state: ScState, spu_id: int) -> None:
    """``set_spu_offline`` for the failure detector and closed connections, which must not
    crash the SC: when the change cannot be saved, the SPU is kept in ``failed_spus`` and
    ``retry_failed_spus`` tries again."""
    try:
        set_spu_offline(state, spu_id)
    except MetadataSaveError:
        log.error("SPU %d failed but that could not be saved; will retry", spu_id)
        state.failed_spus.add(spu_id)


def retry_failed_spus(state: ScState) -> None:
    """Record the failures ``fail_spu`` could not save, unless the SPU registered again."""
    for spu_id in sorted(state.failed_spus):
        if spu_id in state.links:
            state.failed_spus.discard(spu_id)
        else:
            fail_spu(state, spu_id)


def elect(state: ScState, p, live: set[int]) -> bool:
    """Run a clean election (ISR only, highest LEO first) for partition object ``p``, or an
    unclean one if its topic allows it. A leader is assigned with a new epoch whenever it
    changes or the partition had none (its leader was offline, even if the same SPU is chosen
    again). Returns True when ``p`` changed."""
    topic = state.topics.get(_topic_of(p.name))
    unclean_ok = bool(topic and topic.meta.unclean_leader_election)
    leos = state.leos.get(p.name, {})
    result = elect_leader(p.spec.replicas, p.meta.isr, live, leos, p.spec.leader, unclean_ok)
    st = p.status
    if result.leader is None:
        if st.resolution != so.PartitionResolution.LeaderOffline:
            state.partitions.update_status(p.name, replace(st, resolution=so.PartitionResolution.LeaderOffline))
            log.warning("%s: no eligible leader (%s)", p.name, result.reason)
            return True
        return False
    if result.leader == p.spec.leader and st.resolution != so.PartitionResolution.LeaderOffline:
        return False
    _assign_leader(state, p, result)
    return True


def _assign_leader(state: ScState, p, result: ElectionResult) -> None:
    """Record ``result``'s leader and ISR for ``p`` at the next leader epoch."""
    leos = state.leos.get(p.name, {})
    meta = p.meta.next_epoch().with_isr([s for s in p.spec.replicas if s in result.isr] or [result.leader])
    log.warning("%s: leader %d -> %d at epoch %d (%s)%s", p.name, p.spec.leader, result.leader,
                meta.epoch, result.reason, " UNCLEAN" if result.unclean else "")
    st = p.status
    status = so.PartitionStatus(so.PartitionResolution.ElectionLeaderFound,
                                so.ReplicaStatus(result.leader, st.leader.hw, leos.get(result.leader, -1)),
                                0, [], st.size, st.is_being_deleted, st.base_offset)
    state.partitions.update(p.name, spec=replace(p.spec, leader=result.leader), status=status, meta=meta)


def elect_offline_partitions(state: ScState) -> None:
    """After an SPU comes back: partitions without a live leader may elect one now. A leader the
    SC has not heard from since it restarted (``pending_spus``) gets its grace period."""
    live = {o.spec.id for o in state.online_spus()}
    with state.transaction():
        for p in state.partitions.values():
            if p.spec.leader not in live and p.spec.leader not in state.pending_spus:
                elect(state, p, live)


def _hand_away(state: ScState, p, spu_id: int) -> bool:
    """Leader ``spu_id`` reported an error (a short-circuited or corrupt log): elect another
    leader from the live ISR without it, if there is one (clean only). Returns True if done."""
    live = {o.spec.id for o in state.online_spus()} - {spu_id}
    result = elect_leader(p.spec.replicas, p.meta.isr, live, state.leos.get(p.name, {}), spu_id, False)
    if result.leader is None:
        log.error("%s: leader %d is failing and no in-sync replica can take over", p.name, spu_id)
        return False
    _assign_leader(state, p, result)
    return True


def apply_report(state: ScState, report: ia.ReportReplicasRequest) -> None:
    """Fold an SPU's replica report into partition statuses, LEOs and the ISR. Entries that do
    not match the SC's view (unknown partition, not a replica, another epoch) are skipped. A
    leader's ISR is taken only from a report built on the current ``isr_version``. A leader
    reporting an error is replaced by an in-sync replica when one is live. Raises
    MetadataSaveError when a change cannot be saved, and then nothing changed."""
    spu_id = report.spu_id
    with state.transaction():
        for r in report.replicas:
            pname = f"{r.topic}-{r.partition}"
            obj = state.partitions.get(pname)
            if obj is None or spu_id not in obj.spec.replicas or r.leader_epoch != obj.meta.epoch:
                continue
            leos = state.leos.setdefault(pname, {})
            leos[spu_id] = r.leo
            if obj.spec.leader != spu_id or not r.is_leader:
                continue
            pairs = r.follower_leos
            followers = {s: leo for s, leo in zip(pairs[0::2], pairs[1::2])
                         if s in obj.spec.replicas and s != spu_id}
            leos.update({s: leo for s, leo in followers.items() if leo >= 0})
            if r.error and _hand_away(state, obj, spu_id):
                continue
            if obj.meta.accepts_isr_report(r.isr_version):
                meta = obj.meta.with_isr(s for s in obj.spec.replicas if s in set(r.isr) | {spu_id})
                if meta != obj.meta:
                    log.info("%s: ISR %s -> %s (version %d)", pname, list(obj.meta.isr), list(meta.isr),
                             meta.isr_version)
                    obj = state.partitions.update(pname, meta=meta)
            st = obj.status
            resolution = so.PartitionResolution.OutOfStorage if r.error else so.PartitionResolution.Online
            replicas = [so.ReplicaStatus(s, min(r.hw, leo), leo) for s, leo in followers.items()]
            lsr = sum(1 for leo in followers.values() if leo == r.leo)
            new = so.PartitionStatus(resolution, so.ReplicaStatus(spu_id, r.hw, r.leo),
                                     lsr, replicas, r.size, False, r.log_start_offset)
            state.partitions.update_status(pname, new, durable=new.resolution != st.resolution)


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
            t.meta.min_isr if t else 1, p.spec.system)
        m = p.meta
        out.append(ia.ReplicaAssignment(topic, int(part), p.spec.leader, m.epoch, list(p.spec.replicas),
                                        list(m.isr), settings, m.topic_id, m.isr_version))
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
    added = replica_map_for(state, so.TopicSpec(so.ComputedReplicas(count, rf, t.spec.replicas.ignore_rack_assignment)))
    spec = replace(t.spec, replicas=replace(t.spec.replicas, partitions=first + count))
    replica_map = dict(t.status.replica_map)
    names = []
    with state.transaction():
        for i, replicas in sorted(added.items()):
            replica_map[first + i] = replicas
            _new_partition(state, f"{name}-{first + i}", replicas, spec, t.meta.topic_id)
            names.append(f"{name}-{first + i}")
        state.topics.update(name, spec=spec, status=replace(t.status, replica_map=replica_map))
    return names


def set_replication_config(state: ScState, name: str, min_isr: int | None,
                           unclean_leader_election: bool | None) -> None:
    """A topic's min in-sync replicas and its unclean-election opt-in (its replication record,
    persisted, pushed to the replicas with their assignments)."""
    t = state.topics.get(name)
    rf = max((len(r) for r in t.status.replica_map.values()), default=1)
    meta = t.meta
    if min_isr is not None:
        if not 1 <= min_isr <= rf:
            raise CreateError(Error(ErrorCode.TopicInvalidConfiguration),
                              f"min_isr {min_isr} must be between 1 and the replication factor {rf}")
        meta = replace(meta, min_isr=min_isr)
    if unclean_leader_election is not None:
        meta = replace(meta, unclean_leader_election=bool(unclean_leader_election))
    with state.transaction():
        state.topics.update(name, meta=meta)
    log.info("%s: min_isr %s, unclean leader election %s", name, meta.min_isr, meta.unclean_leader_election)

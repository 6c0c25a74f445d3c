"""The admin API: topics, partitions, SPUs, SmartModules and consumer offsets (``fl.admin``).

Topic, partition and SPU calls are the SC's object API (Create 1001, Delete 1002, List 1003 over
TypeBuffers; sc.md). Consumer offsets live on the leader of ``consumer-offset``-0 and are listed
and deleted there (spu.md §6). A refused request raises the typed exception of the answer's
``ErrorCode`` (``TopicAlreadyExistsError``, ``TopicNotFoundError``...) with the SC's message.
"""

from __future__ import annotations

from typing import Any

from fluvial.client.smartmodule import SmartModuleInfo, smartmodule_spec
from fluvial.client.types import (
    ConsumerOffsetInfo, PartitionInfo, ReplicaInfo, SpuInfo, TopicInfo, topic_compression_from,
)
from fluvial.errors import FluvialError, TopicNotFoundError
from fluvial.protocol.content_type import validate_content_type
from fluvial.protocol.internal_api import CLEANUP_POLICIES
from fluvial.protocol.processor_objects import ProcessorSpec, SetProcessorStatus
from fluvial.protocol.topic_settings_api import TopicSettingsRequest
from fluvial.protocol.sc_api import (
    ObjectApiUpdateRequest,
    ObjectApiCreateRequest, ObjectApiDeleteRequest, ObjectApiListRequest, Status,
)
from fluvial.protocol.sc_objects import (
    AssignedReplicas, ComputedReplicas, CustomSpuSpec, EncryptionEnum,
    Endpoint, IngressAddr, IngressPort, Metadata, PartitionMap, PartitionSpec, SegmentBasedPolicy,
    SetCleanupConfig, SetContentType, SetReplicationConfig, SmartModuleSpec, SpuSpec, TopicSpec, TopicStorageConfig,
)
from fluvial.protocol.spu_api import (
    DeleteConsumerOffsetRequest, FetchConsumerOffsetsRequest, ReplicaKey,
)

__all__ = ["Admin"]


def _raise_for(status: Status) -> None:
    if status.is_error:
        detail = status.error_message
        raise status.error_code.exception(detail or None)


def _host_port(address: str) -> tuple[str, int]:
    from fluvial.client.profile import split_endpoint

    return split_endpoint(address)


def topic_info(meta: Metadata) -> TopicInfo:
    """The ``TopicInfo`` view of a topic's metadata."""
    spec: TopicSpec = meta.spec
    status = meta.status
    replicas = spec.replicas
    if isinstance(replicas, AssignedReplicas):
        assigned = {m.id: list(m.replicas) for m in replicas.maps}
    else:
        assigned = {p: list(r) for p, r in sorted(status.replica_map.items())}
    storage = spec.storage
    compression = spec.compression_type
    return TopicInfo(
        name=meta.name,
        partitions=spec.partition_count(),
        replication_factor=spec.replication_factor(),
        retention_seconds=spec.retention_secs(),
        segment_size=None if storage is None else storage.segment_size,
        max_partition_size=None if storage is None else storage.max_partition_size,
        compression=compression.name.rstrip("_").lower(),
        assigned=assigned,
        system=spec.system,
        resolution=status.resolution.name,
        reason=status.reason,
        ignore_rack_assignment=(isinstance(replicas, ComputedReplicas)
                                and replicas.ignore_rack_assignment),
        spec=spec,
    )


def partition_info(meta: Metadata) -> PartitionInfo:
    """The ``PartitionInfo`` view of a partition's metadata (name ``<topic>-<n>``)."""
    topic, _, index = meta.name.rpartition("-")
    spec: PartitionSpec = meta.spec
    st = meta.status
    followers = [ReplicaInfo(r.spu, r.hw, r.leo) for r in st.replicas]
    hw = st.leader.hw
    isr = [spec.leader] if spec.leader >= 0 else []
    isr += [f.spu for f in followers if f.spu >= 0 and f.spu != spec.leader and hw >= 0 and f.leo >= hw]
    return PartitionInfo(
        topic=topic,
        partition=int(index) if index.isdigit() else -1,
        leader=spec.leader,
        replicas=list(spec.replicas),
        resolution=st.resolution.name,
        hw=st.leader.hw,
        leo=st.leader.leo,
        isr=isr,
        lsr=st.lsr,
        followers=followers,
        size=st.size,
        base_offset=st.base_offset,
        is_being_deleted=st.is_being_deleted,
        system=spec.system,
    )


def spu_info(meta: Metadata) -> SpuInfo:
    spec: SpuSpec = meta.spec
    return SpuInfo(
        name=meta.name,
        id=spec.id,
        type=spec.spu_type.name,
        public_address=spec.public_endpoint.addr(),
        private_address=spec.private_endpoint.addr(),
        rack=spec.rack,
        resolution=meta.status.resolution.name,
    )


def cleanup_action(cleanup_policy: str | None, tombstone_retention: float | None,
                   min_compaction_lag: float | None, min_cleanable_dirty_ratio: float | None
                   ) -> SetCleanupConfig | None:
    """The Update action for these cleanup settings (None when all are None).

    Raises:
        ValueError: a setting out of range.
    """
    if cleanup_policy is not None and cleanup_policy not in CLEANUP_POLICIES:
        raise ValueError(f"cleanup policy {cleanup_policy!r} must be one of {', '.join(CLEANUP_POLICIES)}")
    for what, secs in (("tombstone retention", tombstone_retention), ("min compaction lag", min_compaction_lag)):
        if secs is not None and not 0 <= secs < 2**63:
            raise ValueError(f"{what} must be >= 0 seconds, got {secs}")
    if min_cleanable_dirty_ratio is not None and not 0 <= min_cleanable_dirty_ratio <= 1:
        raise ValueError(f"min cleanable dirty ratio must be between 0 and 1, got {min_cleanable_dirty_ratio}")
    values = (cleanup_policy, tombstone_retention, min_compaction_lag, min_cleanable_dirty_ratio)
    if all(v is None for v in values):
        return None
    return SetCleanupConfig(cleanup_policy, None if tombstone_retention is None else int(tombstone_retention),
                            None if min_compaction_lag is None else int(min_compaction_lag),
                            None if min_cleanable_dirty_ratio is None else round(min_cleanable_dirty_ratio * 100))


class Admin:
    """Cluster administration over a ``Fluvial`` connection (``fl.admin``)."""

    def __init__(self, fl: Any):
        self._fl = fl

    # -- topics --------------------------------------------------------------------------------

    async def create_topic(self, name: str, partitions: int = 1, replication: int = 1, *,
                           retention: int | None = None, segment_size: int | None = None,
                           max_partition_size: int | None = None, compression: Any = None,
                           assigned: dict[int, list[int]] | list[list[int]] | None = None,
                           ignore_rack: bool = False, system: bool = False,
                           min_isr: int | None = None, unclean_leader_election: bool | None = None,
                           cleanup_policy: str | None = None, tombstone_retention: float | None = None,
                           min_compaction_lag: float | None = None,
                           min_cleanable_dirty_ratio: float | None = None,
                           content_type: str | None = None,
                           dry_run: bool = False, timeout: float | None = None) -> None:
        """Create a topic and wait until the SC has provisioned it.

        Args:
            name: lowercase letters, digits and '-', at most 63 characters.
            partitions, replication: the computed layout (ignored with ``assigned``).
            retention: seconds to keep data (the cleanup policy); None for the default (7 days).
            segment_size: bytes per segment; None for the cluster default.
            max_partition_size: bytes a partition may hold; None for the default.
            compression: "any" (default: producers choose), "none", "gzip", "snappy", "lz4"
                or "zstd".
            assigned: explicit replica maps, ``{partition: [spu ids, leader first]}`` or a list
                of such lists (partition ids 0, 1, 2...).
            ignore_rack: place replicas without regard to racks.
            system: create a system topic (hidden from plain lists).
            min_isr: in-sync replicas a ReadCommitted produce needs (default 2 when the
                replication factor is 3 or more, else 1); see ``set_replication_config``.
            unclean_leader_election: allow an out-of-sync replica to become leader when no
                in-sync one is alive (availability over committed data; default False).
            cleanup_policy, tombstone_retention, min_compaction_lag, min_cleanable_dirty_ratio:
                log compaction (``"compact"`` keeps the latest record per key); see
                ``set_cleanup_config``. None keeps the defaults ("delete").
            content_type: what the values are ("application/json", "text/plain", ...);
                fluvial's producers check values against it (``set_content_type``).
            dry_run: only validate.
            timeout: seconds the SC may take to provision (the request's timeout).

        Raises:
            TopicAlreadyExistsError, TopicInvalidNameError, TopicInvalidConfigurationError,
            InvalidCreateRequestError, TopicNotProvisionedError...: as the SC answers.
            ValueError: a cleanup setting out of range (checked before the topic is created).
        """
        cleanup = cleanup_action(cleanup_policy, tombstone_retention, min_compaction_lag,
                                 min_cleanable_dirty_ratio)
        if content_type is not None:
            content_type = validate_content_type(content_type)
        if assigned is not None:
            maps = assigned.items() if isinstance(assigned, dict) else enumerate(assigned)
            replicas: Any = AssignedReplicas([PartitionMap(int(p), [int(s) for s in spus], None)
                                              for p, spus in sorted(maps)])
        else:
            replicas = ComputedReplicas(partitions, replication, ignore_rack)
        storage = None
        if segment_size is not None or max_partition_size is not None:
            storage = TopicStorageConfig(segment_size, max_partition_size)
        spec = TopicSpec(
            replicas=replicas,
            cleanup_policy=None if retention is None else SegmentBasedPolicy(int(retention)),
            storage=storage,
            compression_type=topic_compression_from(compression),
            deduplication=None,
            system=system,
        )
        timeout_ms = None if timeout is None else int(timeout * 1000)
        status = await self._fl.sc_call(ObjectApiCreateRequest.of(name, spec, dry_run, timeout_ms))
        _raise_for(status)
        if not dry_run and (min_isr is not None or unclean_leader_election is not None):
            await self.set_replication_config(name, min_isr=min_isr,
                                              unclean_leader_election=unclean_leader_election)
        if not dry_run and cleanup is not None:
            _raise_for(await self._fl.sc_call(ObjectApiUpdateRequest.of(TopicSpec, name, cleanup)))
        if not dry_run and content_type:
            await self.set_content_type(name, content_type)

    async def set_content_type(self, name: str, content_type: str) -> None:
        """Set (or with "" remove) a topic's content type (fluvial's extension of the Update
        API). fluvial's producers then check each value against it (docs/processors.md).

        Raises:
            ValueError: not of the form type/subtype. TopicNotFoundError.
        """
        action = SetContentType(validate_content_type(content_type))
        _raise_for(await self._fl.sc_call(ObjectApiUpdateRequest.of(TopicSpec, name, action)))

    async def content_type(self, name: str) -> str:
        """A topic's content type ("" = none).

        Raises:
            TopicNotFoundError. FluvialError: the SC has no such setting (not fluvial).
        """
        resp = await self._fl.sc_call(TopicSettingsRequest(name))
        if not resp.error_code.ok:
            raise resp.error_code.exception()
        return resp.content_type

    async def set_cleanup_config(self, name: str, *, cleanup_policy: str | None = None,
                                 tombstone_retention: float | None = None,
                                 min_compaction_lag: float | None = None,
                                 min_cleanable_dirty_ratio: float | None = None) -> None:
        """Change a topic's log compaction settings (fluvial's extension of the Update API; a
        Fluvio SC refuses it). ``None`` keeps a setting. Every replica applies them at once.

        Args:
            cleanup_policy: "delete" (retention deletes old segments) or "compact" (the latest
                record per key is kept; a keyed record with an empty value deletes its key).
            tombstone_retention: seconds a tombstone is kept before compaction drops it.
            min_compaction_lag: seconds a segment's newest record must age before compaction.
            min_cleanable_dirty_ratio: share (0..1) of uncleaned sealed bytes that starts a pass.

        Raises:
            ValueError: a setting out of range. TopicNotFoundError.
        """
        action = cleanup_action(cleanup_policy, tombstone_retention, min_compaction_lag,
                                min_cleanable_dirty_ratio)
        if action is not None:
            _raise_for(await self._fl.sc_call(ObjectApiUpdateRequest.of(TopicSpec, name, action)))

    async def set_replication_config(self, name: str, *, min_isr: int | None = None,
                                     unclean_leader_election: bool | None = None) -> None:
        """Change a topic's min in-sync replicas and unclean-election opt-in (fluvial's
        extension of the Update API; a Fluvio SC refuses it). ``None`` keeps a setting.

        Raises:
            TopicNotFoundError, TopicInvalidConfigurationError (min_isr outside 1..RF).
        """
        action = SetReplicationConfig(min_isr, unclean_leader_election)
        _raise_for(await self._fl.sc_call(ObjectApiUpdateRequest.of(TopicSpec, name, action)))

    async def delete_topic(self, name: str, *, force: bool = False) -> None:
        """Delete a topic (``force`` is needed for a system topic).

        Raises:
            TopicNotFoundError: no such topic.
            SystemSpecDeletionAttemptError: a system topic without ``force``.
        """
        _raise_for(await self._fl.sc_call(ObjectApiDeleteRequest.of(TopicSpec, name, force)))

    async def list_topics(self, filters: list[str] | tuple[str, ...] = (), *,
                          system: bool = False) -> list[TopicInfo]:
        """The topics whose names contain one of ``filters`` (all without filters); system
        topics instead with ``system=True``."""
        resp = await self._fl.sc_call(ObjectApiListRequest.of(TopicSpec, list(filters), False, system))
        return [topic_info(m) for m in resp.items]

    async def describe_topic(self, name: str) -> TopicInfo:
        """One topic (system topics included).

        Raises:
            TopicNotFoundError: no such topic.
        """
        for system in (False, True):
            resp = await self._fl.sc_call(ObjectApiListRequest.of(TopicSpec, [name], False, system))
            for m in resp.items:
                if m.name == name:
                    return topic_info(m)
        raise TopicNotFoundError(detail=f"Topic not found: {name}")

    # -- partitions ----------------------------------------------------------------------------

    async def list_partitions(self, topic: str | None = None, *,
                              system: bool = False) -> list[PartitionInfo]:
        """Every partition (of ``topic`` if given), sorted by topic and index. System topics'
        partitions are listed with ``system=True``."""
        resp = await self._fl.sc_call(ObjectApiListRequest.of(PartitionSpec, [], False, system))
        infos = [partition_info(m) for m in resp.items]
        if topic is not None:
            infos = [p for p in infos if p.topic == topic]
        return sorted(infos, key=lambda p: (p.topic, p.partition))

    # -- SPUs ----------------------------------------------------------------------------------

    async def list_spus(self) -> list[SpuInfo]:
        """Every SPU the SC knows, managed and custom, sorted by id."""
        resp = await self._fl.sc_call(ObjectApiListRequest.of(SpuSpec))
        return sorted((spu_info(m) for m in resp.items), key=lambda s: s.id)

    async def register_spu(self, spu_id: int, public_address: str, private_address: str, *,
                           name: str | None = None, rack: str | None = None) -> None:
        """Register a custom SPU (``CustomSpu``) that will connect with ``spu_id``.

        Args:
            public_address: ``host:port`` clients dial.
            private_address: ``host:port`` of its private (SC and replication) listener.
            name: the object name; default ``custom-spu-<id>``.

        Raises:
            SpuAlreadyExistsError: the name or id is taken.
        """
        pub_host, pub_port = _host_port(public_address)
        priv_host, priv_port = _host_port(private_address)
        spec = CustomSpuSpec(
            id=spu_id,
            public_endpoint=IngressPort(pub_port, [IngressAddr(None, pub_host)], EncryptionEnum.PLAINTEXT),
            private_endpoint=Endpoint(priv_port, priv_host, EncryptionEnum.PLAINTEXT),
            rack=rack,
            public_endpoint_local=None,
        )
        status = await self._fl.sc_call(ObjectApiCreateRequest.of(name or f"custom-spu-{spu_id}", spec))
        _raise_for(status)

    async def unregister_spu(self, spu: int | str) -> None:
        """Unregister a custom SPU by id (int) or name (str).

        Raises:
            SpuNotFoundError: no such custom SPU.
        """
        status = await self._fl.sc_call(ObjectApiDeleteRequest.of(CustomSpuSpec, spu))
        _raise_for(status)

    # -- consumer offsets ----------------------------------------------------------------------

    async def list_consumer_offsets(self) -> list[ConsumerOffsetInfo]:
        """Every stored consumer offset, sorted by consumer, topic and partition."""
        conn = await self._fl.offsets_connection()
        resp = await conn.call(FetchConsumerOffsetsRequest(None), timeout=self._fl.request_timeout)
        if not resp.error_code.ok:
            raise resp.error_code.exception()
        out = [ConsumerOffsetInfo(c.consumer_id, c.replica_id.topic, c.replica_id.partition,
                                  c.offset, c.modified_time) for c in resp.consumers]
        return sorted(out, key=lambda c: (c.consumer_id, c.topic, c.partition))

    async def delete_consumer_offset(self, consumer_id: str, topic: str, partition: int) -> None:
        """Forget ``consumer_id``'s offset for ``topic``-``partition``."""
        conn = await self._fl.offsets_connection()
        resp = await conn.call(DeleteConsumerOffsetRequest(ReplicaKey(topic, partition), consumer_id),
                               timeout=self._fl.request_timeout)
        if not resp.error_code.ok:
            raise resp.error_code.exception()

    # -- SmartModules --------------------------------------------------------------------------

    async def create_smartmodule(self, name: str, wasm: bytes) -> None:
        """Store a SmartModule (raw or gzipped wasm) under ``name``, for consumers to name.

        Raises:
            SmartModuleError: the name is taken.
        """
        _raise_for(await self._fl.sc_call(ObjectApiCreateRequest.of(name, smartmodule_spec(wasm))))

    async def list_smartmodules(self) -> list[SmartModuleInfo]:
        """Every SmartModule (``SmartModuleInfo``: name, stored size), sorted by name."""
        resp = await self._fl.sc_call(ObjectApiListRequest.of(SmartModuleSpec, [], True))
        return sorted((SmartModuleInfo(m.name, m.spec.summary.wasm_length if m.spec.summary
                                       else len(m.spec.wasm.payload)) for m in resp.items),
                      key=lambda i: i.name)

    async def delete_smartmodule(self, name: str) -> None:
        """Delete a SmartModule.

        Raises:
            SmartModuleNotFoundError: no such module.
        """
        status = await self._fl.sc_call(ObjectApiDeleteRequest.of(SmartModuleSpec, name))
        if status.is_error:
            raise status.error_code.exception(status.error_code.message)  # names the module

    # -- processors (fluvial's own kind; docs/processors.md) -----------------------------------

    async def create_processor(self, name: str, spec: Any) -> None:
        """Store a processor (``fluvial.processor.spec.processor_spec`` builds the spec).

        Raises:
            FluvialError: the name is taken, or the SC refuses the spec.
        """
        _raise_for(await self._fl.sc_call(ObjectApiCreateRequest.of(name, spec)))

    async def list_processors(self, filters: list[str] | tuple[str, ...] = ()) -> list[Metadata]:
        """The processors (``Metadata``: name, spec, status), sorted by name."""
        resp = await self._fl.sc_call(ObjectApiListRequest.of(ProcessorSpec, list(filters)))
        return sorted(resp.items, key=lambda m: m.name)

    async def describe_processor(self, name: str) -> Metadata:
        """One processor. Raises FluvialError when there is none of that name."""
        for m in await self.list_processors([name]):
            if m.name == name:
                return m
        raise FluvialError(detail=f"processor {name!r} not found")

    async def delete_processor(self, name: str) -> None:
        """Delete a processor (a runtime running it stops at its next status report)."""
        _raise_for(await self._fl.sc_call(ObjectApiDeleteRequest.of(ProcessorSpec, name)))

    async def set_processor_status(self, name: str, status: Any) -> None:
        """Report a processor's status (what its runtime does)."""
        _raise_for(await self._fl.sc_call(ObjectApiUpdateRequest.of(ProcessorSpec, name,
                                                                    SetProcessorStatus(status))))


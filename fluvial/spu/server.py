"""The SPU process: public and private listeners, the link to the SC, the replicas it holds.

``serve_spu(config, task_status=)`` binds both listeners, then keeps a link to the SC: register,
watch the replica assignments (the SC pushes this SPU's complete desired state), apply them
(open, create, re-role or delete replicas), and report replica state on every change and at least
every ``heartbeat_seconds``. If the SC goes away the SPU keeps serving what it has and reconnects.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from fluvial.errors import OK, Error, ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.net.server import ServerLimits, listener_port, serve_tcp
from fluvial.net.tls import ClusterTls, allowed, principal_of
from fluvial.protocol import internal_api as ia
from fluvial.protocol.api import (
    ApiVersionsResponse, encode_error_response, encode_response,
)
from fluvial.net.dispatch import decode_or_refuse
from fluvial.spu import public
from fluvial.spu.consumer_offsets import CONSUMER_OFFSET_TOPIC, ConsumerOffsetStore
from fluvial.spu.partition import PartitionReplica
from fluvial.spu.replication import handle_fetch_replica, handle_offset_for_leader_epoch, run_follower
from fluvial.storage import errors as serr
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.replica import Replica

log = logging.getLogger("fluvial.spu")


@dataclass
class SpuConfig:
    spu_id: int
    data_dir: Path
    sc_host: str = "127.0.0.1"
    sc_port: int = 9004
    host: str = "127.0.0.1"
    public_port: int = 0
    private_port: int = 0
    advertised_host: str | None = None
    advertised_private_port: int | None = None  # e.g. behind a proxy; default: the bound port
    rack: str | None = None
    heartbeat_seconds: float = 1.0
    replica_lag_time_max_seconds: float = 10.0
    checkpoint_seconds: float = 5.0
    retention_check_seconds: float = 60.0
    max_batch_bytes: int = 16 * 1024 * 1024
    max_fetch_bytes: int = 8 * 1024 * 1024  # a response holds at most this (or one whole batch)
    flush: str = "sync"
    limits: ServerLimits = field(default_factory=ServerLimits)
    tls: ClusterTls | None = None  # None: plaintext on every port
    policy: object | None = None  # fluvial.auth.Policy; None allows everything (no TLS)


class SpuContext:
    def __init__(self, config: SpuConfig, nursery: trio.Nursery):
        self.config = config
        self.spu_id = config.spu_id
        self.nursery = nursery
        self.replicas: dict[tuple[str, int], PartitionReplica] = {}
        self.topics: set[str] = set()
        self.max_batch_bytes = config.max_batch_bytes
        self.max_fetch_bytes = config.max_fetch_bytes
        self.max_request_bytes = config.limits.max_frame_bytes
        self.offsets_leader = -1
        self.peers: dict[int, ia.SpuAddress] = {}
        self._offsets: ConsumerOffsetStore | None = None
        self.report_wanted = trio.Event()
        self.public_port = 0
        self.private_port = 0
        self.policy = config.policy
        self._member_ctx = config.tls.member_client_context() if config.tls else None

    def connect_member(self, host: str, port: int):
        """A connection to another member (the SC or an SPU), with mutual TLS when configured."""
        if self._member_ctx is None:
            return open_connection(host, port)
        return open_connection(host, port, ssl_context=self._member_ctx,
                               server_hostname=self.config.tls.domain)

    # -------------------------------------------------------------------------------- lookups

    def knows_topic(self, topic: str) -> bool:
        return topic in self.topics

    def offset_store(self) -> ConsumerOffsetStore | None:
        r = self.replicas.get((CONSUMER_OFFSET_TOPIC, 0))
        if r is None or not r.is_leader:
            return None
        if self._offsets is None or self._offsets.replica is not r:
            store = ConsumerOffsetStore(r)
            store.load()
            self._offsets = store
        return self._offsets

    async def store_consumer_offset(self, consumer_id: str, topic: str, partition: int,
                                    offset: int, delete: bool) -> Error:
        store = self.offset_store()
        try:
            if store is not None:
                key = (consumer_id, topic, partition)
                await (store.delete(key) if delete else store.put(key, offset))
                return OK
            peer = self.peers.get(self.offsets_leader)
            if peer is None:
                return Error(ErrorCode.PartitionNotLeader)
            with trio.fail_after(10):
                async with self.connect_member(peer.host, peer.port) as c:
                    resp = await c.call(ia.UpdateConsumerOffsetStoreRequest(
                        self.spu_id, consumer_id, topic, partition, offset, delete))
            return resp.error_code
        except serr.StorageError:
            return Error(ErrorCode.StorageError)
        except (OSError, trio.TooSlowError, Exception) as e:  # noqa: BLE001 - reported to the client
            return Error.other(f"consumer offset store unreachable: {e}")

    # ---------------------------------------------------------------------------- replicas

    def replica_config(self, a: ia.ReplicaAssignment) -> ReplicaConfig:
        s = a.settings
        return ReplicaConfig(segment_max_bytes=s.segment_max_bytes,
                             retention_seconds=s.retention_seconds,
                             max_partition_bytes=s.max_partition_bytes,
                             flush=self.config.flush, max_batch_bytes=self.max_batch_bytes)

    def apply(self, push: ia.WatchReplicasResponse) -> None:
        """Make the replicas on disk match the SC's desired state for this SPU."""
        self.peers = {p.spu_id: p for p in push.peers}
        self.offsets_leader = push.offsets_leader
        wanted = {(a.topic, a.partition): a for a in push.replicas}
        self.topics = {a.topic for a in push.replicas}
        for key in list(self.replicas):
            if key not in wanted:
                self._drop(key)
        for key, a in wanted.items():
            r = self.replicas.get(key)
            if r is None:
                try:
                    storage = Replica.open(self.config.data_dir, a.topic, a.partition,
                                           self.replica_config(a))
                except serr.StorageError as e:
                    log.error("cannot open replica %s-%s: %s", a.topic, a.partition, e)
                    continue
                r = PartitionReplica(storage, a, self.spu_id)
                r.on_change = self.report_wanted.set
                self.replicas[key] = r
                self.nursery.start_soon(r.run_flusher)
                self._follow(r)
            elif r.reassign(a):
                self._follow(r)
            if r.drop_failed_followers(set(self.peers)):
                self.report_wanted.set()
        self.report_wanted.set()

    def _follow(self, r: PartitionReplica) -> None:
        """(Re)start the follower task for ``r`` when it follows; stop it when it leads."""
        if r.follower_scope is not None:
            r.follower_scope.cancel()
            r.follower_scope = None
        if r.is_leader or r.closed:
            return
        scope = trio.CancelScope()
        r.follower_scope = scope

        async def follow():
            # cancelled when the assignment changes; an error caught up with that cancellation
            # (e.g. the leader's connection dropping at the same moment) must not end the SPU
            with scope:
                try:
                    await run_follower(self, r)
                except* Exception as eg:
                    log.warning("%s-%s: follower task ended: %s", r.topic, r.partition, _describe(eg))

        self.nursery.start_soon(follow)

    async def run_housekeeping(self) -> None:
        """Off the request path: checkpoint HWs (in a worker thread) and enforce retention
        (whole old segments; on the event loop so it never races an append)."""
        last_retention = -1e18
        while True:
            await trio.sleep(self.config.checkpoint_seconds)
            for r in list(self.replicas.values()):
                if r.closed or r.storage.hw == r.checkpointed_hw:
                    continue  # unchanged: no rewrite, no fsync
                try:
                    r.checkpointed_hw = await trio.to_thread.run_sync(r.storage.checkpoint_hw)
                except (OSError, serr.StorageError) as e:
                    log.error("%s-%s: HW checkpoint failed: %s", r.topic, r.partition, e)
            now = trio.current_time()
            if now - last_retention >= self.config.retention_check_seconds:
                last_retention = now
                for r in list(self.replicas.values()):
                    if r.closed:
                        continue
                    try:
                        deleted = r.storage.enforce_retention()
                    except (OSError, serr.StorageError) as e:
                        log.error("%s-%s: retention failed: %s", r.topic, r.partition, e)
                        continue
                    if deleted:
                        log.info("%s-%s: retention deleted %d segment(s); log start %d",
                                 r.topic, r.partition, len(deleted), r.log_start_offset)
                        r.notify()
                        self.report_wanted.set()

    async def run_isr_checks(self) -> None:
        """Drop followers that lag longer than ``replica_lag_time_max_seconds`` from the ISR."""
        lag = self.config.replica_lag_time_max_seconds
        while True:
            await trio.sleep(lag / 4)
            now = trio.current_time()
            for r in list(self.replicas.values()):
                st = r.leader_state
                if st is not None and st.maybe_shrink_isr(now, lag):
                    log.warning("%s-%s: ISR shrunk to %s", r.topic, r.partition, sorted(st.isr))
                    r.update_hw()
                    r.notify()
                    self.report_wanted.set()

    def _drop(self, key) -> None:
        r = self.replicas.pop(key)
        r.closed = True
        if r.follower_scope is not None:
            r.follower_scope.cancel()
        r._flush_wanted.set()
        r.notify()
        path = Path(self.config.data_dir) / f"{key[0]}-{key[1]}"
        try:
            r.storage.close()
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def report(self) -> ia.ReportReplicasRequest:
        reps = []
        for (topic, partition), r in sorted(self.replicas.items()):
            follower_leos = []
            if r.leader_state is not None:
                for spu, f in sorted(r.leader_state.followers.items()):
                    follower_leos += [spu, f.leo]
            reps.append(ia.ReplicaReport(
                topic, partition, r.leader_epoch, r.is_leader, r.storage.durable_leo, r.hw,
                r.log_start_offset, r.storage.size_bytes(), r.isr(), follower_leos,
                str(r.failed) if r.failed else None))
        return ia.ReportReplicasRequest(self.spu_id, reps)

    def close(self) -> None:
        for r in self.replicas.values():
            r.closed = True
            try:
                r.storage.checkpoint_hw()
            except (OSError, serr.StorageError):
                pass
            r.storage.close()


# ------------------------------------------------------------------------------- private API


MAX_PRIVATE_REQUEST_BYTES = 1 << 20  # followers' fetches and offset updates are tiny


async def handle_private(ctx: SpuContext, conn, payload: bytes) -> None:
    decoded = await decode_or_refuse(conn, payload, ia.INTERNAL_SPU_REQUESTS,
                                     MAX_PRIVATE_REQUEST_BYTES, "private ")
    if decoded is None:
        return
    header, req = decoded
    if header.api_key == 18:
        resp = ApiVersionsResponse(OK, ia.advertise(ia.INTERNAL_SPU_REQUESTS), "0.17.3")
    elif not allowed(ctx.policy, conn, "member"):
        log.warning("private %s: %s is not a member; refused", conn.peer, principal_of(conn))
        await conn.send(encode_error_response(header.correlation_id, Error(ErrorCode.PermissionDenied)))
        conn.close()
        return
    elif isinstance(req, ia.FetchReplicaRequest):
        resp = await handle_fetch_replica(ctx, req)
    elif isinstance(req, ia.OffsetForLeaderEpochRequest):
        resp = await handle_offset_for_leader_epoch(ctx, req)
    elif isinstance(req, ia.UpdateConsumerOffsetStoreRequest):
        store = ctx.offset_store()
        if store is None:
            resp = ia.UpdateConsumerOffsetStoreResponse(Error(ErrorCode.PartitionNotLeader))
        else:
            resp = ia.UpdateConsumerOffsetStoreResponse(await ctx.store_consumer_offset(
                req.consumer_id, req.topic, req.partition, req.offset, req.delete))
    else:
        resp = type(req).Response(Error(ErrorCode.NotLeaderForPartition))
    await conn.send(encode_response(resp, header.correlation_id, header.api_version))


# -------------------------------------------------------------------------------- SC link


async def _sc_session(ctx: SpuContext, registered: trio.Event) -> None:
    cfg = ctx.config
    host = cfg.advertised_host or cfg.host
    async with ctx.connect_member(cfg.sc_host, cfg.sc_port) as conn:
        await conn.handshake()
        resp = await conn.call(ia.RegisterSpuRequest(
            cfg.spu_id, host, ctx.public_port, host,
            cfg.advertised_private_port or ctx.private_port, cfg.rack), timeout=30)
        if not resp.error_code.ok:
            raise RuntimeError(f"SC refused registration: {resp.message or resp.error_code.message}")
        log.info("spu %d registered with SC %s:%d", cfg.spu_id, cfg.sc_host, cfg.sc_port)

        async def reporter():
            while True:
                await conn.call(ctx.report(), timeout=30)
                with trio.move_on_after(cfg.heartbeat_seconds):
                    await ctx.report_wanted.wait()
                ctx.report_wanted = trio.Event()

        async with trio.open_nursery() as n:
            first = True
            async with conn.open_stream(ia.WatchReplicasRequest(cfg.spu_id)) as stream:
                async for push in stream:
                    ctx.apply(push)
                    if first:
                        first = False
                        n.start_soon(reporter)
                        registered.set()
            n.cancel_scope.cancel()


def _describe(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


async def run_sc_link(ctx: SpuContext, task_status=trio.TASK_STATUS_IGNORED) -> None:
    registered = trio.Event()
    started = False
    delay = 0.1
    while True:
        try:
            async with trio.open_nursery() as n:
                n.start_soon(_sc_session, ctx, registered)
                if not started:
                    await registered.wait()
                    task_status.started()
                    started = True
        except Exception as e:  # noqa: BLE001 - the link is retried whatever broke it
            log.warning("spu %d: SC link lost: %s; retrying", ctx.spu_id, _describe(e))
        await trio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def serve_spu(config: SpuConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run one SPU until cancelled. ``task_status.started((public_port, private_port))`` once both
    listeners are bound and the SC has accepted the registration and sent the assignments."""
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    async with trio.open_nursery() as nursery:
        ctx = SpuContext(config, nursery)
        try:
            tls = config.tls
            pub = await nursery.start(partial(
                serve_tcp, partial(public.handle_request, ctx), config.host, config.public_port,
                limits=config.limits, ssl_context=tls.public_server_context() if tls else None))
            priv = await nursery.start(partial(
                serve_tcp, partial(handle_private, ctx), config.host, config.private_port,
                limits=config.limits, ssl_context=tls.private_server_context() if tls else None))
            ctx.public_port, ctx.private_port = listener_port(pub), listener_port(priv)
            await nursery.start(run_sc_link, ctx)
            nursery.start_soon(ctx.run_isr_checks)
            nursery.start_soon(ctx.run_housekeeping)
            task_status.started((ctx.public_port, ctx.private_port))
            await trio.sleep_forever()
        finally:
            ctx.close()

"""What an SPU holds: its replicas and their directories, applied from the SC's desired state.

``SpuContext`` is the state every part of the SPU shares (the public and private handlers, the
SC link, the follower tasks): the replicas by ``(topic, partition)``, the peers, the leader lease,
the consumer-offset store, and the housekeeping loops (HW checkpoints in one shared file,
retention, verification of sealed segments, ISR shrinking).

Rules this module keeps:

* **Topic incarnations.** Each replica directory records the incarnation of its topic
  (``ReplicaAssignment.topic_id``) in ``INCARNATION_FILE``. A directory of another incarnation, or
  one holding files but no incarnation while the assignment names one, is a deleted topic's
  leftover: it is removed and the replica starts empty, so a re-created topic never serves the
  old topic's records (to principals that may not read them). After the first push that follows
  each registration, replica directories the SC does not want (orphans) are removed
  (``remove_orphans``, called by ``fluvial.spu.sc_link``).
* **One replica never takes the SPU down.** An exception opening, re-roling or dropping one
  replica is logged and reported (``ReplicaReport.error``); the SC link and the other replicas
  carry on. A replica whose storage failed (a failed fsync, a short-circuited log, a corrupt
  batch found by the background verification) reports an error too, so the SC moves leadership.
* **The leader lease.** One ``Lease`` per SPU, shared by every replica, which checks it before
  it appends or acknowledges as leader (the SC link sets and renews it).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from fluvial.durable import fsync_dir
from fluvial.errors import OK, Error, ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import internal_api as ia
from fluvial.protocol.sc_objects import CONSUMER_OFFSET_TOPIC
from fluvial.spu.checkpoints import HwCheckpoint, hw_entries, prepare_epochs
from fluvial.spu.compaction import apply_cleanup_settings, cleanup_settings, compact_replicas
from fluvial.spu.consumer_offsets import ConsumerOffsetStore
from fluvial.spu.partition import Lease, PartitionReplica
from fluvial.spu.replication import Following, LeaderFetcher, run_fetcher
from fluvial.storage import errors as serr
from fluvial.storage.checkpoint import write_atomic
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.group_commit import FlushPlacement
from fluvial.storage.replica import Replica

if TYPE_CHECKING:
    from fluvial.spu.server import SpuConfig

log = logging.getLogger("fluvial.spu")

FULL_REPORT_EVERY = 5  # every 5th report rebuilds every entry (``SpuContext.report``)


# ------------------------------------------------------------------------ replica directories

INCARNATION_FILE = "topic.id"  # the topic incarnation a replica directory holds (storage ignores it)


def replica_dir(data_dir, topic: str, partition: int) -> Path:
    """Where ``Replica.open`` keeps ``topic``/``partition``: ``<data_dir>/<topic>-<partition>``."""
    return Path(data_dir) / f"{topic}-{partition}"


def parse_replica_dir(name: str) -> tuple[str, int] | None:
    """``(topic, partition)`` of a replica directory name ``<topic>-<partition>``, else None."""
    topic, sep, partition = name.rpartition("-")
    if not sep or not topic or not partition.isdigit() or partition != str(int(partition)):
        return None
    return topic, int(partition)


def read_incarnation(path: Path) -> int | None:
    """The topic incarnation recorded in replica directory ``path``; None when there is none (or
    it is unreadable, which counts the same: the directory cannot prove it is this topic's)."""
    try:
        return int((path / INCARNATION_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def is_other_incarnation(recorded: int | None, holds_files: bool, assigned: int) -> bool:
    """Whether a replica directory belongs to another incarnation of its topic than ``assigned``.

    An SC that does not say (``assigned == ia.NO_TOPIC_ID``) never makes a directory stale. A
    directory with files but no incarnation was left by a replica from before incarnations were
    recorded (the marker is written before the replica's first file), so it cannot be told apart
    from a deleted topic's leftover and is not trusted.
    """
    if assigned == ia.NO_TOPIC_ID:
        return False
    if recorded is None:
        return holds_files
    return recorded != assigned


def prepare_replica_dir(data_dir, topic: str, partition: int, topic_id: int) -> bool:
    """Make ``<topic>-<partition>`` safe to open for incarnation ``topic_id``: remove it when it
    holds another incarnation, then record ``topic_id`` (atomically, before any log file exists).
    Returns True when an old incarnation was removed."""
    path = replica_dir(data_dir, topic, partition)
    recorded = read_incarnation(path)
    holds_files = path.is_dir() and any(path.iterdir())
    removed = is_other_incarnation(recorded, holds_files, topic_id)
    if removed:
        log.warning("%s-%s: directory holds topic incarnation %s, not %d: removed, starting empty",
                    topic, partition, recorded, topic_id)
        shutil.rmtree(path)
        recorded = None
    if topic_id != ia.NO_TOPIC_ID and recorded != topic_id:
        path.mkdir(parents=True, exist_ok=True)
        write_atomic(os.fspath(path / INCARNATION_FILE), b"%d\n" % topic_id)
        fsync_dir(os.fspath(data_dir))  # the removal and the new directory are durable
    return removed


def orphan_replica_dirs(data_dir, wanted) -> list[Path]:
    """Replica directories under ``data_dir`` whose ``(topic, partition)`` is not in ``wanted``."""
    try:
        entries = list(Path(data_dir).iterdir())
    except FileNotFoundError:
        return []
    return sorted(p for p in entries
                  if p.is_dir() and (key := parse_replica_dir(p.name)) is not None and key not in wanted)


def replica_health(r: PartitionReplica) -> str | None:
    """Why replica ``r`` cannot be trusted to lead (its storage failed), or None."""
    if r.failed is not None:
        return f"flush failed: {r.failed}"
    if r.storage.short_circuited is not None:
        return f"storage short-circuited: {r.storage.short_circuited}"
    if r.storage.corrupt_offset is not None:
        return f"corrupt batch at offset {r.storage.corrupt_offset}"
    return None

class SpuContext:
    """What one SPU holds and does with it: its replicas, the SC's view it applies, its lease,
    its consumer offsets and the housekeeping that runs beside the requests."""

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
        self.fetchers: dict[int, LeaderFetcher] = {}  # leader SPU -> what this SPU follows from it
        self._offsets: ConsumerOffsetStore | None = None
        self.groups = None  # fluvial.spu.group_coordinator.GroupCoordinator, while leading offsets
        self.report_wanted = trio.Event()
        # replicas the last push could not apply: key -> (assignment, why), reported to the SC
        self.broken: dict[tuple[str, int], tuple[ia.ReplicaAssignment, str]] = {}
        # report entries as last built, and the replicas changed since (``report``)
        self._entries: dict[tuple[str, int], ia.ReplicaReport] = {}
        self._stale: set[tuple[str, int]] = set()
        self._reports_built = 0
        # granted at registration (RegisterSpuResponse.lease_ms), renewed by answered reports
        self.lease = Lease(0)
        self.public_port = 0
        self.private_port = 0
        self.policy = config.policy
        self._member_ctx = config.tls.member_client_context() if config.tls else None
        self.flushes = FlushPlacement()  # where fsyncs run: this SPU's disk history (partition.flush_placed)
        self.hw_file = HwCheckpoint(config.data_dir)  # every replica's HW, one file write per interval
        self._take_overs: dict[tuple[str, int], PartitionReplica] = {}  # waiting for their epoch file

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
                             flush=self.config.flush, max_batch_bytes=self.max_batch_bytes,
                             **cleanup_settings(s))

    async def apply_push(self, push: ia.WatchReplicasResponse) -> None:
        """``apply``, with the replicas it opens opened first in a worker thread (directories,
        segment recovery, fsyncs): an SPU given thousands of partitions at once keeps answering
        and reporting meanwhile. Returns once the take-overs it asked for lead (or failed), their
        epoch files written in one more thread hop (``take_over_queued``)."""
        new = [a for a in push.replicas if (a.topic, a.partition) not in self.replicas]
        # known meanwhile: a produce to them is retried (NotLeader), not refused (TopicNotFound)
        self.topics |= {a.topic for a in new}
        opened = await trio.to_thread.run_sync(self._open_storages, new) if new else {}
        try:
            self.apply(push, opened)
        finally:
            for storage in opened.values():  # not taken: the push no longer wanted it
                if not isinstance(storage, BaseException):
                    storage.close()
        await self.take_over_queued()

    def _open_storages(self, assignments: list[ia.ReplicaAssignment]) -> dict:
        """(topic, partition) -> the opened ``Replica``, or the exception opening it raised.
        Runs in a worker thread: it touches files only, no SPU state."""
        out: dict = {}
        for a in assignments:
            try:
                prepare_replica_dir(self.config.data_dir, a.topic, a.partition, a.topic_id)
                storage = Replica.open(self.config.data_dir, a.topic, a.partition, self.replica_config(a))
                self.hw_file.restore(storage, a.topic_id)
                out[(a.topic, a.partition)] = storage
            except Exception as e:  # noqa: BLE001 - raised again where the replica is opened
                out[(a.topic, a.partition)] = e
        return out

    def apply(self, push: ia.WatchReplicasResponse, opened: dict | None = None) -> None:
        """Make the replicas on disk match the SC's desired state for this SPU. A replica that
        cannot be opened, re-roled or dropped is logged and reported; the others are applied.
        ``opened``: storages ``_open_storages`` opened already (taken from it as used)."""
        opened = {} if opened is None else opened
        self.peers = {p.spu_id: p for p in push.peers}
        self.offsets_leader = push.offsets_leader
        wanted = {(a.topic, a.partition): a for a in push.replicas}
        self.topics = {a.topic for a in push.replicas}
        for key in list(self.replicas):
            if key not in wanted:
                try:
                    self._drop(key)
                except Exception:  # noqa: BLE001 - the SC no longer wants it; the rest goes on
                    log.exception("%s-%s: dropping the replica failed", *key)
        self.broken = {}
        self._stale |= set(wanted)
        for key, a in wanted.items():
            try:
                self._apply_one(key, a, opened)
            except Exception as e:  # noqa: BLE001 - reported to the SC, which moves leadership
                log.exception("%s-%s: cannot apply the assignment", *key)
                self.broken[key] = (a, f"{type(e).__name__}: {e}")
        self.report_wanted.set()

    def _apply_one(self, key: tuple[str, int], a: ia.ReplicaAssignment, opened: dict) -> None:
        r = self.replicas.get(key)
        if r is not None and a.topic_id != ia.NO_TOPIC_ID and r.assignment.topic_id != a.topic_id:
            log.warning("%s-%s: the topic was re-created (incarnation %d -> %d): dropping the old replica",
                        *key, r.assignment.topic_id, a.topic_id)
            self._drop(key)
            r = None
        if r is None:
            r = self._open(key, a, opened.pop(key, None))
        else:
            apply_cleanup_settings(r.storage, a.settings)
            if r.reassign(a):
                self._follow(r)
        if r.drop_failed_followers(set(self.peers)):
            self.report_wanted.set()

    def _open(self, key: tuple[str, int], a: ia.ReplicaAssignment, storage=None) -> PartitionReplica:
        if isinstance(storage, BaseException):
            raise storage
        if storage is None:
            prepare_replica_dir(self.config.data_dir, a.topic, a.partition, a.topic_id)
            storage = Replica.open(self.config.data_dir, a.topic, a.partition, self.replica_config(a))
            self.hw_file.restore(storage, a.topic_id)
        try:
            r = PartitionReplica(storage, a, self.spu_id, lease=self.lease,
                                 epoch_writer=self._queue_take_over, flushes=self.flushes)
        except BaseException:
            storage.close()
            raise
        r.on_change = self.report_wanted.set
        r.on_notify = self.mark_changed
        self.replicas[key] = r
        self.nursery.start_soon(r.run_flusher)
        self._follow(r)
        return r

    def remove_orphans(self, push: ia.WatchReplicasResponse) -> None:
        """Remove the replica directories that ``push`` (the SC's complete desired state for this
        SPU) does not want: left by topics deleted while this SPU was away."""
        wanted = {(a.topic, a.partition) for a in push.replicas} | set(self.replicas)
        for path in orphan_replica_dirs(self.config.data_dir, wanted):
            log.warning("removing orphan replica directory %s (not assigned to this SPU)", path.name)
            shutil.rmtree(path, ignore_errors=True)

    def _follow(self, r: PartitionReplica) -> None:
        """Move ``r`` to the fetcher of its current leader when it follows (one ``LeaderFetcher``
        and task per leader SPU, fluvial.spu.replication); out of every fetcher when it leads."""
        key = (r.topic, r.partition)
        for fetcher in self.fetchers.values():
            fetcher.remove(key)
        if r.is_leader or r.closed or r.pending_epoch is not None:
            return
        leader = r.assignment.leader
        fetcher = self.fetchers.get(leader)
        if fetcher is None:
            fetcher = self.fetchers[leader] = LeaderFetcher(leader)
            self.nursery.start_soon(self._run_fetcher, fetcher)
        fetcher.add(Following(r, leader, r.assignment.leader_epoch))

    def _queue_take_over(self, r: PartitionReplica) -> None:
        """``r`` must take over at a new epoch (``PartitionReplica.epoch_writer``): queued, and
        written with every other take-over of this push in one worker-thread hop."""
        self._take_overs[(r.topic, r.partition)] = r

    async def take_over_queued(self) -> None:
        """Flush and durably write the epoch file of every queued take-over, all in one thread
        hop; then each replica leads (if it still should: ``take_over_prepared``)."""
        while self._take_overs:
            batch = [r for r in self._take_overs.values() if r.pending_epoch is not None and not r.closed]
            self._take_overs = {}
            work = [(r.storage, r.pending_epoch) for r in batch]
            results = await trio.to_thread.run_sync(prepare_epochs, work) if work else []
            for r, (_, epoch), result in zip(batch, work, results):
                try:
                    if isinstance(result, Exception):
                        raise result
                    r.take_over_prepared(epoch, result)
                except Exception as e:  # noqa: BLE001 - reported; the SC moves leadership
                    log.error("%s-%s: taking over at epoch %d failed: %s", r.topic, r.partition, epoch, e)
                    self.broken[(r.topic, r.partition)] = (r.assignment, f"{type(e).__name__}: {e}")
            self.report_wanted.set()

    async def _run_fetcher(self, fetcher: LeaderFetcher) -> None:
        try:
            await run_fetcher(self, fetcher)
        except* Exception as eg:  # a bug of ours: logged; the partitions' next change restarts it
            log.warning("fetcher from %d ended: %s", fetcher.leader, describe(eg))
        finally:
            if self.fetchers.get(fetcher.leader) is fetcher:
                del self.fetchers[fetcher.leader]

    async def run_housekeeping(self) -> None:
        """Off the request path: checkpoint HWs (in a worker thread), enforce retention (whole
        old segments) and verify sealed segments a bounded slice at a time (both on the event
        loop, so they never race an append)."""
        last_retention = last_compaction = -1e18
        while True:
            await trio.sleep(self.config.checkpoint_seconds)
            await self.checkpoint_hws()
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
            self.verify_sealed_segments()
            if now - last_compaction >= self.config.compaction_check_seconds:
                last_compaction = now
                await compact_replicas(self)

    async def checkpoint_hws(self) -> bool:
        """Write the shared HW checkpoint (one file, in a worker thread) when some replica's HW
        changed since the last write, or a replica left; nothing otherwise. Returns whether it
        wrote."""
        replicas = self._hws_due()
        if replicas is None:
            return False
        entries = hw_entries(replicas)
        self.hw_file.dirty = False
        try:
            await trio.to_thread.run_sync(self.hw_file.write, entries)
        except (OSError, serr.StorageError) as e:
            log.error("HW checkpoint %s failed: %s", self.hw_file.path, e)
            self.hw_file.dirty = True
            return False
        for r in replicas:
            r.checkpointed_hw = entries[(r.topic, r.partition)][1]
        return True

    def _hws_due(self) -> list[PartitionReplica] | None:
        """The open replicas when the shared HW checkpoint is due (a HW changed since the last
        write, or a replica left), else None."""
        replicas = [r for r in self.replicas.values() if not r.closed]
        if not self.hw_file.dirty and all(r.storage.hw == r.checkpointed_hw for r in replicas):
            return None
        return replicas

    def verify_sealed_segments(self) -> None:
        """CRC-check the next ``verify_bytes_per_tick`` of every replica's sealed segments (they
        are never checked on open); a corrupt batch found is reported to the SC at once, which
        moves a leadership away from it (see ``replica_health``)."""
        for r in list(self.replicas.values()):
            if r.closed:
                continue
            before = r.storage.corrupt_offset
            try:
                found = r.storage.verify_sealed(self.config.verify_bytes_per_tick)
            except serr.StorageError as e:
                log.error("%s-%s: verifying sealed segments failed: %s", r.topic, r.partition, e)
                continue
            if found is not None and found != before:
                log.error("%s-%s: corrupt batch at offset %d in a sealed segment",
                          r.topic, r.partition, found)
                self.report_wanted.set()
                self.mark_changed(r)
                for fetcher in self.fetchers.values():  # a follower cuts it and refetches
                    fetcher.recheck((r.topic, r.partition))

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
        self.hw_file.dirty = True
        for fetcher in self.fetchers.values():
            fetcher.remove(key)
        r._flush_wanted.set()
        r.notify()
        path = replica_dir(self.config.data_dir, *key)
        try:
            r.storage.close()
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def mark_changed(self, r: PartitionReplica) -> None:
        """``r``'s report entry must be built again (``PartitionReplica.on_change``)."""
        self._stale.add((r.topic, r.partition))

    def report(self) -> ia.ReportReplicasRequest:
        """Every replica's state; ``error`` says why a replica cannot be trusted (it failed to
        apply, or its storage failed), ``isr_version`` which SC ISR record the ISR builds on.

        An entry is built again only for a replica that changed since (``mark_changed``, from
        every ``notify``), and for all of them every ``FULL_REPORT_EVERY`` reports, which bounds
        how late a change that notified no one (an append that short-circuited the log) shows."""
        self._reports_built += 1
        if self._reports_built % FULL_REPORT_EVERY == 0:
            stale, self._entries = set(self.replicas), {}
        else:
            stale = self._stale & set(self.replicas) | (set(self.replicas) - set(self._entries))
        self._stale = set()
        for key in [k for k in self._entries if k not in self.replicas]:
            del self._entries[key]
        for key in stale:
            self._entries[key] = self._entry(key, self.replicas[key])
        reps = [self._entries[key] for key in sorted(self.replicas)]
        for (topic, partition), (a, why) in sorted(self.broken.items()):
            if (topic, partition) not in self.replicas:
                reps.append(ia.ReplicaReport(topic, partition, a.leader_epoch, False, 0, 0, 0, 0,
                                             [], [], why, a.isr_version))
        return ia.ReportReplicasRequest(self.spu_id, reps)

    def _entry(self, key: tuple[str, int], r: PartitionReplica) -> ia.ReplicaReport:
        follower_leos = []
        if r.leader_state is not None:
            for spu, f in sorted(r.leader_state.followers.items()):
                follower_leos += [spu, f.leo]
        broken = self.broken.get(key)
        return ia.ReplicaReport(
            r.topic, r.partition, r.leader_epoch, r.is_leader, r.storage.durable_leo, r.hw,
            r.log_start_offset, r.storage.size_bytes(), r.isr(), follower_leos,
            broken[1] if broken else replica_health(r), r.assignment.isr_version)

    def close(self) -> None:
        """Checkpoint and close every replica; one whose disk failed does not keep the others
        from closing (what it could not write was never acknowledged)."""
        try:
            if (replicas := self._hws_due()) is not None:
                self.hw_file.write(hw_entries(replicas))
        except (OSError, serr.StorageError) as e:
            log.error("HW checkpoint %s failed: %s", self.hw_file.path, e)
        for r in self.replicas.values():
            r.closed = True
            try:
                r.storage.close()
            except (OSError, serr.StorageError) as e:
                log.error("%s-%s: close failed: %s", r.topic, r.partition, e)


def describe(e: BaseException) -> str:
    """One line for an exception or every exception of a group (for logs)."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"

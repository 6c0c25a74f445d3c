"""The SC's state: applies the controller's decisions, saved, then told to SPUs and watchers.

The stores (fluvial.sc.cluster) and every decision about them (fluvial.sc.controller) are plain
code; this module applies a ``Decision`` and adds what trio needs: an event per kind that fires on
every change, so watch streams and waiters wake up, the links to registered SPUs, which a change of
their assignments wakes, and the bookkeeping of which watcher has sent which epoch, so a Create
can wait until its changes have reached every watcher before it replies (sc.md §7, README §6.3).

Every change is a ``transaction()``: the stores change in memory, then every kind with a durable
change is saved in one ``backend.save``, and only then are SPUs and watchers told. If the body or
the save raises, the stores are put back as they were and nobody is told: what an SPU or client
has heard of is always on disk, and a change that could not be saved never happened. The body
runs without an ``await``, so no task ever sees a change before it is saved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio

from fluvial.metadata.replication import PartitionReplication, TopicReplication
from fluvial.sc import controller as ctl
from fluvial.sc.backend import MetadataBackend, MetaReader
from fluvial.sc.cluster import ASSIGNMENT_KINDS, KINDS, Cluster, Decision
from fluvial.sc.pushes import changes_assignments

log = logging.getLogger("fluvial.sc")

PERSISTED = ("Topic", "Partition", "SPU", "CustomSpu", "SmartModule", "TableFormat", "SpuGroup",
             "Processor")
# how a kind's replication record is read back (fluvial.metadata.replication)
META_READERS: dict[str, MetaReader] = {
    "Topic": lambda raw, spec: TopicReplication.from_json(raw),
    "Partition": lambda raw, spec: PartitionReplication.from_json(raw, spec.replicas),
}


class MetadataSaveError(Exception):
    """The SC could not save a change (disk full, I/O error); the change was undone."""


@dataclass
class SpuLink:
    """A registered SPU's private connection, as the SC sees it."""

    spu_id: int
    last_seen: float  # trio.current_time() of the last request
    assignments_changed: trio.Event = field(default_factory=trio.Event)
    closed: trio.Event = field(default_factory=trio.Event)


class ScState(Cluster):
    def __init__(self, backend: MetadataBackend):
        super().__init__()
        self.backend = backend
        self._changed = {label: trio.Event() for label in KINDS}
        self._watchers: dict[int, tuple[str, list[int]]] = {}  # id -> (label, [sent epoch])
        self._watcher_seq = 0
        self._watch_progress = trio.Event()
        self.links: dict[int, SpuLink] = {}
        self.started_at = 0.0
        self.lease_ms = 0  # the leader lease given to registering SPUs (fluvial.sc.controller)
        self._in_transaction = False
        self.policy = None  # fluvial.auth.Policy, or None: everything allowed

    # ------------------------------------------------------------------ persistence + changes

    def load(self) -> None:
        """Load every persisted kind (records from before typed replication records are read
        into them). Topics from before topic incarnations keep ``NO_TOPIC_ID``: their SPUs then
        keep the directories they have (which carry no incarnation marker either), while a
        topic created, or re-created, from now on gets an id and never adopts a leftover."""
        for label in PERSISTED:
            spec_cls, status_cls = KINDS[label]
            self.stores[label].load(self.backend.load(label, spec_cls, status_cls, META_READERS.get(label)))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Change the stores inside; on exit save what changed durably, then wake SPUs and
        watchers. If the body raises, or the save fails (``MetadataSaveError``), every store is
        as before and nobody is woken. A transaction inside another is part of it."""
        if self._in_transaction:
            yield
            return
        self._in_transaction = True
        for store in self.stores.values():
            store.begin()
        try:
            yield
            durable = {label: self.stores[label].values() for label in PERSISTED
                       if self.stores[label].durable_change}
            if durable:
                try:  # only the changed objects are written (sc/backend.py, ``save`` semantics)
                    self.backend.save(durable, {label: self.stores[label].changed_names() for label in durable})
                except Exception as e:  # noqa: BLE001 - any failure: the change did not happen
                    log.error("metadata not saved (%s): change undone", e)
                    raise MetadataSaveError(f"the SC could not save its metadata: {e}") from e
        except BaseException:
            for store in self.stores.values():
                store.rollback()
            raise
        finally:
            self._in_transaction = False
        changed = [label for label, store in self.stores.items() if store.changed]
        pushed = any(changes_assignments(label, before, after) for label in ASSIGNMENT_KINDS & set(changed)
                     for before, after in self.stores[label].changed_pairs())
        for store in self.stores.values():
            store.end()
        for label in changed:
            self._changed[label].set()
            self._changed[label] = trio.Event()
        if pushed:  # a status-only change (the leaders' reports) is no news to the SPUs
            self.assignments_changed()

    def apply(self, decision: Decision):
        """Apply a controller decision as one transaction and return its answer. Raises
        MetadataSaveError when it cannot be saved: then no store changed and nobody was told,
        and the SPUs it failed are kept in ``failed_spus`` for the failure detector to retry."""
        for partition, leos in decision.leos.items():
            self.leos[partition] = leos
        try:
            with self.transaction():
                for label, writes in decision.writes.items():
                    for name, (obj, durable) in writes.items():
                        self.stores[label].write(name, obj, durable)
        except MetadataSaveError:
            self.failed_spus |= decision.failed_if_unsaved
            raise
        self.pending_spus |= decision.awaited
        self.pending_spus -= decision.settled
        self.failed_spus -= decision.settled
        return decision.answer

    def handle(self, event: ctl.Event):
        """Decide ``event`` (fluvial.sc.controller) and apply the decision; returns its answer."""
        return self.apply(ctl.decide(self, event))

    def check_failures(self, now: float, timeout: float) -> None:
        """One tick of the failure detector (fluvial.sc.server): close the links of SPUs silent
        for longer than ``timeout`` and fail them, fail the SPUs not back ``timeout`` after the
        SC started, retry the failures not saved (``ctl.due_failures`` decides)."""
        last_seen = {spu_id: link.last_seen for spu_id, link in self.links.items()}
        due = ctl.due_failures(self, last_seen, now, self.started_at, timeout)
        self.failed_spus -= due.forget
        for spu_id in due.disconnect:
            log.warning("SPU %d missed its heartbeats for %.1fs: offline", spu_id, timeout)
            self.links.pop(spu_id).closed.set()
        for spu_id in due.fail:
            if due.stop_waiting and spu_id in self.pending_spus:
                log.warning("SPU %d did not come back after the SC started: offline", spu_id)
            self.fail_spu(spu_id)
        if due.stop_waiting:
            self.pending_spus.clear()

    def fail_spu(self, spu_id: int) -> None:
        """``SpuFailed`` for the failure detector and closed connections, which must not crash
        the SC: a failure that cannot be saved is logged and retried (``ctl.due_failures``)."""
        try:
            self.handle(ctl.SpuFailed(spu_id))
        except MetadataSaveError:
            log.error("SPU %d failed but that could not be saved; will retry", spu_id)

    def assignments_changed(self) -> None:
        self.assignment_epoch += 1
        for link in self.links.values():
            link.assignments_changed.set()

    async def wait_changed(self, label: str) -> None:
        await self._changed[label].wait()

    # ------------------------------------------------------------------------------ watchers

    def add_watcher(self, label: str) -> tuple[int, list[int]]:
        self._watcher_seq += 1
        sent = [-1]
        self._watchers[self._watcher_seq] = (label, sent)
        return self._watcher_seq, sent

    def remove_watcher(self, wid: int) -> None:
        self._watchers.pop(wid, None)
        self.watch_progress()

    def watch_progress(self) -> None:
        self._watch_progress.set()
        self._watch_progress = trio.Event()

    async def wait_watchers_synced(self, labels: tuple[str, ...], timeout: float = 10.0) -> None:
        """Until every open watcher of ``labels`` has sent the current epoch (or the timeout)."""
        targets = {label: self.stores[label].epoch for label in labels}
        with trio.move_on_after(timeout):
            while any(sent[0] < targets[label] for label, sent in self._watchers.values()
                      if label in targets):
                await self._watch_progress.wait()

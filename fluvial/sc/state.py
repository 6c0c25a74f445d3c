"""The SC's state: object stores, persistence, change notification, links to SPUs.

The stores and every decision about them are plain code (fluvial.metadata, fluvial.replication);
this module adds only what trio needs: an event per kind that fires on every change, so watch
streams and waiters wake up, and the bookkeeping of which watcher has sent which epoch, so a Create
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
from fluvial.metadata.store import KindStore, StoredObject
from fluvial.protocol import sc_objects as so
from fluvial.sc.backend import MetadataBackend, MetaReader

log = logging.getLogger("fluvial.sc")

# label -> (spec class, status class)
KINDS: dict[str, tuple[type, type]] = {
    cls.LABEL: (cls, cls.Status)
    for cls in (so.TopicSpec, so.PartitionSpec, so.SpuSpec, so.CustomSpuSpec, so.SmartModuleSpec,
                so.TableFormatSpec, so.SpuGroupSpec)
}
PERSISTED = ("Topic", "Partition", "SPU", "CustomSpu", "SmartModule", "TableFormat", "SpuGroup")
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


class ScState:
    def __init__(self, backend: MetadataBackend):
        self.backend = backend
        self.stores = {label: KindStore(label) for label in KINDS}
        self._changed = {label: trio.Event() for label in KINDS}
        self._watchers: dict[int, tuple[str, list[int]]] = {}  # id -> (label, [sent epoch])
        self._watcher_seq = 0
        self._watch_progress = trio.Event()
        self.links: dict[int, SpuLink] = {}
        self.assignment_epoch = 0
        self.leos: dict[str, dict[int, int]] = {}  # partition -> spu -> last reported LEO
        self.started_at = 0.0
        self.pending_spus: set[int] = set()  # known before a restart, not yet back or failed
        self.failed_spus: set[int] = set()  # failed, but the change could not be saved yet
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
                try:
                    self.backend.save(durable)
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
        for store in self.stores.values():
            store.end()
        for label in changed:
            self._changed[label].set()
            self._changed[label] = trio.Event()
        if {"Topic", "Partition", "SPU"} & set(changed):
            self.assignments_changed()

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

    # ---------------------------------------------------------------------------- lookups

    @property
    def topics(self) -> KindStore:
        return self.stores["Topic"]

    @property
    def partitions(self) -> KindStore:
        return self.stores["Partition"]

    @property
    def spus(self) -> KindStore:
        return self.stores["SPU"]

    def online_spus(self) -> list[StoredObject]:
        return [o for o in self.spus.values()
                if o.status.resolution == so.SpuStatusResolution.Online]

    def partitions_of(self, topic: str) -> list[StoredObject]:
        out = []
        for o in self.partitions.values():
            t, _, p = o.name.rpartition("-")
            if t == topic:
                out.append((int(p), o))
        return [o for _, o in sorted(out, key=lambda x: x[0])]

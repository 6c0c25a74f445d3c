"""The SC's object store: spec + status per object, one epoch counter per kind (pure).

Theory of operation
-------------------
Each kind (Topic, Partition, SPU, ...) is a ``KindStore``. Every mutation bumps the kind's
``epoch`` and stamps the object with it. A watcher remembers the epoch it has sent and asks
``changes_since(epoch)``: objects stamped later go out as UPDATE, objects deleted later as DELETE
(we keep their last content: the client decodes a full Metadata even for a DELETE). Deletions are
remembered as tombstones up to ``max_tombstones``; a watcher older than the oldest tombstone we
dropped (the ``fence``) gets a full ``all`` instead, which the client applies as an exact sync
(../shared/fluvio-protocol/README.md §6.3).

``meta`` holds fluvial's own per-object record that Fluvio's wire objects have no field for
(fluvial.metadata.replication: a partition's leader epoch and ISR, a topic's incarnation); it is
persisted with the object but never sent to clients.

Objects are replaced, never changed in place (``upsert``, ``update``, ``update_status``,
``write``, ``delete``), so a store can undo: between ``begin()`` and ``end()`` it remembers the first
previous version of every name it changes, and ``rollback()`` puts them back. The SC uses that to
leave memory exactly as it was when a change cannot be saved (fluvial.sc.state). Epochs are not
rolled back: stamps only grow, and an undone change was never sent to anyone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class StoredObject:
    name: str
    spec: Any
    status: Any
    epoch: int = 0
    meta: Any = None


@dataclass
class Changes:
    epoch: int
    updates: list[StoredObject]
    deletes: list[StoredObject]
    full: bool  # True: ``updates`` is every object (send as ``all``)


class KindStore:
    def __init__(self, label: str, max_tombstones: int = 1000):
        self.label = label
        self.epoch = 0
        self.objects: dict[str, StoredObject] = {}
        self._tombstones: dict[str, StoredObject] = {}
        self._fence = 0  # watchers at or below this epoch may have missed a dropped tombstone
        self.max_tombstones = max_tombstones
        # name -> (object, tombstone) before the first change since begin(); None: not recording
        self._undo: dict[str, tuple[StoredObject | None, StoredObject | None]] | None = None
        self.changed = False  # since begin(): anything changed (watchers must hear of it)
        self.durable_change = False  # since begin(): a change that must be saved

    def get(self, name: str) -> StoredObject | None:
        return self.objects.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.objects

    def values(self) -> list[StoredObject]:
        return list(self.objects.values())

    def load(self, objs: list[StoredObject]) -> None:
        """Replace the contents after a restart; the epoch restarts above every stored stamp."""
        self.objects = {o.name: o for o in objs}
        self.epoch = max((o.epoch for o in objs), default=0) + 1
        self._fence = self.epoch
        self._tombstones.clear()

    # ------------------------------------------------------------------------------ changes

    def _put(self, name: str, obj: StoredObject | None, durable: bool) -> None:
        if self._undo is not None and name not in self._undo:
            self._undo[name] = (self.objects.get(name), self._tombstones.get(name))
        self.changed = True
        self.durable_change |= durable
        if obj is None:
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj

    def upsert(self, name: str, spec: Any, status: Any, meta: Any = None) -> StoredObject:
        """Create or replace ``name``; ``meta=None`` keeps the old object's record."""
        self.epoch += 1
        old = self.objects.get(name)
        obj = StoredObject(name, spec, status, self.epoch,
                           meta if meta is not None else (old.meta if old else None))
        self._put(name, obj, True)
        self._tombstones.pop(name, None)
        return obj

    def update(self, name: str, *, durable: bool = True, **fields: Any) -> StoredObject:
        """Replace some of ``spec``, ``status``, ``meta`` of an existing object. ``durable=False``
        for a change that need not be saved (offsets the SPUs report again after a restart)."""
        obj = replace(self.objects[name], epoch=self.epoch + 1, **fields)
        self.epoch += 1
        self._put(name, obj, durable)
        return obj

    def update_status(self, name: str, status: Any, *, durable: bool = True) -> StoredObject | None:
        obj = self.objects.get(name)
        if obj is None or obj.status == status:
            return obj
        return self.update(name, status=status, durable=durable)

    def write(self, name: str, obj: StoredObject | None, durable: bool) -> None:
        """Put ``obj`` as ``name``'s new version, stamped with the next epoch, or delete ``name``
        (``obj`` None): how a decision drafted elsewhere (fluvial.sc.cluster) is applied."""
        if obj is None:
            self.delete(name)
            return
        self.epoch += 1
        self._put(name, replace(obj, name=name, epoch=self.epoch), durable)
        self._tombstones.pop(name, None)

    def delete(self, name: str) -> StoredObject | None:
        obj = self.objects.get(name)
        if obj is None:
            return None
        self.epoch += 1
        obj = replace(obj, epoch=self.epoch)
        self._put(name, None, True)
        self._tombstones[name] = obj
        while len(self._tombstones) > self.max_tombstones:
            oldest = min(self._tombstones.values(), key=lambda o: o.epoch)
            del self._tombstones[oldest.name]
            self._fence = max(self._fence, oldest.epoch)
        return obj

    # --------------------------------------------------------------------------------- undo

    def begin(self) -> None:
        """Start remembering what changes, for ``rollback``."""
        self._undo = {}
        self.changed = self.durable_change = False

    def changed_names(self) -> set[str]:
        """The names written or deleted since ``begin`` (what a backend saves of this kind)."""
        return set(self._undo or ())

    def changed_pairs(self) -> list[tuple[StoredObject | None, StoredObject | None]]:
        """``(before begin, now)`` of every name changed since ``begin`` (None: absent)."""
        return [(before, self.objects.get(name)) for name, (before, _) in (self._undo or {}).items()]

    def rollback(self) -> None:
        """Put back every object and tombstone changed since ``begin``. A tombstone of another
        name dropped meanwhile stays dropped (the fence already covers it)."""
        for name, (obj, tomb) in (self._undo or {}).items():
            if obj is None:
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj
            if tomb is None:
                self._tombstones.pop(name, None)
            else:
                self._tombstones[name] = tomb
        self.end()

    def end(self) -> None:
        """Stop remembering: the changes since ``begin`` stay."""
        self._undo = None
        self.changed = self.durable_change = False

    def changes_since(self, epoch: int) -> Changes:
        """What a watcher that has seen ``epoch`` must be sent (epoch < 0: everything)."""
        if epoch < 0 or epoch < self._fence:
            return Changes(self.epoch, list(self.objects.values()), [], True)
        ups = [o for o in self.objects.values() if o.epoch > epoch]
        dels = [o for o in self._tombstones.values() if o.epoch > epoch]
        return Changes(self.epoch, ups, dels, False)

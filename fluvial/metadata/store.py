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

``extra`` holds fluvial's own per-object state that Fluvio's wire objects have no field for
(a partition's leader epoch and ISR); it is persisted with the object but never sent to clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StoredObject:
    name: str
    spec: Any
    status: Any
    epoch: int = 0
    extra: dict = field(default_factory=dict)


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

    def upsert(self, name: str, spec: Any, status: Any, extra: dict | None = None) -> StoredObject:
        self.epoch += 1
        old = self.objects.get(name)
        obj = StoredObject(name, spec, status, self.epoch,
                           extra if extra is not None else (old.extra if old else {}))
        self.objects[name] = obj
        self._tombstones.pop(name, None)
        return obj

    def update_status(self, name: str, status: Any) -> StoredObject | None:
        obj = self.objects.get(name)
        if obj is None or obj.status == status:
            return obj
        self.epoch += 1
        obj.status, obj.epoch = status, self.epoch
        return obj

    def touch(self, name: str) -> None:
        """Mark an object changed after mutating it in place."""
        obj = self.objects.get(name)
        if obj is not None:
            self.epoch += 1
            obj.epoch = self.epoch

    def delete(self, name: str) -> StoredObject | None:
        obj = self.objects.pop(name, None)
        if obj is None:
            return None
        self.epoch += 1
        obj.epoch = self.epoch
        self._tombstones[name] = obj
        while len(self._tombstones) > self.max_tombstones:
            oldest = min(self._tombstones.values(), key=lambda o: o.epoch)
            del self._tombstones[oldest.name]
            self._fence = max(self._fence, oldest.epoch)
        return obj

    def changes_since(self, epoch: int) -> Changes:
        """What a watcher that has seen ``epoch`` must be sent (epoch < 0: everything)."""
        if epoch < 0 or epoch < self._fence:
            return Changes(self.epoch, list(self.objects.values()), [], True)
        ups = [o for o in self.objects.values() if o.epoch > epoch]
        dels = [o for o in self._tombstones.values() if o.epoch > epoch]
        return Changes(self.epoch, ups, dels, False)

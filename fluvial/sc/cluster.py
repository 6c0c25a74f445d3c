"""The SC's view of the cluster as plain data, and a decision's draft of changes over it (no trio).

``Cluster`` holds what the SC's decisions read: one object store per kind
(fluvial.metadata.store), the LEOs the SPUs last reported, the SPUs it waits for after a restart
(``pending_spus``) and those whose failure it could not save yet (``failed_spus``).
fluvial.sc.state adds trio and the disk to it.

A ``Draft`` is how fluvial.sc.controller decides without changing anything: it reads like a
``Cluster``, but what it writes lands in an overlay, so a decision sees its own earlier changes (an
SPU it marked online is live for the election that follows) and the cluster sees none of them.
``Draft.decision()`` hands the changes over as one ``Decision``, which fluvial.sc.state applies as
one transaction: saved, then told, or undone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fluvial.metadata.store import KindStore, StoredObject
from fluvial.protocol import sc_objects as so

# label -> (spec class, status class)
KINDS: dict[str, tuple[type, type]] = {
    cls.LABEL: (cls, cls.Status)
    for cls in (so.TopicSpec, so.PartitionSpec, so.SpuSpec, so.CustomSpuSpec, so.SmartModuleSpec,
                so.TableFormatSpec, so.SpuGroupSpec, so.ProcessorSpec)
}
# a change to these kinds changes some SPU's assignments: it is pushed to every SPU
ASSIGNMENT_KINDS = frozenset({"Topic", "Partition", "SPU"})


class _Lookups:
    """Reads shared by ``Cluster`` and ``Draft`` (both have ``stores``)."""

    stores: Mapping[str, Any]

    @property
    def topics(self):
        return self.stores["Topic"]

    @property
    def partitions(self):
        return self.stores["Partition"]

    @property
    def spus(self):
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


class Cluster(_Lookups):
    def __init__(self) -> None:
        self.stores: dict[str, KindStore] = {label: KindStore(label) for label in KINDS}
        self.leos: dict[str, dict[int, int]] = {}  # partition -> spu -> last reported LEO
        self.pending_spus: set[int] = set()  # known before a restart, not yet back or failed
        self.failed_spus: set[int] = set()  # failed, but the change could not be saved yet
        self.assignment_epoch = 0  # bumped on every change of ASSIGNMENT_KINDS

    def leos_of(self, partition: str) -> Mapping[int, int]:
        return self.leos.get(partition, {})


class DraftStore:
    """One kind as a decision in progress sees it: the store's objects with the decision's writes
    over them. Its writes mean what ``KindStore``'s do (``upsert`` keeps the old record when
    ``meta`` is None, ``update_status`` to the same status writes nothing); ``written`` keeps the
    last version of every object written (None: deleted) and whether any write of it was durable."""

    def __init__(self, base: KindStore):
        self.base = base
        self.label = base.label
        self.written: dict[str, tuple[StoredObject | None, bool]] = {}

    def get(self, name: str) -> StoredObject | None:
        if name in self.written:
            return self.written[name][0]
        return self.base.get(name)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def values(self) -> list[StoredObject]:
        merged = dict(self.base.objects)
        for name, (obj, _) in self.written.items():
            if obj is None:
                merged.pop(name, None)
            else:
                merged[name] = obj
        return list(merged.values())

    def _write(self, name: str, obj: StoredObject | None, durable: bool) -> None:
        before = self.written.get(name)
        self.written[name] = (obj, durable or (before is not None and before[1]))

    def upsert(self, name: str, spec: Any, status: Any, meta: Any = None) -> StoredObject:
        old = self.get(name)
        obj = StoredObject(name, spec, status, 0, meta if meta is not None else (old.meta if old else None))
        self._write(name, obj, True)
        return obj

    def update(self, name: str, *, durable: bool = True, **fields: Any) -> StoredObject:
        obj = replace(self.get(name), **fields)
        self._write(name, obj, durable)
        return obj

    def update_status(self, name: str, status: Any, *, durable: bool = True) -> StoredObject | None:
        obj = self.get(name)
        if obj is None or obj.status == status:
            return obj
        return self.update(name, status=status, durable=durable)

    def delete(self, name: str) -> StoredObject | None:
        obj = self.get(name)
        if obj is not None:
            self._write(name, None, True)
        return obj


@dataclass
class Decision:
    """What one event changes, for fluvial.sc.state to apply.

    ``writes``: label -> name -> (the object's new version, or None: deleted; durable), the store
    changes to save in one transaction and then tell watchers of (and every SPU, for
    ``ASSIGNMENT_KINDS``). ``leos``: partitions' reported LEOs, kept even when the save fails
    (they are what the SPUs said, not the SC's decisions). ``awaited``: SPUs to wait for after an SC
    start. ``settled``: SPUs neither awaited nor failed any more once saved.
    ``failed_if_unsaved``: SPUs whose failure must be retried when the save fails. ``answer``:
    what the caller is told (an Error, new partition names, ...)."""

    writes: dict[str, dict[str, tuple[StoredObject | None, bool]]] = field(default_factory=dict)
    leos: dict[str, dict[int, int]] = field(default_factory=dict)
    awaited: set[int] = field(default_factory=set)
    settled: set[int] = field(default_factory=set)
    failed_if_unsaved: set[int] = field(default_factory=set)
    answer: Any = None


class Draft(_Lookups):
    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.stores = {label: DraftStore(store) for label, store in cluster.stores.items()}
        self.pending_spus = cluster.pending_spus
        self._leos: dict[str, dict[int, int]] = {}
        self.awaited: set[int] = set()
        self.settled: set[int] = set()
        self.failed_if_unsaved: set[int] = set()

    def leos_of(self, partition: str) -> Mapping[int, int]:
        return self._leos.get(partition, self.cluster.leos_of(partition))

    def report_leos(self, partition: str) -> dict[int, int]:
        """The LEOs of ``partition``, for the decision to record what an SPU reported."""
        if partition not in self._leos:
            self._leos[partition] = dict(self.cluster.leos_of(partition))
        return self._leos[partition]

    def decision(self, answer: Any = None) -> Decision:
        writes = {label: dict(store.written) for label, store in self.stores.items() if store.written}
        return Decision(writes, dict(self._leos), set(self.awaited), set(self.settled),
                        set(self.failed_if_unsaved), answer)

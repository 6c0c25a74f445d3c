"""The SC's replication records: what it keeps per topic and per partition beyond Fluvio's objects.

Theory of operation
-------------------
Fluvio's wire objects have no field for a partition's leader epoch, ISR or topic incarnation, so
the SC keeps them in typed records next to each object (``StoredObject.meta``) and persists them
with it (as JSON, fluvial.sc.backend). They are never sent to clients; the SC sends them to the
SPUs in every ``ReplicaAssignment``.

* ``TopicReplication``: the topic's incarnation id (``topic_id``), its min ISR and whether it
  accepts an unclean leader election; and its log compaction settings (cleanup policy
  "delete" or "compact", tombstone retention, min compaction lag, min cleanable dirty ratio),
  which Fluvio's TopicSpec has no field for either.
* ``PartitionReplication``: the leader ``epoch``, the ``isr`` and its ``isr_version``, and the
  ``topic_id`` of the topic incarnation the partition belongs to.

Rules the records carry (the SC's decisions in fluvial.sc.controller use only these):

1. Every leadership (re)assignment starts a new leader epoch, one above the last
   (``next_epoch``); epochs are saved before any SPU hears of them, so none is handed out twice.
2. Every ISR change the SC records bumps ``isr_version`` (``with_isr``); an unchanged ISR keeps
   it. A leader's ISR report names the version it builds on and is applied only when that is
   the current one (``accepts_isr_report``), so a report sent before the SC removed a failed
   SPU never puts it back.
3. A topic incarnation id is random (63 bits, never 0, never one in use), like Kafka's topic
   UUIDs: unique across delete/re-create and SC restarts without a counter that must survive
   them. ``0`` marks a record written before incarnations existed; the SC replaces it at load.

Files written before these records held JSON dicts (partition ``{"epoch", "isr"}``, topic
``{"min_isr", "unclean_leader_election"}``); ``from_json`` reads both forms.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fluvial.protocol.internal_api import CLEANUP_POLICIES, NO_TOPIC_ID


class BadRecord(ValueError):
    """A stored record has a field of the wrong type or an impossible value."""


def _int(d: Mapping[str, Any], key: str, default: int) -> int:
    v = d.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise BadRecord(f"{key} must be a non-negative integer, got {v!r}")
    return v


def _ids(d: Mapping[str, Any], key: str, default: Iterable[int]) -> tuple[int, ...]:
    v = d.get(key, list(default))
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise BadRecord(f"{key} must be a list of SPU ids, got {v!r}")
    return tuple(v)


def _str(d: Mapping[str, Any], key: str, default: str) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise BadRecord(f"{key} must be a string, got {v!r}")
    return v


@dataclass(frozen=True, slots=True)
class TopicReplication:
    topic_id: int
    min_isr: int = 1
    unclean_leader_election: bool = False
    cleanup_policy: str = "delete"
    tombstone_retention_secs: int = 24 * 3600
    min_compaction_lag_secs: int = 0
    min_cleanable_dirty_percent: int = 50
    content_type: str = ""  # fluvial.protocol.content_type; "" = none

    def to_json(self) -> dict[str, Any]:
        return {"topic_id": self.topic_id, "min_isr": self.min_isr,
                "unclean_leader_election": self.unclean_leader_election,
                "cleanup_policy": self.cleanup_policy,
                "tombstone_retention_secs": self.tombstone_retention_secs,
                "min_compaction_lag_secs": self.min_compaction_lag_secs,
                "min_cleanable_dirty_percent": self.min_cleanable_dirty_percent,
                "content_type": self.content_type}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TopicReplication:
        unclean = d.get("unclean_leader_election", False)
        if not isinstance(unclean, bool):
            raise BadRecord(f"unclean_leader_election must be a boolean, got {unclean!r}")
        policy = d.get("cleanup_policy", "delete")
        if policy not in CLEANUP_POLICIES:
            raise BadRecord(f"cleanup_policy must be one of {CLEANUP_POLICIES}, got {policy!r}")
        percent = _int(d, "min_cleanable_dirty_percent", 50)
        if percent > 100:
            raise BadRecord(f"min_cleanable_dirty_percent must be in 0..100, got {percent!r}")
        return cls(_int(d, "topic_id", NO_TOPIC_ID), _int(d, "min_isr", 1), unclean, policy,
                   _int(d, "tombstone_retention_secs", 24 * 3600), _int(d, "min_compaction_lag_secs", 0),
                   percent, _str(d, "content_type", ""))


@dataclass(frozen=True, slots=True)
class PartitionReplication:
    topic_id: int
    epoch: int = 1
    isr: tuple[int, ...] = ()
    isr_version: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"topic_id": self.topic_id, "epoch": self.epoch, "isr": list(self.isr),
                "isr_version": self.isr_version}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], replicas: Iterable[int]) -> PartitionReplication:
        """``replicas``: the partition's assigned replicas, the ISR of an old record without one."""
        return cls(_int(d, "topic_id", NO_TOPIC_ID), _int(d, "epoch", 1), _ids(d, "isr", replicas),
                   _int(d, "isr_version", 0))

    def next_epoch(self) -> PartitionReplication:
        """A new leadership: the next leader epoch."""
        return replace(self, epoch=self.epoch + 1)

    def with_isr(self, isr: Iterable[int]) -> PartitionReplication:
        """The record with ISR ``isr``: a new ``isr_version`` when it differs, else unchanged."""
        isr = tuple(isr)
        if isr == self.isr:
            return self
        return replace(self, isr=isr, isr_version=self.isr_version + 1)

    def accepts_isr_report(self, isr_version: int) -> bool:
        """A leader's ISR report built on ``isr_version`` may change the ISR (rule 2)."""
        return isr_version == self.isr_version


def new_topic_id(in_use: Collection[int], randbits: Callable[[int], int] = secrets.randbits) -> int:
    """A fresh topic incarnation id: 63 random bits, not 0 and not in ``in_use``."""
    while True:
        topic_id = randbits(63)
        if topic_id != NO_TOPIC_ID and topic_id not in in_use:
            return topic_id

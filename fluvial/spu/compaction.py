"""The SPU's log cleaner: compaction passes over the replicas of compacted topics.

Each housekeeping round (``SpuContext.run_housekeeping``, every ``compaction_check_seconds``)
runs one pass per replica whose topic has cleanup policy "compact", leaders and followers alike:
each replica compacts its own log, below its own HW (``Replica.cleanable``), so replicas agree
on every key's latest value without exchanging anything. A pass reads the sealed segments and
writes the cleaned copies in a worker thread (``Replica.run_prepared``), then swaps them in on
the event loop (``Replica.install_cleaned``), where no append or read can interleave. Requests
are never blocked by the file work; a pass whose segments changed meanwhile (a truncation)
is discarded. An error in one replica's pass is logged and the others go on.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from fluvial.protocol.codec import DecodeError
from fluvial.protocol.internal_api import CLEANUP_POLICIES, ReplicaSettings
from fluvial.storage import errors as serr

if TYPE_CHECKING:
    from fluvial.storage.replica import Replica

log = logging.getLogger("fluvial.spu")


def cleanup_settings(s: ReplicaSettings) -> dict:
    """The ``ReplicaConfig`` fields the topic's cleanup settings set."""
    policy = CLEANUP_POLICIES[s.cleanup_policy] if 0 <= s.cleanup_policy < len(CLEANUP_POLICIES) else "delete"
    return {"cleanup_policy": policy, "tombstone_retention_seconds": s.tombstone_retention_seconds,
            "min_compaction_lag_seconds": s.min_compaction_lag_seconds,
            "min_cleanable_dirty_ratio": min(s.min_cleanable_dirty_percent, 100) / 100}


def apply_cleanup_settings(storage: Replica, s: ReplicaSettings) -> None:
    """Give an open replica the topic's current cleanup settings (they change with an Update)."""
    wanted = cleanup_settings(s)
    if any(getattr(storage.config, k) != v for k, v in wanted.items()):
        storage.config = replace(storage.config, **wanted)
        log.info("%s-%s: cleanup policy %s", storage.topic, storage.partition, wanted["cleanup_policy"])


async def compact_replica(storage: Replica) -> bool:
    """One compaction pass over ``storage``; True when segments were swapped."""
    plan = storage.prepare_compaction()
    if plan is None:
        return False
    plan = await trio.to_thread.run_sync(storage.run_prepared, plan)
    try:
        return storage.install_cleaned(plan) and bool(plan.rewritten)
    except serr.ReplicaClosed:  # dropped or closed meanwhile: leave nothing behind
        plan.discard()
        raise


async def compact_replicas(ctx) -> None:
    """A pass over every open replica of a compacted topic (errors logged, never raised)."""
    for r in list(ctx.replicas.values()):
        if r.closed or r.storage.config.cleanup_policy != "compact":
            continue
        try:
            await compact_replica(r.storage)
        except (OSError, DecodeError, serr.StorageError) as e:
            log.error("%s-%s: compaction failed: %s", r.topic, r.partition, e)

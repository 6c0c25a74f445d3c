"""fluvial.replication: pure replication decisions (no I/O, no clock).

* ``offsets``: LEO/HW values and maths (``ReplicaOffsets``, ``compute_hw``, ``follower_hw``).
* ``isr``: ``LeaderState``, the leader's ISR (time-based lag rule) and HW bookkeeping.
* ``election``: ``elect_leader`` (clean from the ISR, unclean on opt-in) and leader-epoch
  reconciliation (``end_offset_for_epoch``, ``truncation_offset``, the epoch cache helpers).
"""

from fluvial.replication.election import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    ElectionResult,
    EpochEntry,
    TruncationStep,
    assign_epoch,
    elect_leader,
    end_offset_for_epoch,
    latest_epoch,
    truncate_epochs_from_end,
    truncate_epochs_from_start,
    truncation_offset,
)
from fluvial.replication.isr import FollowerAheadError, FollowerState, LeaderState
from fluvial.replication.offsets import UNKNOWN_OFFSET, ReplicaOffsets, compute_hw, follower_hw

__all__ = [
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "UNKNOWN_OFFSET",
    "ElectionResult",
    "EpochEntry",
    "FollowerAheadError",
    "FollowerState",
    "LeaderState",
    "ReplicaOffsets",
    "TruncationStep",
    "assign_epoch",
    "compute_hw",
    "elect_leader",
    "end_offset_for_epoch",
    "follower_hw",
    "latest_epoch",
    "truncate_epochs_from_end",
    "truncate_epochs_from_start",
    "truncation_offset",
]

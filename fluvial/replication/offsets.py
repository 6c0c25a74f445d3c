"""Offset arithmetic for a replicated partition: LEO, HW and what "committed" means.

Theory of operation
-------------------
Every replica has a **LEO** (log end offset): the offset the next record will get, i.e. one past the
last record it holds. An empty log has ``leo == 0``.

The leader's **HW** (high watermark) is the first offset that is *not* yet known to be on every
in-sync replica: all records below it are on the leader and on every follower in the ISR, so they
are **committed**. Consumers read below the HW; an ``acks=all`` producer is answered once the HW
has passed the end of its batch.

    HW = min(leader LEO, LEO of every ISR follower)            (Kafka's rule)

Fluvio instead takes the ``min_in_sync_replicas``-th largest LEO among *all* followers
(``compute_hw`` in ``fluvio-spu/src/replication/leader/replica_state.rs``). We use Kafka's
ISR rule: it is what makes a clean election (from the ISR only) lose no committed record, because
every ISR member holds everything below the HW.

Monotonicity. Within one leader epoch the leader's HW never moves backwards: a follower joins the
ISR only once its LEO has reached the HW (see ``fluvial.replication.isr``), and a follower that
has not reported since the leader took over counts as ``UNKNOWN_OFFSET`` (-1), which holds the HW
where it is instead of lowering it. ``compute_hw(..., current_hw=hw)`` encodes that. A follower's
HW is different: it is whatever the leader last told it, capped by its own LEO, and it *may* go
down (``follower_hw``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

UNKNOWN_OFFSET = -1
"""A LEO or HW the leader has not learned yet (Fluvio's ``OffsetInfo::default()`` is (-1, -1))."""


@dataclass(frozen=True, slots=True)
class ReplicaOffsets:
    """The offsets of one replica as the leader sees them (Fluvio's ``ReplicaStatus``: spu, hw, leo).

    ``UNKNOWN_OFFSET`` (-1) stands for "not reported yet". A known HW never exceeds a known LEO.

    Raises:
      ValueError: an offset below -1, or ``hw > leo`` with ``leo`` known.
    """

    spu: int
    leo: int = UNKNOWN_OFFSET
    hw: int = UNKNOWN_OFFSET

    def __post_init__(self) -> None:
        if self.leo < UNKNOWN_OFFSET or self.hw < UNKNOWN_OFFSET:
            raise ValueError(f"replica {self.spu}: offsets must be >= -1, got leo={self.leo} hw={self.hw}")
        if self.leo != UNKNOWN_OFFSET and self.hw > self.leo:
            raise ValueError(f"replica {self.spu}: hw {self.hw} is beyond leo {self.leo}")

    @property
    def is_known(self) -> bool:
        """Both offsets have been reported."""
        return self.leo != UNKNOWN_OFFSET and self.hw != UNKNOWN_OFFSET


def compute_hw(leader_leo: int, isr_follower_leos: Iterable[int], *, current_hw: int | None = None) -> int:
    """The leader's high watermark: the smallest LEO among the leader and its in-sync followers.

    Args:
      leader_leo: the leader's own LEO.
      isr_follower_leos: the LEO of each follower *in the ISR* (not the leader); ``UNKNOWN_OFFSET``
        for one that has not reported since this leader took over.
      current_hw: the leader's HW so far. When given, the result is ``max(current_hw, new)``: the HW
        never moves backwards. Pass it on the leader, within one leader epoch; that is the only
        place it is correct. Do not pass it when deriving a follower's HW (use ``follower_hw``), nor
        to carry an HW across a leader change or an unclean election, where the new leader's log
        may legitimately be shorter than the old HW.

    Returns:
      The new HW.

    Worked examples (leader LEO 10)::

      ISR followers' LEOs       current_hw   result
      (none: ISR = {leader})    -            10     a lone leader commits what it writes
      (4,)                      0            4      fluvio test_hw22, first follower report
      (6,)                      4            6
      (6,)                      6            6      no progress, no change
      (10,)                     6            10     follower caught up
      (3, 4)                    2            3      the slowest ISR member decides
      (6, 7, 9)                 2            6
      (-1, 9)                   5            5      a follower not heard from yet holds the HW
      (-1, 9)                   -            -1     ... and without current_hw the raw min shows it
    """
    new = min((leader_leo, *isr_follower_leos))
    if current_hw is not None and current_hw > new:
        return current_hw
    return new


def follower_hw(leader_hw: int, follower_leo: int) -> int:
    """A follower's HW: the leader's HW, capped by what the follower actually holds.

    Kafka's follower rule (``min(leaderHW, logEndOffset)``). There is deliberately no ``max`` with
    the follower's previous HW: after an unclean election the follower truncates below its old HW,
    and its HW must follow it down.

    Examples: ``follower_hw(10, 7) == 7``, ``follower_hw(4, 7) == 4``.
    """
    return min(leader_hw, follower_leo)

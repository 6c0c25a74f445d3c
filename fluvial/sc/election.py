"""Which SC runs the controller: an etcd election on a lease, and when to stop acting (pure).

Every SC serves the public API; exactly one runs the controller (SPU registrations and reports,
failure detection, leader elections). It is the SC whose put of the election key
``<prefix>/controller`` succeeded in a transaction that required the key to be absent
(``campaign_txn``), attached to a lease of ``ttl`` seconds it keeps alive. When it dies, etcd
drops the key once the lease runs out and the next SC to look wins the next campaign.

Fencing, twice:

1. **By the lease.** etcd expires a lease no sooner than ``ttl`` after the last keepalive it
   *received*. The controller counts from when it *sent* its last keepalive that was answered,
   and stops acting at ``ACT_FRACTION`` (0.7) of the ttl after it (``LeaseClock``). A controller
   cut off from etcd therefore stops acting at least 0.3 ttl before another SC can win: with a
   3 s lease it stops at 2.1 s, the key goes at 3 s or later.

   Worked numbers (ttl 3 s): keepalive sent at t=10.0 and answered -> ``acting_until`` 12.1;
   the next keepalive (10.6) is lost -> at 12.1 ``may_act`` turns False; etcd expires the key
   at 13.0 at the earliest.

2. **By revision.** While it holds the key, every metadata write the controller makes carries a
   compare on the key's ``create_revision`` (``Holding.guard``): once its key is gone (or another
   SC's key replaced it) its writes fail in etcd itself, whatever its clock says.

Epochs (a partition's leader epoch, its ISR version) live in the partition objects in etcd, so a
new controller continues from the last saved epoch: they never regress across failovers, and the
revision guard means no two controllers ever save the same epoch for different leaders.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluvial.sc.etcd import create_is, put_op, range_op

ACT_FRACTION = 0.7  # stop acting this far into the lease after the last answered keepalive
KEEPALIVE_FRACTION = 0.2  # send a keepalive every 0.2 ttl: three may be lost before we stop
DEFAULT_LEASE_SECONDS = 3.0


def election_key(prefix: str) -> str:
    return prefix.rstrip("/") + "/controller"


def campaign_txn(key: str, candidate: str, lease: int) -> tuple[list, list, list]:
    """(compare, success, failure) of one campaign: put ``candidate`` under ``key`` on
    ``lease`` if nobody holds it, else read who does."""
    return [create_is(key, 0)], [put_op(key, candidate.encode(), lease)], [range_op(key)]


@dataclass(frozen=True)
class Holding:
    """This SC won: its key was created at ``create_revision`` on ``lease``."""

    key: str
    create_revision: int
    lease: int

    def guard(self) -> list[dict]:
        """The compare every write of this controller carries: its key is still the one it
        created."""
        return [create_is(self.key, self.create_revision)]


def campaign_result(key: str, lease: int, succeeded: bool, answer: dict) -> Holding | None:
    """Holding when the campaign transaction succeeded (the key was created at the answer's
    revision), else None."""
    if not succeeded:
        return None
    return Holding(key, int(answer["header"]["revision"]), lease)


@dataclass
class LeaseClock:
    """How long the controller may act: until ``ACT_FRACTION`` of the lease after the send
    time of the last keepalive (or grant) that etcd answered with a live lease."""

    ttl: float
    renewed_at: float | None = None

    def renewed(self, sent_at: float) -> None:
        if self.renewed_at is None or sent_at > self.renewed_at:
            self.renewed_at = sent_at

    @property
    def acting_until(self) -> float:
        if self.renewed_at is None:
            return float("-inf")
        return self.renewed_at + ACT_FRACTION * self.ttl

    def may_act(self, now: float) -> bool:
        return now < self.acting_until

    @property
    def keepalive_interval(self) -> float:
        return KEEPALIVE_FRACTION * self.ttl

"""SPU -> SC status reports as deltas: each report carries only the replicas that changed.

An idle SPU with thousands of replicas would otherwise send, and the SC decode and fold, a
report of every replica every heartbeat. ``ReportDeltas`` remembers what the SC has
acknowledged and ``delta`` keeps only the entries that differ from it (a new replica, any
changed field: epoch, role, LEO, HW, ISR, follower LEOs, error, ISR version). An empty delta is
still sent every heartbeat: it renews the leader lease and tells the SC the SPU is alive.

The SC folds entries in one by one (``controller.apply_report``) and keeps the last status of a
partition no entry mentions, so a delta means the same to it as the full report. Whenever the
SC may have missed something, the next report is full again (``reset``): a new session (the SC
restarted or failed this SPU), an error answer (not recorded), or a lost connection. Pure: no
trio, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from fluvial.protocol import internal_api as ia

Key = tuple[str, int]


def key_of(r: ia.ReplicaReport) -> Key:
    return (r.topic, r.partition)


class ReportDeltas:
    """What the SC holds of this SPU's replicas, as far as this SPU knows.

    >>> d = ReportDeltas()
    >>> a = ia.ReplicaReport("t", 0, 1, True, 5, 5, 0, 10, [1], [], None, 0)
    >>> b = ia.ReplicaReport("t", 1, 1, True, 0, 0, 0, 0, [1], [], None, 0)
    >>> [r.partition for r in d.delta([a, b])]      # nothing acknowledged yet: everything
    [0, 1]
    >>> d.acknowledged([a, b])
    >>> d.delta([a, b])                              # unchanged: an empty report
    []
    >>> a2 = ia.ReplicaReport("t", 0, 1, True, 6, 6, 0, 12, [1], [], None, 0)
    >>> [(r.partition, r.leo) for r in d.delta([a2, b])]
    [(0, 6)]
    """

    def __init__(self) -> None:
        self._acked: dict[Key, ia.ReplicaReport] = {}

    def delta(self, reports: Iterable[ia.ReplicaReport]) -> list[ia.ReplicaReport]:
        """The entries of ``reports`` (the SPU's full state) the SC has not acknowledged as they
        are now. Replicas no longer in ``reports`` are forgotten: one that comes back (a topic
        re-created under the same name) is reported again even if its entry looks the same."""
        reports = list(reports)
        if len(self._acked) > len(reports) or any(key_of(r) not in self._acked for r in reports):
            present = {key_of(r) for r in reports}
            for key in [k for k in self._acked if k not in present]:
                del self._acked[key]
        out = []
        for r in reports:
            acked = self._acked.get(key_of(r))
            if acked is not r and acked != r:  # (an entry not rebuilt is the very same object)
                out.append(r)
        return out

    def acknowledged(self, sent: Iterable[ia.ReplicaReport]) -> None:
        """The SC answered OK to a report of ``sent``."""
        for r in sent:
            self._acked[key_of(r)] = r

    def reset(self) -> None:
        """The SC may hold less than acknowledged: the next delta is the full state."""
        self._acked.clear()

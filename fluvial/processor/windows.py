"""A processor's windows and its exactly-once bookkeeping (pure: no trio, no I/O).

Theory of operation
-------------------
A processor keeps its progress in an internal state topic (``processor-<name>``, compacted,
every record a full snapshot under the key ``state``: the latest is all that counts)::

    {"producer_id": P, "next": {"in/0": 17, ...}, "seq": {"out/0": 9, ...},
     "windows_done": 4, "pending": {"index": 5, "ranges": {"in/0": [17, 20]}, "timestamp": T}}

* ``next``: per input partition, the first offset not yet consumed (the committed position).
* ``seq``: per output partition, the next sequence of the processor's producer ``P`` there.
* ``pending``: the window planned and not yet committed, its input range fixed *before* the
  function is invoked, so a restart invokes it again on exactly the same records.

The runtime's loop, one window at a time:

1. **Plan**: ``plan_count`` / ``plan_time`` fix the next window's ranges from the committed
   positions and the partitions' high watermarks; the snapshot with ``pending`` is written and
   acknowledged. (When the previous window's commit is still unwritten, the same snapshot
   commits it: one write per window.)
2. **Invoke** the function on the window's records.
3. **Write** its outputs: ``assign_outputs`` places them (key hash, or the output's index in the
   window for records without a key) and gives each output partition's batch the first sequence
   ``seq[tp]``: derived from the window, so a replay stamps the same records with the same
   sequences under the same producer id, and the leader answers a batch it already stored with
   its original offsets instead of storing it twice (fluvial.spu.producer_state).
4. **Commit** (``committed``): only after every output is acknowledged, ``next`` moves to the
   window's end and ``seq`` past its outputs.

A kill at any instant leaves either no pending window (the next one is planned afresh) or the
pending one, replayed identically: for a deterministic function no output is lost and none is
doubled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fluvial.protocol.producer_api import next_sequence

STATE_KEY = b"state"


def tp(topic: str, partition: int) -> str:
    """The bookkeeping name of a topic partition: ``"topic/partition"``."""
    return f"{topic}/{partition}"


def state_topic(name: str) -> str:
    """The processor's internal state topic."""
    return f"processor-{name}"


@dataclass(frozen=True)
class Window:
    index: int
    ranges: dict[str, tuple[int, int]]  # input partition -> [start, end)
    timestamp: int  # ms; the outputs' batch timestamp (the same on a replay)

    @property
    def size(self) -> int:
        return sum(e - s for s, e in self.ranges.values())

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "ranges": {k: list(v) for k, v in self.ranges.items()},
                "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Window:
        return cls(int(d["index"]), {k: (int(v[0]), int(v[1])) for k, v in d["ranges"].items()},
                   int(d["timestamp"]))


@dataclass(frozen=True)
class ProcessorState:
    producer_id: int = -1
    next: dict[str, int] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    windows_done: int = 0
    pending: Window | None = None

    def to_json(self) -> dict[str, Any]:
        return {"producer_id": self.producer_id, "next": dict(self.next), "seq": dict(self.seq),
                "windows_done": self.windows_done,
                "pending": None if self.pending is None else self.pending.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProcessorState:
        """Raises ValueError (KeyError, TypeError included) for a malformed snapshot."""
        try:
            pending = d.get("pending")
            return cls(int(d["producer_id"]), {k: int(v) for k, v in d["next"].items()},
                       {k: int(v) for k, v in d["seq"].items()}, int(d["windows_done"]),
                       None if pending is None else Window.from_json(pending))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed processor state: {e!r}") from None

    @property
    def next_index(self) -> int:
        return self.windows_done if self.pending is None else self.pending.index

    def start_of(self, part: str, log_start: int = 0) -> int:
        return max(self.next.get(part, 0), log_start)

    # -- planning ----------------------------------------------------------------------------

    def plan_count(self, ends: Mapping[str, int], count: int, timestamp: int,
                   order: Sequence[str]) -> Window | None:
        """The next count window: ``count`` records taken from the input partitions in
        ``order`` up to their high watermarks ``ends``; None while fewer are available."""
        available = sum(max(0, ends.get(p, 0) - self.start_of(p)) for p in order)
        if available < count:
            return None
        ranges, left = {}, count
        for p in order:
            s = self.start_of(p)
            take = min(left, max(0, ends.get(p, 0) - s))
            if take:
                ranges[p] = (s, s + take)
                left -= take
        return Window(self.windows_done, ranges, timestamp)

    def plan_time(self, ends: Mapping[str, int], timestamp: int,
                  order: Sequence[str]) -> Window | None:
        """The time window closing now: everything up to the high watermarks; None when empty
        (an empty window is not invoked)."""
        ranges = {p: (self.start_of(p), ends[p]) for p in order
                  if ends.get(p, 0) > self.start_of(p)}
        return Window(self.windows_done, ranges, timestamp) if ranges else None

    def planned(self, window: Window) -> ProcessorState:
        return replace(self, pending=window)

    def committed(self, window: Window, out_counts: Mapping[str, int]) -> ProcessorState:
        """The state once ``window``'s outputs (``out_counts`` records per output partition)
        are acknowledged."""
        nxt = dict(self.next)
        for p, (_, end) in window.ranges.items():
            nxt[p] = end
        seq = dict(self.seq)
        for p, n in out_counts.items():
            seq[p] = next_sequence(seq.get(p, 0), n)
        return ProcessorState(self.producer_id, nxt, seq, window.index + 1, None)


def assign_outputs(outputs: Sequence[tuple[str, bytes | None, bytes, tuple]],
                   partitions: Mapping[str, int], key_hash) -> dict[str, list[tuple]]:
    """Each output ``(topic, key, value, headers)`` placed on a partition of its topic: by key
    hash, or by its index among the window's outputs to that topic when it has no key
    (deterministic: a replay places every record where the first run did). Returns
    ``{"topic/partition": [(key, value, headers), ...]}`` in order."""
    out: dict[str, list[tuple]] = {}
    counters: dict[str, int] = {}
    for topic, key, value, headers in outputs:
        n = partitions[topic]
        if key is not None:
            p = key_hash(key) % n
        else:
            i = counters.get(topic, 0)
            counters[topic] = i + 1
            p = i % n
        out.setdefault(tp(topic, p), []).append((key, value, headers))
    return out


__all__ = ["STATE_KEY", "ProcessorState", "Window", "assign_outputs", "state_topic", "tp"]
